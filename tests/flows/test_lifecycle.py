"""`mlops history`, `mlops promote` and `mlops rollback` against the real platform: the moves,
their records, bad input, two people at once, and a running `mlops serve` following them."""

import getpass
import json
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from mlflow.tracking import MlflowClient
from network import free_port
from polling import wait_for
from prefect.client.orchestration import get_client
from serve_process import Server, as_records, user_environment
from synthetic import binary_frame

from flows.schedules import model_schedules, monitor_deployment, schedule_monitoring
from registry.champion import register
from registry.history import champion_history

pytestmark = pytest.mark.integration

NAME = "it-life"
EVERY_MINUTES = 45


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """NAME trained once (v1, champion by the gate) plus two more versions of the same model."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("lifecycle")
    binary_frame(n=200, seed=5).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{every_minutes: {EVERY_MINUTES}}}
        """))
    result = train(TrainParameters(experiment=str(spec)))
    client = MlflowClient()
    first = client.get_model_version(NAME, result["model_version"])
    for _ in range(2):
        register(client, NAME, first.source, first.run_id, {})
    return first, folder


def model_with_versions(name: str, first, count: int, champion: str | None = "1") -> None:
    """NAME with COUNT versions of the trained model; the first made champion by the gate."""
    from registry.champion import Move, move_champion

    client = MlflowClient()
    for _ in range(count):
        register(client, name, first.source, first.run_id, {})
    if champion:
        move_champion(client, name, champion, Move("gate", "no champion yet", None))


def champion_of(name: str) -> str:
    return str(MlflowClient().get_model_version_by_alias(name, "champion").version)


def as_json(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # not even a warning that the monitoring schedule was not updated
    return json.loads(done.stdout)


def schedule_every(name: str) -> float | None:
    with get_client(sync_client=True) as prefect:
        found = model_schedules(monitor_deployment(prefect)).get(name)
    return None if found is None else found.every_minutes


def test_promote_rollback_and_promote_again_are_each_recorded(mlops, trained):
    """Given v1 champion by the gate, when a person promotes v2, rolls back, and promotes v2
    again, then each command answers the move, the history has the four periods oldest first
    with who and why, and the monitoring schedule follows the champion."""
    me = getpass.getuser()

    first = as_json(mlops("promote", NAME, "2", "--reason", "try the second", "--json"))
    back = as_json(mlops("rollback", NAME, "--json"))
    with get_client(sync_client=True) as prefect:  # lost meanwhile: the next move brings it back
        schedule_monitoring(prefect, NAME, 0)
    again = as_json(mlops("promote", NAME, "2", "--reason", "fixed upstream", "--json"))
    history = as_json(mlops("history", NAME, "--json"))

    assert first == {"model_name": NAME, "champion_version": "2", "previous_champion": "1",
                     "by": me, "reason": "try the second"}
    assert (back["champion_version"], back["previous_champion"], back["reason"]) == (
        "1", "2", "rollback from version 2")
    assert (again["champion_version"], again["previous_champion"]) == ("2", "1")
    assert history["model_name"] == NAME
    rows = history["history"]
    assert [(h["version"], h["by"]) for h in rows] == [("1", "gate"), ("2", me), ("1", me), ("2", me)]
    assert [h["reason"] for h in rows[1:]] == ["try the second", "rollback from version 2", "fixed upstream"]
    assert rows[0]["reason"] == "no champion yet"
    assert [h["until"] for h in rows[:-1]] == [h["from"] for h in rows[1:]] and rows[-1]["until"] is None
    assert champion_of(NAME) == "2"
    tags = {v: MlflowClient().get_model_version(NAME, v).tags for v in ("1", "2")}
    assert (tags["2"]["mlops.champion_from"], tags["2"]["mlops.promoted_by"]) == (rows[-1]["from"], me)
    assert "mlops.champion_until" not in tags["2"]
    assert tags["1"]["mlops.champion_until"] == rows[-1]["from"]
    described = {v: MlflowClient().get_model_version(NAME, v).description for v in ("1", "2")}
    assert described["2"] == f"Champion since {rows[-1]['from']}, moved by {me}: fixed upstream"
    # Version 1 came from a training: its link to its model card stays through every move.
    sentence, card = described["1"].split("\n\n")
    assert sentence == (f"Champion until {rows[-1]['from']}, when version 2 took over "
                        f"(moved by {me}: fixed upstream)")
    assert card.startswith("Model card: [model_card.md](") and card.endswith(
        "/artifacts/model_card.md?workflowType=machine_learning)")
    assert schedule_every(NAME) == EVERY_MINUTES
    table = mlops("history", NAME)
    assert table.returncode == 0 and "fixed upstream" in table.stdout


@pytest.fixture(scope="module")
def settled(platform, trained):
    """it-life-bad: v1 champion (one period), v2 waiting; it-life-none: one version, no champion."""
    model_with_versions("it-life-bad", trained[0], 2)
    model_with_versions("it-life-none", trained[0], 1, champion=None)


STOPPED = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}


