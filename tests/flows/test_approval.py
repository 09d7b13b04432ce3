"""Approval before serving (`promotion.mode: approve`) against the real platform: a winner waits
in a suspended flow run of its own, `mlops approve` / `mlops reject` settle it through that run,
and bad input moves nothing."""

import getpass
import json
import os
import subprocess
import textwrap
import time

import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from conftest import MLOPS
from synthetic import binary_frame

from registry.history import champion_history

pytestmark = pytest.mark.integration

NAME = "it-approve"


def approve_spec(folder, name: str, seed: int = 11) -> str:
    binary_frame(n=200, seed=seed).to_csv(folder / f"{name}.csv", index=False)
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {name}
        task: classification
        data: {{source: {folder / f'{name}.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        promotion: {{mode: approve, approval_timeout_hours: 1}}
        """))
    return str(spec)


def wait_until_paused(flow_run_id: str, timeout_s: float = 120):
    """The approval run once it is suspended waiting for input."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_paused():
                return run
            time.sleep(0.5)
    raise AssertionError(f"approval flow run {flow_run_id} never paused: {run.state}")


def approval_run_of(name: str, version: str) -> str:
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs()
            for run in runs:
                if {f"model:{name}", f"version:{version}"} <= set(run.tags):
                    return str(run.id)
            time.sleep(0.5)
    raise AssertionError(f"no approval flow run for {name} v{version}")


@pytest.fixture(scope="module")
def awaiting(platform, tmp_path_factory):
    """NAME v1 trained in approve mode by `mlops train --json`: it won (no champion yet) and waits."""
    folder = tmp_path_factory.mktemp("approval")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    started = time.monotonic()
    done = subprocess.run([MLOPS, "train", approve_spec(folder, NAME), "--json"], capture_output=True,
                          text=True, env={**env, "MLOPS_HOME": str(platform.home)}, cwd=folder,
                          timeout=600)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    run_id = approval_run_of(NAME, result["model_version"])
    return result, run_id, took, folder


def test_a_winner_waits_as_challenger_and_train_returns_at_once(awaiting):
    """Given approve mode, when `mlops train` makes a version that wins the gate, then it returns
    with awaiting_approval, the version holds `challenger`, not `champion`, and its approval run
    is suspended waiting for the typed input."""
    result, run_id, _, _ = awaiting

    run = wait_until_paused(run_id)

    assert (result["awaiting_approval"], result["promoted"], result["champion_version"]) == (
        True, False, None)
    model = MlflowClient().get_registered_model(NAME)
    assert model.aliases == {"challenger": result["model_version"]}
    tags = MlflowClient().get_model_version(NAME, result["model_version"]).tags
    assert tags["mlops.approval"] == "awaiting"
    assert tags["mlops.promotion"].startswith("awaiting approval: no champion yet")
    assert run.name == f"approve {NAME} v{result['model_version']}"
    assert run.state.state_details.run_input_keyset  # the UI shows the typed form


@pytest.mark.parametrize(("args", "fragment"), [
    (["approve", "no-such-model", "1"], "unknown model 'no-such-model'"),
    (["approve", NAME, "9"], f"model '{NAME}' has no version 9"),
    (["approve", NAME, "one"], "version must be a number"),
    (["reject", NAME, "1"], "--reason must say why"),
    (["approve", "it-approve-never", "1"], "awaits no approval: it never waited for one"),
])
def test_bad_input_is_one_line_and_moves_nothing(mlops, awaiting, args, fragment):
    """Given a waiting v1 and a model that never waits, when approve/reject is given a wrong
    model, version, reason, or a version waiting for nothing, then one line, exit 1, no move."""
    from registry.champion import register

    client = MlflowClient()
    if args[1] == "it-approve-never":
        try:
            client.get_registered_model("it-approve-never")
        except Exception:  # noqa: BLE001 - made once for this case
            first = client.get_model_version(NAME, "1")
            register(client, "it-approve-never", first.source, first.run_id, {})
    before = client.get_registered_model(NAME).aliases, champion_history(client, NAME)

    done = mlops(*args, timeout=120)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert fragment in done.stderr
    assert (client.get_registered_model(NAME).aliases, champion_history(client, NAME)) == before
    assert wait_until_paused(awaiting[1]).state.is_paused()


def test_reject_then_approve_from_the_command_line(mlops, awaiting):
    """Given v1 waiting, when a person approves it with `mlops approve`, then its approval run
    moves `champion` to it and records who and why; a second version that wins is rejected with
    `mlops reject` and stays challenger; approving it afterwards is refused."""
    result, run_id, _, folder = awaiting
    wait_until_paused(run_id)
    me = getpass.getuser()

    approved = mlops("approve", NAME, "1", "--reason", "checked the card", "--json")

    assert approved.returncode == 0, approved.stderr[-3000:]
    assert json.loads(approved.stdout) == {
        "model_name": NAME, "version": "1", "decision": "approved", "by": me,
        "comment": "checked the card", "champion_version": "1", "flow_run_id": run_id}
    [period] = champion_history(MlflowClient(), NAME)
    assert (period["version"], period["by"]) == ("1", me)
    assert period["reason"] == "approved: checked the card (gate: no champion yet)"
    tags = MlflowClient().get_model_version(NAME, "1").tags
    assert (tags["mlops.promoted_by"], tags["mlops.approval_by"]) == (me, me)

    again = mlops("approve", NAME, "1")
    assert again.returncode == 1 and f"it was approved by {me} already" in again.stderr


def test_reject_keeps_the_champion(mlops, awaiting):
    """Given v1 champion and v2 waiting for approval, when a person rejects v2, then champion
    stays v1 and v2 stays challenger, recorded rejected by them with their reason."""
    name = "it-approve-reject"
    version = waiting_second_version(name)

    done = mlops("reject", name, version, "--reason", "not on a Friday", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["decision"] == "rejected"
    client = MlflowClient()
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": version}
    tags = client.get_model_version(name, version).tags
    assert (tags["mlops.approval"], tags["mlops.approval_by"], tags["mlops.approval_comment"]) == (
        "rejected", getpass.getuser(), "not on a Friday")
    assert [h["version"] for h in champion_history(client, name)] == ["1"]


def waiting_second_version(name: str) -> str:
    """NAME with v1 champion (from the trained model) and v2 challenger, waiting for approval
    in its own approval run, as a training in approve mode leaves it."""
    from flows.approval import ApproveParameters, request_approval
    from registry.champion import CHALLENGER, Move, move_champion, register

    client = MlflowClient()
    first = client.get_model_version(NAME, "1")
    register(client, name, first.source, first.run_id, {})
    move_champion(client, name, "1", Move("gate", "no champion yet", None))
    version = register(client, name, first.source, first.run_id, {}).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    run_id = request_approval(ApproveParameters(model=name, version=version, gate_reason="wins: x",
                                                timeout_hours=1))
    wait_until_paused(str(run_id))
    return str(version)
