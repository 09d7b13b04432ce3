"""Serving under load: `mlops serve` against `mlflow models serve` on the same model, on loopback.

    .venv/bin/python tests/bench/serve_bench.py [--duration 60] [--threads 2] [--connections 16]
                                                [--workers 1] > bench-serve.json

Starts a temporary local platform (MLflow and Prefect on free ports, a temporary MLOPS_HOME),
trains one model on the bundled penguins data with `mlops train`, then serves its champion
twice on the same machine at the same number of server processes (--workers, default 1):

- ours:     `mlops serve NAME --port P` (it finds the platform through MLOPS_HOME), `POST /predict`
            with `{"records": [...]}`;
- baseline: `mlflow models serve -m models:/NAME@champion --env-manager local --workers N`
            (MLflow's own default is one uvicorn worker), `POST /invocations` with
            `{"dataframe_records": [...]}`; the same records.

The load generator is `wrk` (closed loop: --connections connections over --threads threads,
each sends its next request as soon as the previous one is answered), with a Lua script that
POSTs the JSON body and prints a JSON summary from its `done()` hook. Each server gets the same
warm-up and the same run, for a 1-record and a 20-record body, alternating servers so that
other work on the machine hits both alike. Each runs as it ships: MLflow's scoring server
writes uvicorn's access log (a line per request, here to a temporary file), ours does not.
Figures per run: throughput (req/s), latency p50/p90/p99/max, errors (non-2xx answers and
connect/read/write/timeout socket errors), the CPU the server's processes and wrk used (on a
shared machine CPU-per-request is the steadier figure), and whether both answered the same.
Closed loop means mean latency = connections / throughput: at -c16, a p99 under 50 ms needs
more than 320 req/s whatever the server does; the JSON says so (rps_needed_for_p99_target).

Target (the issue): ours >= 2x the baseline's throughput with p99 <= 50 ms, zero errors, and
zero failed requests across a champion swap under load: while wrk runs against ours, a second
model version is registered (the same run's model, so predictions do not change) and
`champion` moves to it; the run's non-2xx and socket errors are counted, the `model_version`
of every answer is tallied (and whether any connection saw the old version again after the new
one), and /model and /predict must name the new version afterwards.

Shadow scoring's cost (issue 12 part 5, target: p50 and p99 with a challenger at most 1.1x
without one, same load): on ours only, each body size runs under the same wrk load without a
challenger and with one (another version of the champion's own model under `challenger`, so
the shadow does as much work as the champion), each twice in the order A B B A, under two loads: wrk's
closed loop (the server saturated, so any CPU the shadow takes shows as lost throughput and
longer waits), and the same offered rate for both, paced (wrk's delay() hook) at half the
closed loop's throughput without a challenger. The target is judged at the paced load (the
same load for both); the figures are the ratios with/without from the same run, and
/model's counts say how many records the challenger scored or skipped meanwhile.

JSON on stdout, progress and the table on stderr. Every server started here is stopped on the
way out (also on Ctrl-C, SIGTERM or an error), then the platform. Exit 1 when a figure could
not be measured; a missed target is not an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform as pyplatform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):  # the project, and tests/network.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from machine import load_average, package_version, usable_cores  # noqa: E402
from network import free_ports  # noqa: E402

HOST = "127.0.0.1"
SEED = 42
MODEL_NAME = "bench-serve"
DATA_SOURCE = "package://palmerpenguins/data/penguins.csv"
TARGET = "species"
TARGET_RATIO = 2.0  # ours / mlflow throughput
TARGET_P99_MS = 50.0
TARGET_SHADOW_RATIO = 1.1  # p50 and p99 with a challenger / without, at most
BODY_SIZES = (1, 20)
START_TIMEOUT_S = 180.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def note(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


# --------------------------------------------------------------------------- servers


class Server:
    """A server process in its own session: started, waited for, measured, always stopped."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], port: int,
                 health_path: str, predict_path: str, body_key: str, log: Path) -> None:
        self.label = label
        self.argv = argv
        self.env = env
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.health_url = self.url + health_path
        self.predict_url = self.url + predict_path
        self.body_key = body_key
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None

    def body(self, records: list[dict]) -> bytes:
        return json.dumps({self.body_key: records}).encode()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        started = time.perf_counter()
        with open(self.log, "ab") as log:
            # In the log's folder (a temporary one): no project .env changes its settings.
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.log.parent)
        while time.perf_counter() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode} before it "
                                   f"answered: {self.log_tail()}")
            try:
                if http("GET", self.health_url, timeout=2)[0] == 200:
                    self.start_seconds = time.perf_counter() - started
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.label} did not answer {self.health_url} within {timeout_s:.0f} s:"
                           f" {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output, without uvicorn's access log lines."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        kept = [x for x in text if not re.search(r'" [1-5]\d\d\b', x)]
        return "\n".join(kept[-lines:])

    def cpu_seconds(self) -> float:
        """CPU time of every live process in the server's session (and the children it reaped)."""
        if self.proc is None:
            return 0.0
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # after the command name: state ppid pgrp session ... utime(11) stime cutime cstime
            if int(fields[3]) == self.proc.pid:
                total += sum(int(x) for x in fields[11:15])
        return total / CLK_TCK

    def processes(self) -> int:
        if self.proc is None:
            return 0
        count = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                count += int(fields[3]) == self.proc.pid
        return count

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None and not self.processes():
            return
        pgid = self.proc.pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                self.proc.poll()
                if not self.processes():
                    return
                time.sleep(0.1)
        self.proc.poll()