@pytest.mark.parametrize(("args", "env", "fragment"), [
    (["promote", "no-such-model", "1", "--reason", "x"], {}, "unknown model 'no-such-model'"),
    (["promote", "it-life-bad", "9", "--reason", "x"], {}, "model 'it-life-bad' has no version 9"),
    (["promote", "it-life-bad", "two", "--reason", "x"], {}, "version must be a number"),
    (["promote", "it-life-bad", "1", "--reason", "x"], {}, "it-life-bad version 1 is already champion"),
    (["promote", "it-life-bad", "2", "--reason", "  "], {}, "--reason must say why"),
    (["promote", "it-life-bad", "2"], {}, "--reason must say why"),
    (["promote", "it-life-bad", "2", "--reason", "x"], STOPPED, "platform is not running"),
    (["rollback", "it-life-bad"], {}, "it-life-bad has no earlier champion than version 1"),
    (["rollback", "it-life-bad", "--reason", ""], {}, "--reason must say why"),
    (["rollback", "it-life-none"], {}, "it-life-none has no champion to roll back from"),
    (["rollback", "no-such-model"], {}, "unknown model 'no-such-model'"),
    (["rollback", "it-life-bad"], STOPPED, "platform is not running"),
    (["history", "no-such-model"], {}, "unknown model 'no-such-model'"),
    (["history", "it-life-bad"], STOPPED, "platform is not running"),
])
def test_bad_input_is_one_line_and_moves_nothing(mlops, settled, args, env, fragment):
    client = MlflowClient()
    before = {name: (client.get_registered_model(name).aliases, champion_history(client, name))
              for name in ("it-life-bad", "it-life-none")}

    done = mlops(*args, "--json", timeout=120, env_overrides=env)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert fragment in done.stderr
    assert done.stdout == ""
    assert {name: (client.get_registered_model(name).aliases, champion_history(client, name))
            for name in before} == before


def test_two_promotions_at_once_are_made_in_turn(mlops, trained):
    """Given v1 champion, when two people promote v2 and v3 at the same moment, then both
    moves are made one after the other: the second replaced the first, and the history is
    one chain ending at the version that serves."""
    name = "it-life-race"
    model_with_versions(name, trained[0], 3)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda v: mlops("promote", name, v, "--reason", f"race {v}", "--json"),
                             ["2", "3"]))

    moved = sorted((as_json(d) for d in done), key=lambda m: m["previous_champion"] != "1")
    assert moved[0]["previous_champion"] == "1"
    assert moved[1]["previous_champion"] == moved[0]["champion_version"]
    history = champion_history(MlflowClient(), name)
    assert [h["version"] for h in history] == ["1", moved[0]["champion_version"],
                                               moved[1]["champion_version"]]
    assert [h["until"] for h in history[:-1]] == [h["from"] for h in history[1:]]
    assert champion_of(name) == moved[1]["champion_version"]
    with get_client(sync_client=True) as prefect:  # the gate's lock, not one of its own
        assert prefect.read_global_concurrency_limit_by_name(f"mlops-promote-{name}").limit == 1


