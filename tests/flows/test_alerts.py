"""Alerts end to end: `mlops alerts` against the session's Prefect server, and a webhook
receiver run by the test. The flows emit their events for real: a training that promotes,
a drift check that triggers, a training deployment run that fails on bad data."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from polling import wait_for
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-alerts"
TOKEN = "s3cr3t-T0KEN-xyz"
MLOPS = str(Path(sys.executable).parent / "mlops")


class Receiver:
    """A webhook on 127.0.0.1 that keeps the JSON bodies it is sent."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self, *fragments: str) -> list[str]:
        return [r["body"]["text"] for r in list(self.received)
                if all(f in r["body"].get("text", "") for f in fragments)]


def _cli(platform, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env["MLOPS_HOME"] = str(platform.home)
    return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=env, timeout=300)


def _alert_automations():
    from prefect.client.orchestration import get_client

    from flows.alerts import ALERT_TAG

    with get_client(sync_client=True) as client:
        return [a for a in client.read_automations() if ALERT_TAG in a.tags]


@pytest.fixture(scope="module")
def alerts(platform):
    """One alert on the receiver, and one on a webhook that accepts connections and never
    answers: it must delay neither the flows nor the other alert's messages."""
    from prefect.client.orchestration import get_client

    from flows.alerts import add_alert, remove_alert
    from flows.webhooks import KINDS

    receiver = Receiver()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    added = _cli(platform, "alerts", "add", receiver.url, "--json")
    assert added.returncode == 0, added.stderr
    with get_client(sync_client=True) as client:  # in-process: the CLI's path is the first one
        dead = add_alert(client, f"http://127.0.0.1:{silent.getsockname()[1]}/x", KINDS, platform.mlflow_url)
    yield receiver, json.loads(added.stdout)
    with get_client(sync_client=True) as client:
        remove_alert(client, dead)
    receiver.server.shutdown()
    silent.close()