# --------------------------------------------------------------------------- wrk

LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
%(response)s%(delay)s
local function fmt(x) return string.format("%%.1f", x) end

function done(summary, latency, requests)
  local e = summary.errors
  local out = {
    '"requests":' .. summary.requests,
    '"duration_us":' .. summary.duration,
    '"bytes":' .. summary.bytes,
    '"errors":{"connect":' .. e.connect .. ',"read":' .. e.read .. ',"write":' .. e.write
      .. ',"status":' .. e.status .. ',"timeout":' .. e.timeout .. '}',
    '"latency_us":{"mean":' .. fmt(latency.mean) .. ',"stdev":' .. fmt(latency.stdev)
      .. ',"min":' .. fmt(latency.min) .. ',"max":' .. fmt(latency.max)
      .. ',"p50":' .. fmt(latency:percentile(50)) .. ',"p90":' .. fmt(latency:percentile(90))
      .. ',"p99":' .. fmt(latency:percentile(99))
      .. ',"p999":' .. fmt(latency:percentile(99.9)) .. '}',
  }
%(done_extra)s
  io.write("WRK_JSON {" .. table.concat(out, ",") .. "}\\n")
end
"""

# Only for the swap run: a response() hook makes wrk hand every answer to Lua, which costs.
LUA_TRACK = """
versions = {}       -- model_version -> answers carrying it
statuses = {}       -- HTTP status -> answers
highest = 0         -- highest version this thread has seen
went_back = 0       -- answers carrying an older version after this thread saw a newer one
unparsed = 0        -- 2xx answers without a model_version
function response(status, headers, body)
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
  local v = string.match(body, '"model_version"%s*:%s*"?(%d+)')
  if v then
    versions[v] = (versions[v] or 0) + 1
    local n = tonumber(v)
    if n < highest then went_back = went_back + 1 end
    if n > highest then highest = n end
  elseif status >= 200 and status < 300 then
    unparsed = unparsed + 1
  end
end
"""

LUA_TRACK_DONE = """
  local function merge(into, from)
    for k, n in pairs(from or {}) do into[k] = (into[k] or 0) + n end
  end
  local function obj(t)
    local parts = {}
    for k, n in pairs(t) do table.insert(parts, '"' .. k .. '":' .. n) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local vs, ss, back, unparsed_all = {}, {}, 0, 0
  for _, t in ipairs(threads) do
    merge(vs, t:get("versions"))
    merge(ss, t:get("statuses"))
    back = back + (t:get("went_back") or 0)
    unparsed_all = unparsed_all + (t:get("unparsed") or 0)
  end
  table.insert(out, '"versions":' .. obj(vs))
  table.insert(out, '"statuses":' .. obj(ss))
  table.insert(out, '"went_back":' .. back)
  table.insert(out, '"unparsed_2xx":' .. unparsed_all)
