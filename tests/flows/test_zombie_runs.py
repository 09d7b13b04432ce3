"""A training whose process is killed (SIGKILL: nothing reports its end) is marked Crashed by
the heartbeat automation the runner installed, and leaves nothing behind that stops the next
training. A platform of its own, whose runner was started with the shortest silence the
settings allow (Prefect beats every 30 s at the least), so the wait is about a minute and
no other test's flow run is judged by it."""

import json
import os
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime

import pytest
from mlflow.tracking import MlflowClient
from own_platform import MLOPS
from polling import wait_for
from synthetic import binary_frame

from infra.platform import HEARTBEAT_SECONDS

pytestmark = pytest.mark.integration

NAME = "it-zombie"
SILENCE_S = 2 * HEARTBEAT_SECONDS
# The server looks at proactive triggers every 5 s; the rest is a busy machine.
MARGIN_S = 30


@pytest.fixture(scope="module")
def short_silence_platform(tmp_path_factory):
    from environment import clients_pointed_at
    from own_platform import own_platform

    home = tmp_path_factory.mktemp("zombie") / "home"
    with own_platform(home, {"MLOPS_HEARTBEAT_SILENCE_S": str(SILENCE_S)}) as running:
        with clients_pointed_at(running.client_environment()):
            yield running


@dataclass(frozen=True)
class Claimed:
    left: object  # a run claimed (Pending) by a worker that then died
    started: object  # a run claimed and started
    pending_at: datetime


@pytest.fixture(scope="module", autouse=True)
def claimed(short_silence_platform) -> Claimed:
    """Two runs claimed by a worker (Pending), one of them started: made before this module's
    first test, once the runner installed the automation, so that their silence passes
    while the other tests run."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Running, Scheduled

    from flows.heartbeats import NAME as ZOMBIES

    @flow(name="it-claimed-by-a-dead-worker")
    def claimed_flow() -> None:
        pass

    with get_client(sync_client=True) as client:
        assert wait_for(lambda: client.read_automations_by_name(ZOMBIES), timeout_s=60, interval_s=0.5)
        left = client.create_flow_run(claimed_flow, state=Scheduled())
        started = client.create_flow_run(claimed_flow, state=Scheduled())
        for run in (left, started):  # what a worker does when it takes a run
            assert client.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
        assert client.set_flow_run_state(started.id, Running()).status.value == "ACCEPT"
        return Claimed(left, started, client.read_flow_run(left.id).state.timestamp)


def write_spec(folder) -> str:
    """A search that runs for its timeout (far more trials than it can finish), so the kill
    lands in it, and the resumed training ends soon."""
    binary_frame(n=300, seed=5).to_csv(folder / "train.csv", index=False)
    spec = folder / f"{NAME}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 5000, timeout_s: 10, cv_folds: 3, models: [logistic_regression]}}
        """))
    return str(spec)


def train_runs():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train"])))


def heartbeats(flow_run_id) -> list[dict]:
    from prefect.client.orchestration import get_client

    query = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                        "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 50}
    with get_client(sync_client=True) as client:  # it carries the CSRF token the server wants
        response = client._client.post("/events/filter", json=query)
    response.raise_for_status()
    return response.json()["events"]