@pytest.fixture(scope="module")
def events(alerts, platform, tmp_path_factory):
    """A failing training deployment run, a first training (a promotion) and a drift check
    that triggers retraining, with both alerts installed."""
    from prefect.deployments import run_deployment

    from flows.monitor import MonitorParameters, monitor
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("alerts")
    binary_frame(n=300, seed=5).to_csv(folder / "train.csv", index=False)
    binary_frame(n=50, seed=6).drop(columns=["label"]).to_csv(folder / "no-label.csv", index=False)
    shifted = binary_frame(n=300, seed=7)
    shifted[["x1", "x2", "noise"]] += 2.0
    shifted.to_csv(folder / "shifted.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{drift_share: 0.3, cooldown_minutes: 60}}
        """))
    failing = run_deployment("train/train", timeout=0, parameters={
        "params": {"experiment": str(spec), "data": str(folder / "no-label.csv")}})
    trained = train(TrainParameters(experiment=str(spec)))
    checked = monitor(MonitorParameters(model=NAME, current=str(folder / "shifted.csv")))
    return {"failing": failing, "trained": trained, "checked": checked, "spec": str(spec)}


def test_bad_input_creates_nothing(platform, mlops):
    """Given a URL that is not http(s), or an unknown event kind, `mlops alerts add` exits 1
    with one line and no automation or block is made."""
    before = len(_alert_automations())

    results = [mlops("alerts", "add", f"ftp://127.0.0.1/{TOKEN}"),
               mlops("alerts", "add", "http://127.0.0.1:9/hook", "--on", "drift,earthquake")]

    assert [r.returncode for r in results] == [1, 1]
    assert "http:// or https://" in results[0].stderr and "'earthquake'" in results[1].stderr
    assert all(len(r.stderr.strip().splitlines()) == 1 for r in results)
    assert TOKEN not in results[0].stderr
    assert len(_alert_automations()) == before


def test_each_alert_kind_arrives_once_with_its_links(alerts, events, platform):
    """The promotion, the triggered drift check and the failed deployment run each send one
    message to the receiver, naming the model, the version, the reason and both links."""
    receiver, _ = alerts
    trained, checked, failing = events["trained"], events["checked"], events["failing"]
    assert trained["promoted"] and checked["retraining"] == "triggered"
    promotion = (f"{NAME} v{trained['model_version']} is the new champion",)
    drift = (f"mlops drift alert: {NAME} v{checked['champion_version']}: retraining triggered",)
    failure = ("mlops failure alert", f"/runs/flow-run/{failing.id}")

    arrived = wait_for(lambda: all(receiver.texts(*f) for f in (promotion, drift, failure)), timeout_s=120)
    time.sleep(2)  # a duplicate would come with the first

    assert arrived, [r["body"] for r in receiver.received]
    found = [receiver.texts(*f) for f in (promotion, drift, failure)]
    assert [len(texts) for texts in found] == [1, 1, 1], json.dumps(found, indent=1)
    [promoted], [drifted], [failed] = found
    prefect_run = f"{platform.prefect_url}/runs/flow-run/"
    assert "(was none)" in promoted and "reason: no champion yet (trigger: manual, by gate)" in promoted
    assert f"{platform.mlflow_url}/#/models/{NAME}/versions/{trained['model_version']}" in promoted
    assert trained["run_url"] in promoted and f"{prefect_run}{trained['flow_run_id']}" in promoted
    assert f"reason: {checked['reason']}" in drifted and checked["run_url"] in drifted
    assert f"Prefect: {prefect_run}" in drifted
    assert "flow run" in failed and "of train Failed (deployment: train)" in failed
    assert f"model: {events['spec']}" in failed and "label" in failed  # the reason names the missing target
    assert f"MLflow: {platform.mlflow_url}/#/experiments?workflowType" in failed
    assert f"Prefect: {prefect_run}{failing.id}" in failed
    assert not receiver.texts("mlops quality alert")


def test_status_reports_the_messages_to_the_webhook_that_never_answered(alerts, events, platform):
    """Given the alert whose webhook accepts and never answers, when Prefect gives up on its
    send-notification actions (a timeout each, retried three times), then `mlops status`
    names them with the folder Prefect keeps them in, and `--json` counts them by kind."""

    def silent_ones() -> dict:
        done = _cli(platform, "status", "--json")
        assert done.returncode == 0, done.stderr
        kinds = json.loads(done.stdout)["dropped_messages"]["kinds"]
        return {kind: n for kind, n in kinds.items() if kind.startswith("send-notification action")}

    assert wait_for(silent_ones, timeout_s=180, interval_s=2)
    shown = _cli(platform, "status")

    assert shown.returncode == 0
    assert "Prefect gave up on" in shown.stderr and "send-notification action of" in shown.stderr
    assert str(platform.home / "prefect" / "dlq") in shown.stderr.replace("\n", "")


def test_a_persons_moves_each_send_a_promotion_alert(alerts, events, platform):
    """Given a model whose champion a person promotes to v2, rolls back to v1 and promotes to v2
    again within a minute, then each move sends one promotion message naming the version, the
    person, the command and the reason (v2 twice: a version may take champion again)."""
    import getpass

    from mlflow.tracking import MlflowClient

    from registry.champion import Move, move_champion, register

    receiver, _ = alerts
    client, moves = MlflowClient(), f"{NAME}-moves"
    trained = client.get_model_version(NAME, events["trained"]["model_version"])
    for _ in range(2):
        register(client, moves, trained.source, trained.run_id, {})
    move_champion(client, moves, "1", Move("gate", "no champion yet", None))

    done = [_cli(platform, "promote", moves, "2", "--reason", "try two"),
            _cli(platform, "rollback", moves),
            _cli(platform, "promote", moves, "2", "--reason", "two again")]

    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr for d in done]
    two, one = f"{moves} v2 is the new champion", f"{moves} v1 is the new champion"
    assert wait_for(lambda: len(receiver.texts(two)) == 2 and receiver.texts(one), timeout_s=120), \
        [r["body"] for r in receiver.received]
    time.sleep(2)  # a duplicate would come with the first
    assert len(receiver.texts(two)) == 2 and len(receiver.texts(one)) == 1
    me = getpass.getuser()
    assert receiver.texts(two, "(was v1)", f"reason: try two (trigger: promote, by {me})")
    assert receiver.texts(two, f"reason: two again (trigger: promote, by {me})")
    [back] = receiver.texts(one)
    assert "(was v2)" in back and f"reason: rollback from version 2 (trigger: rollback, by {me})" in back
    assert f"{platform.mlflow_url}/#/models/{moves}/versions/1" in back
    assert "Prefect: none: moved with the mlops command" in back


def test_list_masks_the_url(alerts, platform):
    receiver, added = alerts

    listed = _cli(platform, "alerts", "list", "--json")

    assert listed.returncode == 0, listed.stderr
    mine = [a for a in json.loads(listed.stdout)["alerts"] if a["id"] == added["id"]]
    assert mine == [{"id": added["id"], "url": receiver.url.replace(f"/{TOKEN}", "/***"),
                     "on": ["drift", "quality", "promotion", "failure"]}]
    assert TOKEN not in listed.stdout


def test_remove_removes_the_automations_and_the_block(alerts, platform):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from experiments.errors import InputError
    from flows.alerts import remove_alert

    _, added = alerts
    mine = [a for a in _alert_automations() if f"mlops.alert.id:{added['id']}" in a.tags]
    block_id = mine[0].actions[0].block_document_id

    removed = _cli(platform, "alerts", "remove", added["id"])

    assert removed.returncode == 0, removed.stderr
    assert not [a for a in _alert_automations() if f"mlops.alert.id:{added['id']}" in a.tags]
    with get_client(sync_client=True) as client:
        with pytest.raises(ObjectNotFound):
            client.read_block_document(block_id)
        with pytest.raises(InputError, match="no alert with id"):  # what `remove` says in one line
            remove_alert(client, added["id"])


def test_the_runner_installed_the_zombie_automation_once(platform):
    """The runner, on start, installed Prefect's automation that crashes a flow run whose
    heartbeats stopped, with the silence of its settings; installing again changes nothing."""
    from prefect.client.orchestration import get_client

    from flows.heartbeats import NAME as ZOMBIES
    from flows.heartbeats import install_zombie_automation
    from infra.settings import load_settings

    silence = load_settings().heartbeat_silence_s  # the runner inherits this environment
    with get_client(sync_client=True) as client:
        again = install_zombie_automation(client, silence)
        [installed] = client.read_automations_by_name(ZOMBIES)

    assert again == "unchanged"
    assert installed.trigger.posture == "Proactive"
    assert installed.trigger.after == {"prefect.flow-run.heartbeat", "prefect.flow-run.Pending"}
    assert installed.trigger.for_each == {"prefect.resource.id"}
    assert installed.trigger.within.total_seconds() == silence
    assert [(a.type, a.state.value) for a in installed.actions] == [("change-flow-run-state", "CRASHED")]


def test_flow_runs_send_heartbeats(events, platform):
    """The failing deployment run (a process of the runner) sent heartbeats to Prefect."""
    from prefect.client.orchestration import get_client

    resource = f"prefect.flow-run.{events['failing'].id}"
    query = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                        "resource": {"id": [resource]}}, "limit": 10}

    def beats():
        with get_client(sync_client=True) as client:  # it carries the CSRF token the server wants
            response = client._client.post("/events/filter", json=query)
        response.raise_for_status()
        return response.json()["events"]

    assert wait_for(beats, timeout_s=30, interval_s=1)