"""


def write_lua(path: Path, body: bytes, track: bool, delay_ms: float | None = None) -> Path:
    """wrk's script; with `delay_ms` each connection waits that long before its next request
    (a paced load: the offered rate no longer depends on how fast the server answers)."""
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot be embedded in a Lua long string")
    delay = f"\nfunction delay()\n  return {round(delay_ms)}\nend\n" if delay_ms else ""  # whole ms
    path.write_text(LUA % {"body": text, "response": LUA_TRACK if track else "",
                           "done_extra": LUA_TRACK_DONE if track else "", "delay": delay})
    return path


class Wrk:
    """One wrk run; start() and result() so that other work can happen while it runs."""

    def __init__(self, url: str, script: Path, threads: int, connections: int,
                 duration_s: float, timeout_s: float) -> None:
        self.argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration_s)}s",
                     f"--timeout={int(timeout_s)}s", "--latency", "-s", str(script), url]
        self.duration_s = duration_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> Wrk:
        self.usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        return self

    def result(self) -> dict:
        assert self.proc is not None
        try:
            stdout, stderr = self.proc.communicate(timeout=self.duration_s + 60)
        finally:
            self.stop()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (usage.ru_utime - self.usage_before.ru_utime
               + usage.ru_stime - self.usage_before.ru_stime)
        line = next((x for x in stdout.splitlines() if x.startswith("WRK_JSON ")), None)
        if self.proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({self.proc.returncode}): {stderr.strip()[-500:]} "
                               f"{stdout.strip()[-500:]}")
        raw = json.loads(line.removeprefix("WRK_JSON "))
        raw["wrk_cpu_s"] = cpu
        return raw

    def run(self) -> dict:
        return self.start().result()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def summarise(raw: dict, server_cpu_s: float) -> dict:
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    lat = raw["latency_us"]
    requests = raw["requests"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    result = {
        "requests": requests,
        "seconds": round(seconds, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(lat["p50"] / 1000, 2),
        "p90_ms": round(lat["p90"] / 1000, 2),
        "p99_ms": round(lat["p99"] / 1000, 2),
        "p999_ms": round(lat["p999"] / 1000, 2),
        "max_ms": round(lat["max"] / 1000, 2),
        "mean_ms": round(lat["mean"] / 1000, 2),
        "non_2xx": errors["status"],  # wrk counts answers with a status above 399
        "socket_errors": {k: errors[k] for k in ("connect", "read", "write", "timeout")},
        "errors": errors["status"] + socket_errors,
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu_s / requests, 3) if requests else None,
        "wrk_cpu_s": round(raw["wrk_cpu_s"], 2),
    }
    for key in ("versions", "statuses", "went_back", "unparsed_2xx"):
        if key in raw:
            result[key] = raw[key]
    return result


# --------------------------------------------------------------------------- the model


def write_spec(directory: Path, trials: int, models: list[str] | None = None) -> Path:
    path = directory / f"{MODEL_NAME}.yaml"
    text = textwrap.dedent(f"""\
        name: {MODEL_NAME}
        task: classification
        data:
          source: {DATA_SOURCE}
          target: {TARGET}
        tuning:
          trials: {trials}
          metric: roc_auc
          seed: {SEED}
        """)
    if models:
        text += f"  models: [{', '.join(models)}]\n"
    path.write_text(text)
    return path


def train_model(spec: Path, env: dict[str, str], cwd: Path, timeout_s: float = 900) -> dict:
    started = time.perf_counter()
    done = subprocess.run([venv_bin("mlops"), "train", str(spec), "--json"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"mlops train failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["_seconds"] = time.perf_counter() - started
    return result


def sample_records(count: int) -> list[dict]:
    """Complete rows of the training data, features only, as JSON-ready dicts."""
    from experiments.data import load_table

    frame = load_table(DATA_SOURCE).drop(columns=[TARGET]).dropna()
    return json.loads(frame.head(count).to_json(orient="records"))


def add_version_and_swap(client, name: str) -> tuple[str, str, float]:
    """A second version of the champion's own model, then `champion` moved to it."""
    current, new = add_version(client, name, "serve-bench champion swap (same model as the "
                               "previous version)")
    client.set_registered_model_alias(name, "champion", new.version)
    return current.version, new.version, time.perf_counter()


def add_version(client, name: str, why: str):
    """The champion's version, and a new READY version of the champion's own model."""
    current = client.get_model_version_by_alias(name, "champion")
    tags = {k: v for k, v in current.tags.items() if not k.startswith("mlops.champion_")}
    tags["mlops.bench"] = why
    # MLflow 3: a version's source is its logged model (models:/m-...), named again by model_id.
    model_id = getattr(current, "model_id", None)
    if not model_id and current.source.startswith("models:/m-"):
        model_id = current.source.removeprefix("models:/").split("/")[0]
    kwargs = {"model_id": model_id} if model_id else {}
    new = client.create_model_version(name, source=current.source, run_id=current.run_id,
                                      tags=tags, await_creation_for=0, **kwargs)
    deadline = time.monotonic() + 60
    while new.status != "READY":  # the client's own wait sleeps in whole seconds
        if new.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"version {new.version} of {name} is {new.status}")
        time.sleep(0.05)
        new = client.get_model_version(name, new.version)
    return current, new


# --------------------------------------------------------------------------- measurements


def check_answer(server: Server, records: list[dict], ours: bool) -> dict:
    """One request by hand: 200, one prediction per record (and a version, for ours)."""
    status, text = http("POST", server.predict_url, server.body(records), timeout=30)
    if status != 200:
        raise RuntimeError(f"{server.label} answered {status} to a {len(records)}-record "
                           f"request: {text[:300]}")
    answer = json.loads(text)
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(records):
        raise RuntimeError(f"{server.label}: expected {len(records)} predictions, got {text[:300]}")
    if ours and "model_version" not in answer:
        raise RuntimeError(f"{server.label}: the answer has no model_version: {text[:300]}")
    return answer


def measure(server: Server, script: Path, args, duration_s: float) -> dict:
    load_before = load_average()
    cpu_before = server.cpu_seconds()
    raw = Wrk(server.predict_url, script, args.threads, args.connections, duration_s,
              args.timeout).run()
    result = summarise(raw, server.cpu_seconds() - cpu_before)
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    return result