def group_ended(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def flow_run(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def parent_runs() -> list:
    experiment = MlflowClient().get_experiment_by_name(NAME)
    if experiment is None:
        return []
    return MlflowClient().search_runs([experiment.experiment_id],
                                      filter_string="tags.mlops.flow_run_id != ''")


def trial_runs() -> list:
    """The trials' runs (children of a training's parent run) recorded so far."""
    return [trial for parent in parent_runs()
            for trial in MlflowClient().search_runs(
                [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")]


def test_a_killed_training_is_crashed_by_the_automation_and_the_next_one_resumes(
        short_silence_platform, tmp_path):
    """Given `mlops train` killed with SIGKILL mid-search, its flow run is marked Crashed by
    the heartbeat automation (its message), a silence after its last beat; nothing was
    registered; the same training run again resumes the killed one's study and MLflow run
    (once its lease ran out) and registers version 1."""
    from experiments.lease import LEASE_S
    from flows.heartbeats import crash_message

    platform = short_silence_platform
    spec = write_spec(tmp_path)
    log = tmp_path / "killed.log"
    with log.open("w") as stderr:
        training = subprocess.Popen([MLOPS, "train", spec, "--json"], stdout=subprocess.DEVNULL,
                                    stderr=stderr, env=platform.env, cwd=tmp_path,
                                    start_new_session=True)
    try:
        assert wait_for(lambda: len(train_runs()) == 1, timeout_s=120, interval_s=0.5), log.read_text()
        [run] = train_runs()
        # Mid-search: it has beaten (the automation only watches runs that did), its study is
        # tied to its MLflow run (a trial's run exists: the tie is written before the search),
        # and the search is still going. Killed between creating its run and tying the study,
        # a training is not resumed (nothing of its search existed): the next one starts anew.
        assert wait_for(lambda: heartbeats(run.id) and trial_runs(), timeout_s=60, interval_s=0.5)
        assert training.poll() is None
        os.killpg(training.pid, signal.SIGKILL)  # the CLI and anything it started
        killed_at = time.time()
    finally:
        if training.poll() is None:
            os.killpg(training.pid, signal.SIGKILL)
        training.wait(timeout=30)
    assert wait_for(lambda: group_ended(training.pid), timeout_s=10)  # nothing of it left running

    assert flow_run(run.id).state.type.value == "RUNNING"  # nobody told Prefect
    crashed = wait_for(lambda: flow_run(run.id).state.type.value != "RUNNING",
                       timeout_s=SILENCE_S + 2 * MARGIN_S, interval_s=1)
    state = flow_run(run.id).state
    assert crashed and state.type.value == "CRASHED", state
    assert state.message == crash_message(SILENCE_S)  # the automation, not a runner or `up`
    last_beat = max(datetime.fromisoformat(e["occurred"]) for e in heartbeats(run.id))
    waited = (state.timestamp - last_beat).total_seconds()
    assert SILENCE_S - 1 <= waited <= SILENCE_S + MARGIN_S, waited

    [killed] = parent_runs()
    assert killed.info.status == "RUNNING"  # MLflow runs have no heartbeat (see README)
    assert MlflowClient().search_registered_models(f"name = '{NAME}'") == []

    time.sleep(max(0.0, killed_at + LEASE_S + 1 - time.time()))  # the study's lease runs out
    again = platform.run("train", spec, "--json", cwd=tmp_path, timeout=300)

    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["run_id"] == killed.info.run_id  # resumed, not a second attempt
    assert (result["model_version"], result["promoted"]) == ("1", True)
    assert flow_run(result["flow_run_id"]).state.type.value == "COMPLETED"
    assert [r.state.type.value for r in train_runs() if r.id != run.id] == ["COMPLETED"]


def test_a_run_left_pending_by_a_dead_worker_is_crashed_by_the_automation(claimed):
    """Given a flow run claimed (Pending) by a worker that died before starting it, which
    never beats, the automation sets it Crashed with its message a silence after it went
    Pending, and a run that started meanwhile is left alone."""
    from flows.heartbeats import crash_message

    crashed = wait_for(lambda: flow_run(claimed.left.id).state.type.value != "PENDING",
                       timeout_s=SILENCE_S + 2 * MARGIN_S, interval_s=1)
    state = flow_run(claimed.left.id).state
    assert crashed and state.type.value == "CRASHED", state
    assert state.message == crash_message(SILENCE_S)
    waited = (state.timestamp - claimed.pending_at).total_seconds()
    assert SILENCE_S - 1 <= waited <= SILENCE_S + MARGIN_S, waited
    # Its start ended the wait for it: from there its heartbeats are what is watched.
    assert flow_run(claimed.started.id).state.type.value == "RUNNING"


# Last: an update gives the automation a new trigger, and Prefect drops the waits the old one
# had open (the claimed runs' above).
def test_the_runner_installs_the_silence_of_its_settings_and_updates_another(short_silence_platform):
    from prefect.client.orchestration import get_client

    from flows.heartbeats import NAME as ZOMBIES
    from flows.heartbeats import install_zombie_automation

    with get_client(sync_client=True) as client:
        [installed] = client.read_automations_by_name(ZOMBIES)
        assert installed.trigger.within.total_seconds() == SILENCE_S
        # What a runner started with another silence does to the one installed.
        assert install_zombie_automation(client, 300) == "updated"
        assert install_zombie_automation(client, SILENCE_S) == "updated"
        [again] = client.read_automations_by_name(ZOMBIES)

    assert again.id == installed.id and again.trigger.within.total_seconds() == SILENCE_S
