"""`mlops serve` as a real process against the real platform: answers, refusals, hot reload,
its own description (/openapi.json, /docs) following the champion,
shutdown, and the loop from live traffic through drift to retraining."""

import json
import signal
import textwrap
import threading
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from network import free_port
from polling import wait_for
from serve_process import Server, as_records, user_environment
from synthetic import binary_frame

from monitoring.traffic import FEEDBACK, TRAFFIC, LocalFiles, read_parts

pytestmark = pytest.mark.integration

NAME = "it-serve"


def local_server(home: Path, folder: Path, overrides: dict | None = None) -> Server:
    return Server(NAME, user_environment(home, overrides), folder)


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """A champion for NAME (a forest on XOR data) whose spec retrains on feedback and calls one
    drifted column of four enough to retrain."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("serving")
    binary_frame(n=400, seed=11).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [random_forest]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{drift_share: 0.2, cooldown_minutes: 60, window_minutes: 60, min_rows: 100,
                      retrain_on_feedback: true}}
        """))
    return train(TrainParameters(experiment=str(spec))), folder


@pytest.fixture(scope="module")
def server(platform, trained):
    """`mlops serve NAME` for the module, polling the alias every second."""
    _, folder = trained
    running = local_server(platform.home, folder, {"MLOPS_SERVE_RELOAD_S": "1"})
    yield running
    running.stop()


def test_predictions_are_the_registered_models_own(server, trained):
    """Given records with nulls in both kinds of column, the answers equal the registered
    version's pyfunc predictions on the same table (nulls as NaN, as a CSV reads them)."""
    sent = as_records(binary_frame(n=60, seed=31))

    answer = server.predict(sent)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    version = body["model_version"]
    assert version == str(trained[0]["champion_version"])
    frame = pd.DataFrame(sent).astype({"x1": float, "x2": float, "noise": float})
    frame["colour"] = frame["colour"].where(frame["colour"].notna(), np.nan)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    assert body["predictions"] == list(pyfunc.predict(frame))
    assert len(body["request_id"]) == 32
    model = server.client.get("/model").json()
    assert (model["name"], model["version"], model["run_id"]) == (
        NAME, version, MlflowClient().get_model_version(NAME, version).run_id)


def test_probabilities_are_the_registered_models_own(server, trained):
    """Given `"proba": true`, the answer adds the classes and, per record, the registered
    version's own predict_proba, over HTTP; without it, neither key."""
    from experiments.contract import DataContract
    from experiments.pipelines import feature_frame
    from registry.loading import load_registered

    sent = as_records(binary_frame(n=40, seed=33))

    answer = server.client.post("/predict", json={"records": sent, "proba": True})
    plain = server.predict(sent).json()

    assert answer.status_code == 200, answer.text
    body = answer.json()
    loaded = load_registered(MlflowClient(), NAME, body["model_version"])
    contract = DataContract.from_dict(loaded.metadata["mlops_contract"])
    frame = pd.DataFrame(sent).astype({"x1": float, "x2": float, "noise": float})
    frame["colour"] = frame["colour"].where(frame["colour"].notna(), np.nan)
    features = feature_frame(frame, contract.numeric, contract.categorical)
    assert body["classes"] == loaded.pipeline.classes_.tolist()
    assert np.allclose(body["probabilities"], loaded.pipeline.predict_proba(features), rtol=0, atol=1e-12)
    assert body["predictions"] == plain["predictions"]
    assert "probabilities" not in plain and "classes" not in plain


@pytest.mark.parametrize(
    ("change", "record", "field"),
    [({"x1": "high"}, 1, "x1"), ({"colour": 7}, 1, "colour"), ("drop x2", 1, "x2"),
     ({"shoe_size": 42}, 1, "shoe_size")],
)
def test_contract_violations_are_422_naming_the_field(server, change, record, field):
    sent = as_records(binary_frame(n=3, seed=32))
    if change == "drop x2":
        del sent[1]["x2"]
    else:
        sent[1].update(change)

    answer = server.predict(sent)

    assert answer.status_code == 422
    assert (answer.json()["record"], answer.json()["field"]) == (record, field)
    assert f"field '{field}'" in answer.json()["detail"]


def test_malformed_and_oversized_bodies_are_refused(server):
    malformed = server.client.post("/predict", content=b'{"records": [{"x1": 1,',
                                   headers={"content-type": "application/json"})
    oversized = server.client.post("/predict", content=b'{"records": [' + b" " * (1 << 21) + b"]}",
                                   headers={"content-type": "application/json"})
    not_a_list = server.client.post("/predict", json={"rows": []})

    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
    assert oversized.status_code == 413 and "MLOPS_SERVE_MAX_BODY_BYTES" in oversized.json()["detail"]
    assert not_a_list.status_code == 422
    assert server.client.get("/health").status_code == 200