def swap_under_load(server: Server, script: Path, args, client, name: str) -> dict:
    """wrk against ours for --duration; a third of the way in, `champion` moves to a new version."""
    cpu_before = server.cpu_seconds()
    wrk = Wrk(server.predict_url, script, args.threads, args.connections, args.duration,
              args.timeout).start()
    load_started = time.perf_counter()
    seen: list[tuple[float, str]] = []  # (seconds after the swap, version /model named)
    try:
        time.sleep(args.duration / 3)
        old, new, swapped_at = add_version_and_swap(client, name)
        note(f"  champion moved from version {old} to {new} under load, "
             f"{swapped_at - load_started:.1f} s into the run")
        end = swapped_at + args.duration * 2 / 3 - 1
        while time.perf_counter() < end:
            try:
                status, text = http("GET", server.url + "/model", timeout=5)
                version_now = str(json.loads(text).get("version")) if status == 200 else f"HTTP {status}"
            except (OSError, ValueError) as error:
                version_now = f"error: {error}"
            seen.append((round(time.perf_counter() - swapped_at, 2), version_now))
            if version_now == new:
                break
            time.sleep(0.2)
        raw = wrk.result()
    finally:
        wrk.stop()
    result = summarise(raw, server.cpu_seconds() - cpu_before)
    reload_s = next((t for t, v in seen if v == new), None)
    # After the run: what /model and /predict say now.
    status, text = http("GET", server.url + "/model", timeout=10)
    model_after = json.loads(text) if status == 200 else {"status": status, "body": text[:300]}
    answer_after = check_answer(server, sample_records(1), ours=True)
    new_count = result.get("versions", {}).get(new, 0)
    result.update({
        "old_version": old,
        "new_version": new,
        "swap_at_s": round(swapped_at - load_started, 1),
        "reload_seconds": reload_s,
        "model_polls": seen[-5:],
        "model_after": model_after,
        "predict_after_version": str(answer_after.get("model_version")),
        "answers_with_new_version": new_count,
        "new_version_served": (str(model_after.get("version")) == new
                               and str(answer_after.get("model_version")) == new
                               and new_count > 0),
    })
    result["met"] = result["errors"] == 0 and result["new_version_served"] and not result.get(
        "went_back")
    return result


def model_info(server: Server) -> dict:
    status, text = http("GET", server.url + "/model", timeout=10)
    if status != 200:
        raise RuntimeError(f"/model answered {status}: {text[:300]}")
    return json.loads(text)


def wait_for_challenger(server: Server, version: str | None, timeout_s: float = 60) -> float:
    """Seconds until /model names `version` as the challenger it shadows."""
    started = time.perf_counter()
    while model_info(server).get("challenger_version") != version:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"/model did not name challenger {version} within {timeout_s:g} s")
        time.sleep(0.2)
    return round(time.perf_counter() - started, 2)


def shadow_cost(server: Server, records: list[dict], args, client, name: str, tmp: Path,
                saturating: dict) -> dict:
    """Each body size without and with a challenger, alternating which goes first, under two
    loads: wrk's closed loop (the server saturated: what the shadow's CPU costs in
    throughput), and the same offered rate paced at half the closed loop's throughput
    without a challenger (`saturating`: the earlier run's, per body size)."""
    _, challenger = add_version(client, name, "serve-bench shadow challenger (the champion's "
                                "own model)")
    result: dict = {"challenger_version": challenger.version}
    for size in BODY_SIZES:
        body = server.body(records[:size])
        result[f"{size}_record"] = shadow_pair(server, write_lua(
            tmp / f"shadow-{size}.lua", body, track=False), size, args, client, name, challenger)
        rate = saturating.get(f"{size}_record", {}).get("rps")
        if rate:
            delay_ms = 1000 * args.connections / (rate / 2)
            paced = shadow_pair(server, write_lua(tmp / f"paced-{size}.lua", body, track=False,
                                                  delay_ms=delay_ms),
                                size, args, client, name, challenger)
            result[f"{size}_record_paced"] = {**paced, "offered_rps": round(rate / 2, 1),
                                              "delay_ms_per_connection": round(delay_ms, 2)}
    client.delete_registered_model_alias(name, "challenger")
    paced = [result[k] for k in result if k.endswith("_paced")]
    result["met"] = bool(paced) and all(e["met"] for e in paced)
    return result


def _mean_run(runs: list[dict]) -> dict:
    """The mean of runs' figures; errors and shadow counts summed."""
    mean = {k: round(sum(r[k] for r in runs) / len(runs), 3) for k in (
        "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_ms_per_request")}
    mean["errors"] = sum(r["errors"] for r in runs)
    mean["shadow"] = {k: sum(r["shadow"][k] for r in runs) for k in runs[0]["shadow"]}
    mean["load_average_before"] = [r["load_average_before"] for r in runs]
    return mean


