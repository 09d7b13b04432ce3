"""The /docs page: one self-contained HTML file (no CDN; these machines may have no internet).

The page holds no contract data: its script fetches ./openapi.json (with the bearer token
typed into the page, when the server wants one), lists the operations and the record
fields, and sends a request to /predict from an editable example. Every value from the
document is put in as text, never as HTML: column names come from the training data.
"""

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mlops serve: API</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code, textarea, pre { font-family: ui-monospace, monospace; font-size: .9em; }
textarea { width: 100%; height: 14em; }
pre { background: #f6f6f6; padding: .8em; overflow: auto; }
.error { color: #a00; }
</style>
</head>
<body>
<h1 id="title">mlops serve</h1>
<p id="description"></p>
<p>
  <label>Bearer token (only if the server wants one):
    <input id="token" type="password" size="40" autocomplete="off"></label>
  <button id="load" type="button">Load the description</button>
  <a href="openapi.json">openapi.json</a>
</p>
<p id="status"></p>
<h2>Operations</h2>
<table id="operations"><thead><tr><th>method</th><th>path</th><th>what it does</th>
  <th>answers</th></tr></thead><tbody></tbody></table>
<h2>Record fields</h2>
<table id="fields"><thead><tr><th>field</th><th>type</th><th>allowed</th><th>notes</th></tr></thead>
  <tbody></tbody></table>
<h2>Try it: POST /predict</h2>
<textarea id="body" spellcheck="false"></textarea>
<p><button id="send" type="button">Send</button></p>
<pre id="answer"></pre>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

function headers(extra) {
  const token = $("token").value.trim();
  return Object.assign(token ? {"Authorization": "Bearer " + token} : {}, extra || {});
}

function row(table, cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;  // never innerHTML: names come from the data
    tr.appendChild(td);
  }
  $(table).querySelector("tbody").appendChild(tr);
}

function clear(table) { $(table).querySelector("tbody").replaceChildren(); }

function allowed(schema) {
  if (schema.enum) return schema.enum.map((v) => v === null ? "null" : v).join(", ");
  if (schema.minimum !== undefined) return schema.minimum + " to " + schema.maximum + ", or null";
  return "";
}

function show(doc) {
  $("title").textContent = doc.info.title;
  $("description").textContent = doc.info.description || "";
  clear("operations");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      row("operations", [method.toUpperCase(), path, op.summary || "",
                         Object.keys(op.responses).join(" ")]);
    }
  }
  clear("fields");
  const record = doc.components.schemas.Record;
  for (const [name, schema] of Object.entries(record.properties)) {
    const types = [].concat(schema.type).join(" or ");
    row("fields", [name, types, allowed(schema), schema.description || ""]);
  }
  const example = doc.paths["/predict"].post.requestBody.content["application/json"].example;
  $("body").value = JSON.stringify(example, null, 2);
}

async function load() {
  $("status").textContent = "";
  $("status").className = "";
  const answer = await fetch("openapi.json", {headers: headers()});
  if (!answer.ok) {
    $("status").className = "error";
    $("status").textContent = answer.status === 401
      ? "This server needs its bearer token: type it above, then load the description."
      : "openapi.json answered " + answer.status + ": " + await answer.text();
    return;
  }
  show(await answer.json());
}

async function send() {
  const answer = await fetch("predict", {method: "POST", body: $("body").value,
                                         headers: headers({"Content-Type": "application/json"})});
  const text = await answer.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
  $("answer").textContent = answer.status + "\\n" + shown;
}

$("load").addEventListener("click", load);
$("send").addEventListener("click", send);
load();
</script>
</body>
</html>
"""