# A promotion here starts and reaches the lock in about 15 s on a busy machine.
HELD_S = 45.0


def test_a_promotion_waits_for_the_gate_and_replaces_the_champion_it_made(mlops, trained):
    """Given a retraining's gate holding the model's lock, when a person promotes meanwhile,
    then the promotion waits until the gate has moved `champion` and let go, and replaces the
    gate's champion: both moves are in the history, the gate's first."""
    from flows import locks
    from registry.champion import Move, move_champion

    name = "it-life-gate"
    model_with_versions(name, trained[0], 3)
    with ThreadPoolExecutor(1) as pool:
        with locks.held(locks.promotion_lock(name)):
            person = pool.submit(mlops, "promote", name, "2", "--reason", "by hand", "--json")
            move_champion(MlflowClient(), name, "3", Move("gate", "wins: a retraining", "1"))
            moved_meanwhile = wait_for(lambda: champion_of(name) != "3", timeout_s=HELD_S)
            assert not person.done()
        moved = as_json(person.result())

    assert not moved_meanwhile, "the promotion moved champion while the gate held the lock"

    assert (moved["champion_version"], moved["previous_champion"]) == ("2", "3")
    assert [(h["version"], h["by"]) for h in champion_history(MlflowClient(), name)] == [
        ("1", "gate"), ("3", "gate"), ("2", getpass.getuser())]


def test_two_promotions_of_one_version_at_once_move_it_once(mlops, trained):
    name = "it-life-twice"
    model_with_versions(name, trained[0], 2)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: mlops("promote", name, "2", "--reason", "same", "--json"),
                             range(2)))

    assert sorted(d.returncode for d in done) == [0, 1]
    assert "already champion" in next(d.stderr for d in done if d.returncode)
    assert [h["version"] for h in champion_history(MlflowClient(), name)] == ["1", "2"]


class Load:
    """Two threads sending requests without pause, noting each answer's version or failure."""

    def __init__(self, url: str, records: list[dict]):
        self.seen: list[list[str]] = [[], []]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(url, records, s)) for s in self.seen]
        for thread in self._threads:
            thread.start()

    def _send(self, url: str, records: list[dict], seen: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post("/predict", json={"records": records})
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code}: {answer.text}")
                else:
                    seen.append(answer.json()["model_version"])

    def all_answer(self, version: str) -> bool:
        return all(s and s[-1] == version for s in self.seen)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def seconds_until(condition, timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


# The server polls the alias every 5 s (its default), then loads and warms the new version.
FOLLOW_S = 5.0 + 5.0


def test_a_running_server_follows_a_promotion_and_a_rollback_under_load(mlops, platform, trained):
    """Given `mlops serve` answering two busy clients, when a person promotes v2 and then
    rolls back, then within the poll interval plus a load every answer comes from the new
    champion, each time, and no request fails meanwhile."""
    name = "it-life-serve"
    model_with_versions(name, trained[0], 2)
    server = Server(name, user_environment(platform.home), trained[1])
    load = Load(server.url, as_records(binary_frame(n=4, seed=7)))
    try:
        assert seconds_until(lambda: load.all_answer("1"), 30) is not None
        as_json(mlops("promote", name, "2", "--reason", "serve v2", "--json"))
        to_promoted = seconds_until(lambda: load.all_answer("2"), FOLLOW_S)
        as_json(mlops("rollback", name, "--json"))
        to_rolled_back = seconds_until(lambda: load.all_answer("1"), FOLLOW_S)
    finally:
        load.stop()
        server.stop()

    assert to_promoted is not None, f"not serving v2 {FOLLOW_S} s after the promotion"
    assert to_rolled_back is not None, f"not serving v1 {FOLLOW_S} s after the rollback"
    assert load.failures == []
    for seen in load.seen:  # each client moved 1 -> 2 -> 1, never back and forth
        changes = [v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v]
        assert changes == ["1", "2", "1"], changes