def shadow_pair(server: Server, script: Path, size: int, args, client, name: str,
                challenger) -> dict:
    """One body size under one load, without and with the challenger shadowed, twice each in
    the order A B B A (which cancels a steady drift of the machine's other load); each
    phase's figures are the mean of its two runs."""
    runs: dict = {"without": [], "with": []}
    first, second = ("without", "with") if size % 2 else ("with", "without")
    for phase in (first, second, second, first):
        if phase == "with":
            client.set_registered_model_alias(name, "challenger", challenger.version)
        else:
            client.delete_registered_model_alias(name, "challenger")
        waited = wait_for_challenger(server, challenger.version if phase == "with" else None)
        before = model_info(server)
        Wrk(server.predict_url, script, args.threads, args.connections, args.warmup,
            args.timeout).run()
        note(f"mlops, {size}-record body, {phase} a challenger, {args.duration:g} s, "
             f"{script.stem} ...")
        m = measure(server, script, args, args.duration)
        after = model_info(server)
        m["shadow"] = {k: after.get(k, 0) - before.get(k, 0) for k in (
            "records_served", "shadow_scored", "shadow_skipped", "shadow_failed")}
        m["alias_followed_s"] = waited
        runs[phase].append(m)
        note(f"  {m['rps']:.1f} req/s, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
             f"{m['errors']} errors, shadow {m['shadow']}")
    with_, without = (_mean_run(runs[phase]) for phase in ("with", "without"))
    entry = {
        "without": without, "with": with_, "runs": runs,
        "p50_ratio": ratio(with_["p50_ms"], without["p50_ms"]),
        "p99_ratio": ratio(with_["p99_ms"], without["p99_ms"]),
        "rps_ratio": ratio(with_["rps"], without["rps"]),
        "cpu_per_request_ratio": ratio(with_["server_cpu_ms_per_request"],
                                       without["server_cpu_ms_per_request"]),
        # The share of the records served (warm-up included) that the challenger scored.
        "shadowed_share": ratio(with_["shadow"]["shadow_scored"],
                                with_["shadow"]["records_served"]),
    }
    entry["met"] = (entry["p50_ratio"] is not None and entry["p50_ratio"] <= TARGET_SHADOW_RATIO
                    and entry["p99_ratio"] <= TARGET_SHADOW_RATIO
                    and with_["errors"] == 0 and with_["shadow"]["shadow_failed"] == 0)
    return entry


# --------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def build_rows(results: dict) -> list[dict]:
    rows = []
    for size in BODY_SIZES:
        key = f"{size}_record"
        ours, theirs = results.get("mlops", {}).get(key), results.get("mlflow", {}).get(key)
        row = {"body": f"{size} record{'s' if size > 1 else ''}", "mlops": ours, "mlflow": theirs}
        if ours and theirs and "error" not in ours and "error" not in theirs:
            row["rps_ratio"] = ratio(ours["rps"], theirs["rps"])
            row["p99_ratio"] = ratio(ours["p99_ms"], theirs["p99_ms"])
            row["cpu_per_request_ratio"] = ratio(ours["server_cpu_ms_per_request"],
                                                 theirs["server_cpu_ms_per_request"])
            row["met"] = (row["rps_ratio"] >= TARGET_RATIO and ours["p99_ms"] <= TARGET_P99_MS
                          and ours["errors"] == 0)
        rows.append(row)
    return rows


def print_table(report: dict) -> None:
    p = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    cfg = report["config"]
    p("")
    p(f"serving under load: wrk -t{cfg['wrk_threads']} -c{cfg['wrk_connections']} "
      f"-d{cfg['duration_s']:g}s, {cfg['server_processes']} serving process(es) each, "
      f"model {report['model'].get('best_model', '?')}")
    header = f"{'body':<11} {'server':<7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} " \
             f"{'max ms':>8} {'errors':>7} {'cpu ms/req':>10}"
    p(header)
    p("-" * len(header))
    for row in report["rows"]:
        for label in ("mlops", "mlflow"):
            m = row.get(label)
            if not m:
                p(f"{row['body']:<11} {label:<7} not measured")
            elif "error" in m:
                p(f"{row['body']:<11} {label:<7} error: {m['error'][:70]}")
            else:
                p(f"{row['body']:<11} {label:<7} {m['rps']:>9.1f} {m['p50_ms']:>8.2f} "
                  f"{m['p99_ms']:>8.2f} {m['max_ms']:>8.1f} {m['errors']:>7} "
                  f"{m['server_cpu_ms_per_request'] or 0:>10.3f}")
        if "rps_ratio" in row:
            p(f"{'':<11} ours/mlflow: throughput x{row['rps_ratio']}, p99 x{row['p99_ratio']}, "
              f"CPU per request x{row['cpu_per_request_ratio']}; target >= x{TARGET_RATIO:g} "
              f"at p99 <= {TARGET_P99_MS:g} ms, 0 errors: {'met' if row['met'] else 'NOT met'}")
    s = report.get("swap")
    if s and "error" not in s:
        p(f"champion swap under load (v{s['old_version']} -> v{s['new_version']} at "
          f"{s['swap_at_s']} s): {s['requests']} requests, {s['rps']} req/s, p99 {s['p99_ms']} ms, "
          f"max {s['max_ms']} ms, {s['non_2xx']} non-2xx, socket errors "
          f"{s['socket_errors']}, answers by version {s.get('versions')}, /model named the new "
          f"version {s['reload_seconds']} s after the alias moved; afterwards /model and "
          f"/predict say v{s['model_after'].get('version')}/v{s['predict_after_version']}: "
          f"{'met' if s['met'] else 'NOT met'}")
    elif s:
        p(f"champion swap under load: error: {s['error']}")
    shadow = report.get("shadow")
    if shadow and "error" not in shadow:
        for key in (f"{size}_record{kind}" for size in BODY_SIZES for kind in ("", "_paced")):
            e = shadow.get(key)
            if e:
                load = (f"paced at {e['offered_rps']} req/s offered" if "offered_rps" in e
                        else "closed loop")
                p(f"shadow cost, {key.split('_')[0]}-record body, {load}: p50 {e['without']['p50_ms']} -> "
                  f"{e['with']['p50_ms']} ms (x{e['p50_ratio']}), p99 {e['without']['p99_ms']} -> "
                  f"{e['with']['p99_ms']} ms (x{e['p99_ratio']}), req/s x{e['rps_ratio']}, "
                  f"{e['shadowed_share']} of the records shadowed; target <= "
                  f"x{TARGET_SHADOW_RATIO:g}: {'met' if e['met'] else 'NOT met'}")
    elif shadow:
        p(f"shadow cost: error: {shadow['error']}")
    v = report["verdict"]
    p(f"verdict: {v['summary']}")
    if report["machine"].get("busy"):
        p("note: the machine was busy (1-min load above its cores): other programs skew these")


