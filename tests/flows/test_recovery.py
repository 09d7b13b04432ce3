"""A retraining that ends badly: a restart while one is pending. Real MLflow, Prefect and
runner, on the spare platform (it goes down and up); the cancelled retraining is in
test_recovery_cancelled.py, on the session platform."""

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for
from retrainings import batch, cli_json, retrain_run_of, retrain_slots_taken, state_of, write_spec

pytestmark = pytest.mark.integration


def test_a_restart_while_a_retraining_is_pending_leaves_no_slot_taken(breakable_platform, tmp_path):
    """Given a drift retraining pending or running, when the runner dies and the platform goes
    down and up, then that run is crashed (shown on its check), the retrain slot is free, and the
    next drift check retrains to completion, cooldown or not: the crashed retraining retrained
    nothing."""
    from flows.demo import wait_for_retraining

    platform = breakable_platform
    # Through the CLI, as a user would: each check's process (and its events) ends with it.
    cli_json(platform.run, "train", write_spec(tmp_path, "it-restart", cooldown_minutes=60))
    first = cli_json(platform.run, "monitor", "it-restart", "--current", batch(tmp_path, 31))
    assert first["retraining"] == "triggered"
    assert wait_for(lambda: state_of(first["monitoring_run_id"]) in ("PENDING", "RUNNING"),
                    timeout_s=180, interval_s=0.2)

    # The runner dies at once, its flow runs with it (a clean `mlops down` takes seconds to
    # start, and on a quiet machine this small retraining can finish in them); then down and up.
    platform.kill("runner")
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
    done = wait_for_retraining(MlflowClient(), "it-restart", second["monitoring_run_id"],
                               timeout_s=400, poll_s=0.5)
    assert done is not None and done["version"] is not None, "the new retraining did not finish"
    assert wait_for(lambda: state_of(second["monitoring_run_id"]) == "COMPLETED", timeout_s=60)
    check = MlflowClient().get_run(second["monitoring_run_id"]).data.tags
    assert check["mlops.retraining_state"] == "completed"