def stored_ids(files, kind: str) -> set[str]:
    """The request ids in the traffic store, of served records or of feedback."""
    frame = read_parts(files, NAME, kind)
    return set(frame["request_id"]) if len(frame) else set()


def add_version(client: MlflowClient, version):
    """Another version of the same logged model, registered as the platform registers one
    (with the digest the server's loader checks)."""
    from registry.champion import register

    return register(client, NAME, version.source, version.run_id, {})


def test_champion_moves_under_load_without_a_failed_request(server, trained):
    """Given two threads sending requests without pause, moving `champion` to a new version
    fails none of them, and each thread's answers switch to the new version and stay there."""
    client = MlflowClient()
    old = client.get_model_version_by_alias(NAME, "champion")
    records = as_records(binary_frame(n=4, seed=33))
    stop = threading.Event()
    seen: list[list[str]] = [[], []]
    failures: list[str] = []

    def send(versions: list[str]) -> None:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
            while not stop.is_set():
                try:
                    answer = http.post("/predict", json={"records": records})
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                else:
                    versions.append(answer.json()["model_version"])
                time.sleep(0.01)

    threads = [threading.Thread(target=send, args=(v,)) for v in seen]
    for thread in threads:
        thread.start()
    try:
        # Answers under the old version first, so that the switch happens mid-stream.
        wait_for(lambda: all(len(v) >= 20 for v in seen), timeout_s=60)
        new = add_version(client, old)
        client.set_registered_model_alias(NAME, "champion", new.version)
        wait_for(lambda: all(v and v[-1] == new.version for v in seen), timeout_s=60, interval_s=0.2)
        # Then enough answers after the switch to see that they stay on the new version.
        switched = [len(v) for v in seen]
        wait_for(lambda: all(len(v) >= n + 50 for v, n in zip(seen, switched, strict=True)), timeout_s=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert failures == []
    for versions in seen:
        switched = versions.index(new.version)
        assert switched > 0 and set(versions[:switched]) == {old.version}
        assert set(versions[switched:]) == {new.version}
    assert server.client.get("/model").json()["version"] == new.version


def test_a_champion_that_ships_code_is_refused_while_the_old_one_serves(server, tmp_path):
    """Given a running server, when `champion` moves to a version logged with a `skops`
    package in its code paths, the server logs the refusal and keeps answering with the old
    version, and the package never runs."""
    from planted import log_planted, plant

    from registry.champion import register
    from registry.loading import load_registered

    client, marker = MlflowClient(), tmp_path / "marker"
    old = client.get_model_version_by_alias(NAME, "champion")
    served = load_registered(client, NAME, old.version)
    run_id = client.create_run(client.get_run(old.run_id).info.experiment_id).info.run_id
    uri = log_planted(run_id, served.pipeline, served.metadata, plant(tmp_path / "planted", marker))
    client.set_terminated(run_id)
    planted = register(client, NAME, uri, run_id, {}).version
    client.set_registered_model_alias(NAME, "champion", planted)
    try:
        refused = f"not serving {NAME} version {planted}: refused {NAME} version {planted}: it ships code"
        assert wait_for(lambda: refused in server.log.read_text(), timeout_s=60, interval_s=0.2), \
            server.log.read_text()[-3000:]
        answer = server.predict(as_records(binary_frame(n=3, seed=35)))
    finally:
        client.set_registered_model_alias(NAME, "champion", old.version)

    assert answer.status_code == 200 and answer.json()["model_version"] == old.version
    assert server.client.get("/model").json()["version"] == old.version
    assert not marker.exists()


def described(server) -> dict:
    answer = server.client.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_api_describes_the_champions_contract(server):
    """Given the served champion, /openapi.json is an OpenAPI 3 document whose record schema
    has every column of the version's own data contract, typed, with its categories as an
    enum and its training range as minimum and maximum; /docs is an HTML page."""
    from fastapi.openapi.models import OpenAPI

    from experiments.contract import DataContract
    from registry.loading import load_registered

    client = MlflowClient()
    version = client.get_model_version_by_alias(NAME, "champion").version
    assert wait_for(lambda: described(server)["info"]["version"] == version, timeout_s=30)
    contract = DataContract.from_dict(load_registered(client, NAME, version).metadata["mlops_contract"])

    document = described(server)
    docs = server.client.get("/docs")

    assert {"openapi", "info", "paths", "components"} <= set(document)
    assert document["openapi"].startswith("3.")
    OpenAPI.model_validate(document)
    assert set(document["paths"]) == {"/predict", "/feedback", "/health", "/model"}
    record = document["components"]["schemas"]["Record"]
    assert record["required"] == contract.feature_names == ["x1", "x2", "noise", "colour"]
    for column in contract.columns:
        field = record["properties"][column.name]
        if column.kind == "numeric":
            assert field["type"] == ["number", "null"]
            assert (field["minimum"], field["maximum"]) == (column.minimum, column.maximum)
        else:
            assert field["type"] == ["string", "null"]
            assert field["enum"] == ["blue", "green", "red", None]
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")


def test_a_new_champion_with_another_contract_changes_the_description(server, tmp_path):
    """Given a running server, when `champion` moves to a version whose contract knows two
    colours and a wider x1, /openapi.json describes that contract once the server serves it."""
    from dataclasses import replace

    from experiments.contract import DataContract
    from experiments.tracking import log_sklearn_model
    from registry.champion import register
    from registry.loading import load_registered
    from serving.model import example_features

    client = MlflowClient()
    old = client.get_model_version_by_alias(NAME, "champion")
    served = load_registered(client, NAME, old.version)
    contract = DataContract.from_dict(served.metadata["mlops_contract"])
    changed = replace(contract, columns=tuple(
        replace(c, categories=("blue", "red")) if c.name == "colour" else
        replace(c, minimum=-10.0, maximum=10.0) if c.name == "x1" else c for c in contract.columns))
    run_id = client.create_run(client.get_run(old.run_id).info.experiment_id).info.run_id
    uri = log_sklearn_model(run_id, served.pipeline, example_features(changed),
                            {**served.metadata, "mlops_contract": changed.to_dict()}).uri
    client.set_terminated(run_id)
    new = register(client, NAME, uri, run_id, {}).version
    client.set_registered_model_alias(NAME, "champion", new)
    try:
        assert wait_for(lambda: described(server)["info"]["version"] == new, timeout_s=60, interval_s=0.2)
        record = described(server)["components"]["schemas"]["Record"]
    finally:
        client.set_registered_model_alias(NAME, "champion", old.version)

    assert record["properties"]["colour"]["enum"] == ["blue", "red", None]
    assert (record["properties"]["x1"]["minimum"], record["properties"]["x1"]["maximum"]) == (-10.0, 10.0)
    assert wait_for(lambda: described(server)["info"]["version"] == old.version, timeout_s=60, interval_s=0.2)


@pytest.mark.browser
def test_a_request_tried_from_the_docs_page_is_answered(server, page):
    """Given /docs in headless Chromium (no network beyond the server), the page lists the
    record fields with their categories, and its example, sent with the page's button, is
    answered by the champion."""
    page.goto(f"{server.url}/docs")
    page.get_by_role("cell", name="blue, green, red, null").wait_for(timeout=30_000)
    fields = page.locator("#fields tbody tr td:first-child").all_inner_texts()
    page.get_by_role("button", name="Send").click()
    page.locator("#answer").filter(has_text="model_version").wait_for(timeout=30_000)
    shown = page.locator("#answer").inner_text()

    assert fields == ["x1", "x2", "noise", "colour"]
    status, _, body = shown.partition("\n")
    assert status == "200"
    assert json.loads(body)["model_version"] == server.client.get("/model").json()["version"]


def test_sigterm_writes_every_answered_record(platform, trained, tmp_path):
    """Given a server that would flush only hourly, the records of every request it answered
    before SIGTERM (some sent while it was stopping) are in the store after it exits."""
    _, folder = trained
    traffic = tmp_path / "traffic"
    server = local_server(platform.home, folder, {"MLOPS_TRAFFIC_URI": str(traffic),
                                                  "MLOPS_TRAFFIC_FLUSH_S": "3600"})
    answered: dict[str, int] = {}
    lock = threading.Lock()

    def send(seed: int) -> None:
        sent = as_records(binary_frame(n=1 + seed % 7, seed=seed))
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
            for _ in range(400):
                try:
                    answer = http.post("/predict", json={"records": sent})
                except httpx.HTTPError:
                    return  # the server is going away
                if answer.status_code != 200:
                    return
                with lock:
                    answered[answer.json()["request_id"]] = len(answer.json()["predictions"])

    threads = [threading.Thread(target=send, args=(seed,)) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered) >= 100, timeout_s=60)
    assert not traffic.exists() or not any(traffic.rglob("*.parquet"))

    code = server.stop()
    for thread in threads:
        thread.join()

    assert code in (0, -signal.SIGTERM), server.log.read_text()[-2000:]
    stored = read_parts(LocalFiles(traffic), NAME, TRAFFIC)
    assert len(answered) > 10
    assert stored.groupby("request_id").size().to_dict() == answered


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [(["no-such-model"], {}, "unknown model 'no-such-model'"),
     (["it-serve-empty"], {}, "model 'it-serve-empty' has no champion"),
     ([NAME], {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}, "platform is not running")],
)
def test_serve_refuses_up_front_in_one_line(mlops, trained, args, env, fragment):
    """Given an unknown model, a model without champion, or no MLflow, `mlops serve` ends at
    once with one line naming the problem."""
    if args == ["it-serve-empty"] and not MlflowClient().search_registered_models(
            "name = 'it-serve-empty'"):
        MlflowClient().create_registered_model("it-serve-empty")

    done = mlops("serve", *args, "--port", str(free_port()), timeout=120, env_overrides=env)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert fragment in done.stderr