def verdict(report: dict) -> dict:
    first = report["rows"][0] if report["rows"] else {}
    swap = report.get("swap") or {}
    parts, met = [], True
    if "rps_ratio" in first:
        ok_rps = first["rps_ratio"] >= TARGET_RATIO
        ok_p99 = first["mlops"]["p99_ms"] <= TARGET_P99_MS
        ok_err = all(r["mlops"]["errors"] == 0 for r in report["rows"] if "rps_ratio" in r)
        parts.append(f"throughput x{first['rps_ratio']} of mlflow's ({'>=' if ok_rps else '<'} "
                     f"x{TARGET_RATIO:g}), p99 {first['mlops']['p99_ms']} ms "
                     f"({'<=' if ok_p99 else '>'} {TARGET_P99_MS:g}), "
                     f"{'zero errors' if ok_err else 'ERRORS'}")
        met = ok_rps and ok_p99 and ok_err
    else:
        parts.append("throughput not measured")
        met = False
    if "met" in swap:
        parts.append(f"swap: {swap['errors']} failed requests, new version "
                     + ("served" if swap["new_version_served"] else "NOT served (see /model)")
                     + (f", {swap['went_back']} answers from the old version after the new"
                        if swap.get("went_back") else ""))
        met = met and swap["met"]
    else:
        parts.append("swap not measured")
        met = False
    shadow = report.get("shadow") or {}
    if "met" in shadow:
        parts.append("shadow at a paced load: " + ", ".join(
            f"{size}-record p50 x{shadow[f'{size}_record_paced']['p50_ratio']} p99 "
            f"x{shadow[f'{size}_record_paced']['p99_ratio']}" for size in BODY_SIZES
            if f"{size}_record_paced" in shadow)
            + f" ({'<=' if shadow['met'] else 'NOT all <='} x{TARGET_SHADOW_RATIO:g})")
        met = met and shadow["met"]
    return {"met": met, "summary": ("target met: " if met else "target NOT met: ") + "; ".join(parts)}


