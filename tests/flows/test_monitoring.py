"""Drift checks end to end: record, decide, and retrain through the Prefect event."""

import textwrap

import pytest
from mlflow.tracking import MlflowClient
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-drift"


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """A champion for NAME, trained on XOR data, with a 60-minute cooldown."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("drift")
    binary_frame(n=400, seed=11).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [random_forest]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{drift_share: 0.3, cooldown_minutes: 60}}
        """))
    return train(TrainParameters(experiment=str(spec))), folder


def _batch(folder, name, seed, shift=0.0):
    frame = binary_frame(n=300, seed=seed)
    for column in ("x1", "x2", "noise"):
        frame[column] = frame[column] + shift
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _check(current):
    from flows.monitor import MonitorParameters, monitor

    return monitor(MonitorParameters(model=NAME, current=current))


def test_stationary_data_does_not_trigger(trained):
    """Given fresh rows from the training distribution, the check finds no drift."""
    _, folder = trained

    result = _check(_batch(folder, "stationary", seed=21))

    assert result["drift_detected"] is False
    assert result["retraining"] == "not_needed"
    client = MlflowClient()
    run = client.get_run(result["monitoring_run_id"])
    metrics, params = run.data.metrics, run.data.params
    assert metrics["drift_share"] == result["drift_share"] < 0.3
    features = set(binary_frame(n=10, seed=0).columns) - {"label"}
    scored = {k.removeprefix("drift_score.") for k in metrics if k.startswith("drift_score.")}
    assert scored == features  # every feature column judged, each by its recorded method
    assert all(params[f"method.{c}"] in ("wasserstein", "jensenshannon") for c in features)
    assert run.data.tags["mlops.drift_detected"] == "false"
    # The batch carries its labels: live quality is judged, and has a report of its own.
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == [
        "report/drift_report.html", "report/quality_report.html"]
    assert result["quality"]["degraded"] is False and result["quality"]["labelled_rows"] == 300


def test_drift_retrains_through_the_event_then_cools_down(trained):
    """Given shifted data, the check triggers; the retrain deployment runs on the event and
    registers a version tagged mlops.trigger=drift; a second check answers cooldown."""
    from flows.demo import wait_for_retraining

    first, folder = trained
    drifted = _batch(folder, "drifted", seed=22, shift=2.0)

    result = _check(drifted)
    again = _check(drifted)

    assert result["drift_detected"] is True and result["retraining"] == "triggered"
    assert set(result["drifted_columns"]) >= {"x1", "x2"}
    assert again["drift_detected"] is True and again["retraining"] == "cooldown"
    done = wait_for_retraining(MlflowClient(), NAME, result["monitoring_run_id"], timeout_s=400, poll_s=0.5)
    assert done is not None and done["version"] is not None, "no retraining finished"
    assert done["run"].data.tags["mlops.trigger"] == "drift"
    assert int(done["version"].version) > int(first["model_version"])
    assert done["version"].tags["mlops.promotion"]
    assert wait_for_retraining(MlflowClient(), NAME, again["monitoring_run_id"], timeout_s=1) is None


def test_two_drift_events_at_once_give_one_retraining(trained):
    """Given two drift events for one model emitted together, the retrain deployment's
    concurrency limit lets one retraining run and cancels the other."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events import emit_event

    from flows.events import DRIFT_EVENT, model_resource_id

    _, folder = trained
    drifted = _batch(folder, "drifted-twice", seed=23, shift=2.0)
    ids = {"concurrent-a", "concurrent-b"}
    for run_id in sorted(ids):
        emit_event(event=DRIFT_EVENT, resource={"prefect.resource.id": model_resource_id(NAME)},
                   payload={"model": NAME, "monitoring_run_id": run_id, "current": drifted})

    deadline = time.monotonic() + 420
    states: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            # The retrain runs, not their training subflows (which carry the same parameter).
            runs = [r for r in client.read_flow_runs(limit=200)
                    if (r.parameters.get("params") or {}).get("monitoring_run_id") in ids
                    and r.parent_task_run_id is None]
            states = {r.parameters["params"]["monitoring_run_id"]: r.state.type.value for r in runs}
            if len(states) == 2 and all(s in {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}
                                        for s in states.values()):
                break
            time.sleep(1)
    assert sorted(states.values()) == ["CANCELLED", "COMPLETED"], states
    completed = next(r for r in runs if r.state.type.value == "COMPLETED")
    assert completed.name == f"retrain {NAME} after drift"
    assert {f"model:{NAME}", "trigger:drift"} <= set(completed.tags)
    with get_client(sync_client=True) as client:
        subflows = [r for r in client.read_flow_runs(limit=200)
                    if r.parent_task_run_id is not None and r.name == f"train {NAME}"
                    and "trigger:drift" in r.tags and f"model:{NAME}" in r.tags]
    assert subflows  # the retraining's own training, named and tagged the same way


@pytest.mark.parametrize(
    ("case", "fragment"),
    [("missing column", "lacks columns of it-drift's contract: x2"),
     ("missing file", "data file not found"),
     ("unknown model", "unknown model 'no-such-model': nothing is registered")],
)
def test_monitor_bad_input_is_one_line_and_records_nothing(trained, mlops, case, fragment):
    """Given a batch without a contract column, a missing file or an unknown model, `mlops
    monitor` exits non-zero with one line naming it, and no check is recorded."""
    _, folder = trained
    path = folder / "no-x2.csv"
    binary_frame(n=100, seed=41).drop(columns="x2").to_csv(path, index=False)
    args = {"missing column": [NAME, "--current", str(path)],
            "missing file": [NAME, "--current", str(folder / "nope.csv")],
            "unknown model": ["no-such-model", "--current", str(path)]}[case]
    def checks() -> int:
        experiment = MlflowClient().get_experiment_by_name(f"{NAME}-monitoring")
        return len(MlflowClient().search_runs([experiment.experiment_id])) if experiment else 0

    before = checks()

    done = mlops("monitor", *args, "--json")

    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert fragment in done.stderr
    assert checks() == before
