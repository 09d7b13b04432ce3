"""The work pool's deployments name their flows by module path and no folder, so a worker runs
the installed package wherever it is; a flow's data for another goes where both can read it."""

import pandas as pd
import pytest
from prefect.flows import load_flow_from_entrypoint

from experiments.data import load_table
from flows.pool import POOL_DEPLOYMENTS, batch_deployment, pool_deployment
from flows.retrain import hand_off
from flows.serve import served_flows


def _pool_deployments():
    return [batch_deployment("mlops")] + [pool_deployment(flow, "mlops", **options)
                                          for flow, options in served_flows()
                                          if options["name"] in POOL_DEPLOYMENTS]


def test_pool_deployments_name_their_flow_by_module_path_and_no_folder():
    """Given the pool's deployments, then each imports its flow from the installed package
    (no file path, working folder or storage), and that import gives the deployment's flow."""
    deployments = _pool_deployments()

    assert sorted(d.name for d in deployments) == ["monitor", "predict", "retrain", "search-batch", "train"]
    for deployment in deployments:
        assert deployment.entrypoint.startswith("flows.") and ":" not in deployment.entrypoint
        assert deployment.work_pool_name == "mlops"
        assert "working_dir" not in (deployment.job_variables or {})
        assert deployment.storage is None
        assert load_flow_from_entrypoint(deployment.entrypoint).name == deployment.flow_name


def test_retrain_keeps_its_trigger_and_its_one_slot_on_the_pool():
    retrain = next(d for d in _pool_deployments() if d.name == "retrain")

    assert [t.name for t in retrain.triggers] == ["retrain on drift"]
    assert retrain.concurrency_limit == 1


def test_combined_data_handed_off_to_a_folder_reads_back(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]})

    uri = hand_off(frame, str(tmp_path), "retrain/m-1.parquet")

    assert uri == str(tmp_path / "retrain" / "m-1.parquet")
    pd.testing.assert_frame_equal(load_table(uri), frame)


@pytest.mark.integration
def test_combined_data_handed_off_to_the_bucket_reads_back(s3_server, monkeypatch):
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    frame = pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]})

    uri = hand_off(frame, f"s3://{s3_server.bucket}/data/", "retrain/m-1.parquet")

    assert uri == f"s3://{s3_server.bucket}/data/retrain/m-1.parquet"
    pd.testing.assert_frame_equal(load_table(uri), frame)


@pytest.mark.parametrize(("extra", "says"), [
    ({"MLOPS_PROFILE": "local"}, "mlops worker --print-env"),
    ({"MLOPS_PROFILE": "full", "MLOPS_OPTUNA_STORAGE": "postgresql+psycopg2://u:p@127.0.0.1:1/x"},
     "MLflow does not answer at http://127.0.0.1:1"),
])
def test_a_worker_elsewhere_without_what_it_needs_is_one_line(tmp_path, monkeypatch, extra, says):
    """Given an MLOPS_HOME with no platform and the servers' addresses in the environment, when
    the full profile's variables are missing or the servers do not answer, then `mlops worker`
    says so in one line and starts nothing."""
    from typer.testing import CliRunner

    from flows.cli import app
    from infra.settings import use

    for name, value in {"MLOPS_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
                        "PREFECT_API_URL": "http://127.0.0.1:1/api", **extra}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    use(None)
    try:
        done = CliRunner().invoke(app, ["worker"])
    finally:
        use(None)

    assert done.exit_code == 1
    assert says in " ".join(done.output.split()) and len(done.output.strip().splitlines()) <= 2