# --------------------------------------------------------------------------- main


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def serve_options(env: dict[str, str]) -> str:
    """`mlops serve --help`, to pass only the options it has."""
    done = subprocess.run([venv_bin("mlops"), "serve", "--help"], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.stdout


def run(args, report: dict) -> None:
    from infra.local import local_platform
    from infra.services import start_services, stop_services, write_state

    options = serve_options(dict(os.environ))
    if args.workers != 1 and "--workers" not in options:
        raise RuntimeError("`mlops serve` has no --workers option: compare at --workers 1")
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="mlops-serve-bench-", ignore_cleanup_errors=True) as t:
        tmp = Path(t)
        mlflow_port, prefect_port, ours_port, mlflow_serve_port = free_ports(4)
        platform = local_platform(tmp / "home", HOST, mlflow_port, prefect_port)
        try:
            note(f"starting the platform (MLflow :{mlflow_port}, Prefect :{prefect_port})")
            started = time.perf_counter()
            start_services(platform.services, platform.home, timeout_s=START_TIMEOUT_S)
            write_state(platform.home, platform.state())
            report["platform_start_seconds"] = round(time.perf_counter() - started, 1)
            os.environ.update(platform.client_environment())
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            quiet = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                     "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
            # `mlops` finds the platform through MLOPS_HOME, as a user's would.
            mlops_env = {k: v for k, v in os.environ.items()
                         if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
            mlops_env.update(quiet, MLOPS_HOME=str(platform.home),
                             PREFECT_HOME=str(tmp / "prefect-client"))

            note(f"training {MODEL_NAME} on the penguins data ({args.trials} trials)")
            models = [m.strip() for m in args.models.split(",")] if args.models else None
            trained = train_model(write_spec(tmp, args.trials, models), mlops_env, tmp)
            report["model"] = {k: trained.get(k) for k in (
                "model_name", "model_version", "champion_version", "best_model", "metric",
                "run_id")}
            report["model"]["train_seconds"] = round(trained["_seconds"], 1)
            note(f"  version {trained['model_version']} ({trained.get('best_model')}) in "
                 f"{trained['_seconds']:.1f} s")
            name = trained["model_name"]

            ours_argv = [venv_bin("mlops"), "serve", name, "--port", str(ours_port)]
            if "--host" in options:
                ours_argv += ["--host", HOST]
            if "--workers" in options:
                ours_argv += ["--workers", str(args.workers)]
            ours_env = {**mlops_env, "MLOPS_SERVE_RELOAD_S": str(args.reload_s)}
            mlflow_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_MODELS_WORKERS"}
            # It runs `bash -c "exec uvicorn ..."`: the venv's bin must be on PATH, as it is
            # for a user with the venv activated.
            mlflow_env.update(quiet, PATH=os.pathsep.join(
                [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
            servers = [
                Server("mlops", ours_argv, ours_env, ours_port, "/health", "/predict", "records",
                       tmp / "mlops-serve.log"),
                Server("mlflow", [venv_bin("mlflow"), "models", "serve", "-m",
                                  f"models:/{name}@champion", "--env-manager", "local",
                                  "--host", HOST, "--port", str(mlflow_serve_port),
                                  "--workers", str(args.workers)],
                       mlflow_env, mlflow_serve_port, "/health", "/invocations",
                       "dataframe_records", tmp / "mlflow-serve.log"),
            ]
            report["servers"] = {}
            for server in servers:
                note(f"starting {server.label}: {Path(server.argv[0]).name} {' '.join(server.argv[1:])}")
                try:
                    server.start()
                except Exception as error:  # noqa: BLE001 - the other server is still measured
                    report["servers"][server.label] = {"error": str(error)}
                    note(f"  {server.label} did not start: {error}")
                    continue
                report["servers"][server.label] = {
                    "argv": [Path(server.argv[0]).name, *server.argv[1:]],
                    "start_seconds": round(server.start_seconds, 1),
                    "processes": server.processes()}
                note(f"  answering after {server.start_seconds:.1f} s "
                     f"({server.processes()} processes)")

            records = sample_records(max(BODY_SIZES))
            running = [s for s in servers if "error" not in report["servers"][s.label]]
            predictions: dict[tuple[str, int], list] = {}
            for size in BODY_SIZES:
                for server in (running if size % 2 else running[::-1]):
                    key = f"{size}_record"
                    entry = report.setdefault(server.label, {})
                    try:
                        body = server.body(records[:size])
                        answer = check_answer(server, records[:size], server.label == "mlops")
                        predictions[server.label, size] = answer["predictions"]
                        script = write_lua(tmp / f"{server.label}-{size}.lua", body, track=False)
                        Wrk(server.predict_url, script, args.threads, args.connections,
                            args.warmup, args.timeout).run()
                        note(f"{server.label}, {size}-record body, {args.duration:g} s ...")
                        entry[key] = measure(server, script, args, args.duration)
                        entry[key]["body_bytes"] = len(body)
                        entry[key]["sample_answer"] = {
                            k: (v[:3] + ["..."] if isinstance(v, list) and len(v) > 3 else v)
                            for k, v in answer.items()}
                        m = entry[key]
                        note(f"  {m['rps']:.1f} req/s, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
                             f"{m['errors']} errors, server CPU {m['server_cpu_ms_per_request']}"
                             f" ms/request")
                    except Exception as error:  # noqa: BLE001 - one failure must not lose the rest
                        entry[key] = {"error": f"{type(error).__name__}: {error}",
                                      "traceback": traceback.format_exc()}
                        note(f"  {server.label} {size}-record failed: {error}")

            # The same model behind both: the same answers to the same records.
            report["same_predictions"] = {
                f"{size}_record": predictions[("mlops", size)] == predictions[("mlflow", size)]
                for size in BODY_SIZES
                if ("mlops", size) in predictions and ("mlflow", size) in predictions}
            ours = servers[0]
            if "error" in report["servers"]["mlops"]:
                report["swap"] = {"error": "mlops serve did not start"}
            elif not args.no_swap:
                note(f"champion swap under load on mlops serve, {args.duration:g} s ...")
                try:
                    from mlflow.tracking import MlflowClient

                    script = write_lua(tmp / "swap.lua", ours.body(records[:1]), track=True)
                    report["swap"] = swap_under_load(ours, script, args, MlflowClient(), name)
                    s = report["swap"]
                    note(f"  {s['requests']} requests, {s['non_2xx']} non-2xx, socket errors "
                         f"{s['socket_errors']}, by version {s.get('versions')}, statuses "
                         f"{s.get('statuses')}")
                except Exception as error:  # noqa: BLE001
                    report["swap"] = {"error": f"{type(error).__name__}: {error}",
                                      "traceback": traceback.format_exc()}
                    note(f"  swap failed: {error}")
            if "error" not in report["servers"]["mlops"] and not args.no_shadow:
                try:
                    from mlflow.tracking import MlflowClient

                    report["shadow"] = shadow_cost(ours, records, args, MlflowClient(), name, tmp,
                                                   report.get("mlops", {}))
                except Exception as error:  # noqa: BLE001
                    report["shadow"] = {"error": f"{type(error).__name__}: {error}",
                                        "traceback": traceback.format_exc()}
                    note(f"  shadow cost failed: {error}")
            for server in servers:
                alive = server.proc is not None and server.proc.poll() is None
                entry = report["servers"].setdefault(server.label, {})
                entry["alive_at_end"] = alive
                # What the server said (its errors, if any); the log goes with the temp dir.
                entry["log_tail"] = server.log_tail(40).splitlines()
        finally:
            for server in servers:
                try:
                    server.stop()
                except Exception as error:  # noqa: BLE001 - stop the rest regardless
                    note(f"could not stop {server.label}: {error}")
            note("stopping the platform")
            stop_services(platform.services, platform.home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60,
                        help="seconds of load per measured run (default 60)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before each run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections, kept open (default 16)")
    parser.add_argument("--timeout", type=float, default=5,
                        help="wrk's per-request timeout in seconds (counted as errors)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes for each server (default 1, MLflow's default)")
    parser.add_argument("--trials", type=int, default=5, help="Optuna trials for the model")
    parser.add_argument("--models", default=None,
                        help="model families to search, comma-separated (default: the spec's "
                             "default); e.g. random_forest for a heavier model")
    parser.add_argument("--reload-s", type=float, default=2,
                        help="MLOPS_SERVE_RELOAD_S for mlops serve (how often it polls the alias)")
    parser.add_argument("--no-swap", action="store_true", help="skip the champion swap run")
    parser.add_argument("--no-shadow", action="store_true",
                        help="skip the runs with and without a shadowed challenger")
    parser.add_argument("--threads-native", type=int, default=1,
                        help="OpenMP/BLAS threads for training and both servers (0: defaults)")
    args = parser.parse_args(argv)
    if args.duration < 3 or args.warmup < 1:
        parser.error("--duration must be at least 3 s and --warmup at least 1 s")
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (make wrk, or apt-get install -y wrk)", file=sys.stderr)
        return 1
    if args.threads_native > 0:
        # Both servers and the training inherit it: a spinning OpenMP pool on a shared
        # 2-core machine is noise, not serving speed.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads_native)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    started = time.perf_counter()
    report: dict = {"model": {}}
    machine = {
        "cores": os.cpu_count(), "usable_cores": usable_cores(),
        "load_average_at_start": load_average(), "python": sys.version.split()[0],
        "platform": pyplatform.platform(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
        "packages": {n: package_version(n) for n in (
            "mlflow", "fastapi", "uvicorn", "scikit-learn", "pandas", "skops")},
    }
    finished = False
    try:
        run(args, report)
        finished = True
    except Exception as error:  # noqa: BLE001 - still write what was measured
        report["error"] = f"{type(error).__name__}: {error}"
        report["traceback"] = traceback.format_exc()
        note(f"the bench failed: {report['error']}")
    finally:
        loads = [m.get(k) for side in ("mlops", "mlflow") for m in report.get(side, {}).values()
                 if isinstance(m, dict) for k in ("load_average_before", "load_average_after")]
        peak = max([x[0] for x in loads if x] or [0.0])
        machine["peak_load_average"] = peak
        machine["busy"] = peak > usable_cores()
        report["rows"] = build_rows(report)
        report["verdict"] = verdict(report)
        report["machine"] = machine
        report["config"] = {
            "duration_s": args.duration, "warmup_s": args.warmup, "wrk_threads": args.threads,
            "wrk_connections": args.connections, "wrk_timeout_s": args.timeout,
            # uvicorn processes that answer requests (`mlflow models serve` also keeps its CLI
            # process, idle, as their parent)
            "server_processes": args.workers, "trials": args.trials, "reload_s": args.reload_s,
            "model_families": args.models or "spec default",
            # Closed loop: mean latency = connections / throughput (Little's law), so a p99
            # under the target needs at least connections / target req/s.
            "rps_needed_for_p99_target": round(args.connections / (TARGET_P99_MS / 1000)),
            "native_threads": args.threads_native or "library default",
            "mlflow_workers_default": "1 (mlflow models serve --workers: PyFuncBackend uses "
                                      "workers or 1)",
        }
        report["target"] = {"throughput_ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS,
                            "errors": 0, "swap_failed_requests": 0,
                            "shadow_latency_ratio": TARGET_SHADOW_RATIO}
        report["run"] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                         "total_seconds": round(time.perf_counter() - started, 1),
                         "finished": finished}
        ordered = {k: report[k] for k in ("verdict", "rows", "swap", "shadow", "same_predictions", "model",
                                          "servers", "config",
                                          "target", "machine", "run", "error", "traceback",
                                          "platform_start_seconds") if k in report}
        print(json.dumps(ordered, indent=2, default=str))
        print_table(report)
    failed = "error" in report or any(
        not row.get(side) or "error" in row[side] for row in report["rows"]
        for side in ("mlops", "mlflow")) or any(
        "error" in (report.get(k) or {}) for k in ("swap", "shadow"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
