"""A retraining cancelled before it ran shows on its check. On the session platform: nothing
is stopped, so this module need not share a worker with the spare platform's tests."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for
from retrainings import FINAL, batch, cli_json, retrain_run_of, state_of, write_spec

pytestmark = pytest.mark.integration


def champion_reference(folder, name: str) -> str:
    """The champion's own reference rows as a file: a check on them finds no drift (each
    column's distribution is the reference's), whichever version the retraining left champion."""
    from monitoring.champion import load_champion_data

    path = folder / "champion-reference.csv"
    load_champion_data(MlflowClient(), name).reference.to_csv(path, index=False)
    return str(path)


def test_a_retraining_cancelled_before_it_ran_shows_on_its_check(mlops, tmp_path):
    """Given two drift checks at once (no cooldown), the retrain deployment runs one and
    cancels the other; then the next check writes on each check how its retraining ended,
    with the flow run's id, and reports the latest."""
    name = "it-cancelled"
    cli_json(mlops, "train", write_spec(tmp_path, name, cooldown_minutes=0))
    batches = [batch(tmp_path, seed) for seed in (41, 42)]
    # At once: one after the other, a check (some 10 s) can outlast the first retraining.
    with ThreadPoolExecutor(2) as pool:
        checks = list(pool.map(lambda data: cli_json(mlops, "monitor", name, "--current", data)
                               ["monitoring_run_id"], batches))
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and not all(state_of(c) in FINAL for c in checks):
        time.sleep(0.5)
    states = {c: state_of(c) for c in checks}
    assert sorted(states.values()) == ["CANCELLED", "COMPLETED"], states

    # On the champion's own reference rows: a promoted retraining's reference holds shifted
    # rows, against which fresh unshifted rows drift and would start (and wait on) one more.
    later = cli_json(mlops, "monitor", name, "--current", champion_reference(tmp_path, name))

    client = MlflowClient()
    for check, state in states.items():
        tags = client.get_run(check).data.tags
        assert tags["mlops.retraining_state"] == state.lower()
        assert tags["mlops.retraining_flow_run_id"] == str(retrain_run_of(check).id)
    if later["retraining"] == "triggered":  # not expected; its retraining would take the slot
        assert wait_for(lambda: state_of(later["monitoring_run_id"]) in FINAL, timeout_s=420)
    assert later["retraining"] != "triggered", later
    latest = max(checks, key=lambda check: client.get_run(check).info.start_time)
    assert later["previous_retraining"] == {
        "monitoring_run_id": latest, "state": states[latest].lower(),
        "flow_run_id": str(retrain_run_of(latest).id)}
