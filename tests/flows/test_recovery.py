"""Retrainings that end badly: a restart while one is pending, one cancelled before it ran.
Real MLflow, Prefect and runner; the restart test on the spare platform (it goes down and up)."""

import json
import textwrap
import time

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for
from synthetic import binary_frame

pytestmark = pytest.mark.integration

FINAL = {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}


def write_spec(folder, name: str, cooldown_minutes: int) -> str:
    binary_frame(n=200, seed=11).to_csv(folder / "train.csv", index=False)
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {name}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        monitoring: {{drift_share: 0.3, cooldown_minutes: {cooldown_minutes}}}
        """))
    return str(spec)


def batch(folder, seed: int, shift: float = 2.0) -> str:
    frame = binary_frame(n=200, seed=seed)
    for column in ("x1", "x2", "noise"):
        frame[column] = frame[column] + shift
    path = folder / f"batch-{seed}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def cli_json(run, *args: str) -> dict:
    done = run(*args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def retrain_run_of(check_id: str):
    """The retrain flow run the drift event of a check created, once it exists."""
    from prefect.client.orchestration import get_client

    from flows.recovery import monitoring_run_of, retrain_runs

    with get_client(sync_client=True) as client:
        return next((r for r in retrain_runs(client) if monitoring_run_of(r) == check_id), None)


def state_of(check_id: str) -> str | None:
    run = retrain_run_of(check_id)
    return run.state.type.value if run is not None and run.state is not None else None


def retrain_slots_taken() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name("retrain/retrain").global_concurrency_limit.active_slots


def test_a_restart_while_a_retraining_is_pending_leaves_no_slot_taken(breakable_platform, tmp_path):
    """Given a drift retraining pending or running, when the platform goes down and up, then
    that run is crashed (shown on its check), the retrain slot is free, and the next drift
    check retrains to completion, cooldown or not: the crashed retraining retrained nothing."""
    from flows.demo import wait_for_retraining

    platform = breakable_platform
    # Through the CLI, as a user would: each check's process (and its events) ends with it.
    cli_json(platform.run, "train", write_spec(tmp_path, "it-restart", cooldown_minutes=60))
    first = cli_json(platform.run, "monitor", "it-restart", "--current", batch(tmp_path, 31))
    assert first["retraining"] == "triggered"
    assert wait_for(lambda: state_of(first["monitoring_run_id"]) in ("PENDING", "RUNNING"),
                    timeout_s=180, interval_s=0.2)

    platform.down()
    platform.up()

    assert state_of(first["monitoring_run_id"]) == "CRASHED"
    assert retrain_slots_taken() == 0
    tags = MlflowClient().get_run(first["monitoring_run_id"]).data.tags
    assert tags["mlops.retraining_state"] == "crashed"
    assert tags["mlops.retraining_flow_run_id"] == str(retrain_run_of(first["monitoring_run_id"]).id)

    second = cli_json(platform.run, "monitor", "it-restart", "--current", batch(tmp_path, 32))

    assert second["retraining"] == "triggered", second["reason"]
    assert second["previous_retraining"]["state"] == "crashed"
    done = wait_for_retraining(MlflowClient(), "it-restart", second["monitoring_run_id"], timeout_s=400)
    assert done is not None and done["version"] is not None, "the new retraining did not finish"
    assert wait_for(lambda: state_of(second["monitoring_run_id"]) == "COMPLETED", timeout_s=60)
    check = MlflowClient().get_run(second["monitoring_run_id"]).data.tags
    assert check["mlops.retraining_state"] == "completed"


def test_a_retraining_cancelled_before_it_ran_shows_on_its_check(mlops, tmp_path):
    """Given two drift checks at once (no cooldown), the retrain deployment runs one and
    cancels the other; then the next check writes on each check how its retraining ended,
    with the flow run's id, and reports the latest."""
    from concurrent.futures import ThreadPoolExecutor

    name = "it-cancelled"
    cli_json(mlops, "train", write_spec(tmp_path, name, cooldown_minutes=0))
    batches = [batch(tmp_path, seed) for seed in (41, 42)]
    # At once: one after the other, a check (some 10 s) can outlast the first retraining.
    with ThreadPoolExecutor(2) as pool:
        checks = list(pool.map(lambda data: cli_json(mlops, "monitor", name, "--current", data)
                               ["monitoring_run_id"], batches))
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and not all(state_of(c) in FINAL for c in checks):
        time.sleep(2)
    states = {c: state_of(c) for c in checks}
    assert sorted(states.values()) == ["CANCELLED", "COMPLETED"], states

    later = cli_json(mlops, "monitor", name, "--current", batch(tmp_path, 43, shift=0.0))

    client = MlflowClient()
    for check, state in states.items():
        tags = client.get_run(check).data.tags
        assert tags["mlops.retraining_state"] == state.lower()
        assert tags["mlops.retraining_flow_run_id"] == str(retrain_run_of(check).id)
    if later["retraining"] == "triggered":  # a promoted retraining's reference holds shifted rows
        # Its retraining must end here: a leftover would take the retrain slot from other tests.
        assert wait_for(lambda: state_of(later["monitoring_run_id"]) in FINAL, timeout_s=420)
    latest = max(checks, key=lambda check: client.get_run(check).info.start_time)
    assert later["previous_retraining"] == {
        "monitoring_run_id": latest, "state": states[latest].lower(),
        "flow_run_id": str(retrain_run_of(latest).id)}