def test_too_little_live_traffic_is_one_line_and_a_skipped_flow(mlops, trained, tmp_path, monkeypatch):
    """Given an empty traffic store, `mlops monitor` says so in one line and records no check;
    the flow (as the schedule runs it) completes and says it skipped."""
    from flows.monitor import MonitorParameters, monitor
    from infra.settings import load_settings, use

    def checks() -> int:
        experiment = MlflowClient().get_experiment_by_name(f"{NAME}-monitoring")
        return len(MlflowClient().search_runs([experiment.experiment_id])) if experiment else 0

    before = checks()

    done = mlops("monitor", NAME, "--json", env_overrides={"MLOPS_TRAFFIC_URI": str(tmp_path)})
    monkeypatch.setenv("MLOPS_TRAFFIC_URI", str(tmp_path))
    use(load_settings())  # as a flow run's process reads them
    try:
        result = monitor(MonitorParameters(model=NAME))
    finally:
        use(None)

    assert done.returncode == 1 and done.stdout == ""
    assert "too little live traffic: 0 records in the last 60 minutes" in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert result["skipped"] is True and "too little live traffic" in result["reason"]
    assert checks() == before


def test_drifted_live_traffic_retrains_with_its_feedback(platform, server, mlops, trained):
    """Given live traffic with x1 moved by five standard deviations, and true labels sent back
    for it, `mlops monitor NAME` (no --current) triggers retraining, which trains a new
    version tagged mlops.trigger=drift on the spec's data plus the labelled live rows."""
    from flows.demo import wait_for_retraining

    shifted = binary_frame(n=600, seed=34)
    shifted["x1"] = shifted["x1"] + 5.0
    truth = np.where((shifted["x1"] > 0) ^ (shifted["x2"] > 0), "yes", "no")
    labelled = 0
    sent: set[str] = set()
    for start in range(0, len(shifted), 50):
        answer = server.predict(as_records(shifted.iloc[start:start + 50]))
        assert answer.status_code == 200
        feedback = server.client.post("/feedback", json={
            "request_id": answer.json()["request_id"], "labels": truth[start:start + 50].tolist()})
        assert feedback.status_code == 200, feedback.text
        sent.add(answer.json()["request_id"])
        labelled += 50
    # The server writes every MLOPS_TRAFFIC_FLUSH_S (5 s by default) to <MLOPS_HOME>/traffic.
    store = LocalFiles(platform.home / "traffic")
    assert wait_for(lambda: sent <= stored_ids(store, TRAFFIC) and sent <= stored_ids(store, FEEDBACK),
                    timeout_s=60, interval_s=0.2), "the served records and their feedback were not written"

    done = mlops("monitor", NAME, "--json", timeout=300)

    assert done.returncode == 0, done.stderr
    check = json.loads(done.stdout)
    assert check["drift_detected"] is True and "x1" in check["drifted_columns"]
    assert check["window"]["rows"] == check["window"]["rows_checked"] >= 600  # read whole
    assert check["window"]["sampled"] is False
    assert check["retraining"] == "triggered"
    retrained = wait_for_retraining(MlflowClient(), NAME, check["monitoring_run_id"],
                                    timeout_s=400, poll_s=0.5)
    assert retrained is not None and retrained["version"] is not None, "no retraining finished"
    assert retrained["run"].data.tags["mlops.trigger"] == "drift"
    assert int(retrained["version"].version) > int(check["champion_version"])
    from monitoring.champion import load_run_spec

    source = load_run_spec(MlflowClient(), retrained["run"].info.run_id).data.source
    assert len(pd.read_parquet(source)) == 400 + labelled
