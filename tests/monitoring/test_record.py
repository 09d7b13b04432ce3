"""Drift checks recorded as MLflow runs, in process: MLflow on a SQLite file, no server."""

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.contract import ContractReport
from monitoring.drift import ColumnDrift, DriftSummary
from monitoring.policy import RetrainDecision
from monitoring.record import (
    DriftCheck,
    check_metrics,
    check_tags,
    last_triggered_at,
    monitoring_experiment,
    previous_retraining,
    recent_drift_flags,
    record_check,
    record_retraining,
    retraining_state,
    start_check,
    unsettled_retrainings,
    verdict_name,
)


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory) -> Path:
    """A folder holding one SQLite tracking store for the module; the working directory is a
    folder of its own meanwhile, so anything written to ./mlruns would be seen."""
    folder = tmp_path_factory.mktemp("mlflow")
    (folder / "cwd").mkdir()
    before = os.getcwd()
    os.chdir(folder / "cwd")
    try:
        yield folder
    finally:
        os.chdir(before)


@pytest.fixture
def client(mlflow_db) -> MlflowClient:
    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_db / 'mlflow.db'}")
    yield client
    assert list((mlflow_db / "cwd").iterdir()) == [], "something was written to the working directory"


@pytest.fixture
def model(client, mlflow_db, request) -> str:
    """A model name of this test's own, whose monitoring experiment keeps artifacts under tmp."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    client.create_experiment(monitoring_experiment(name),
                             artifact_location=(mlflow_db / "artifacts" / name).as_uri())
    return name


def summary(*, drifted: bool, labelled: bool = True) -> DriftSummary:
    """Two feature columns (x drifted when `drifted`) and, when `labelled`, a target."""
    x = ColumnDrift("x", "numeric", "wasserstein", 0.12, 0.9 if drifted else 0.05, drifted)
    colour = ColumnDrift("colour", "categorical", "jensenshannon", 0.1, 0.02, False)
    target = ColumnDrift("label", "categorical", "jensenshannon", 0.1, 0.4, True)
    return DriftSummary(
        columns=(x, colour), drift_share=0.5 if drifted else 0.0,
        drifted_columns=("x",) if drifted else (), reference_rows=300, current_rows=200,
        sampled=False, max_rows=20_000, target=target if labelled else None,
    )


def a_check(*, drifted: bool = True, action: str = "triggered") -> DriftCheck:
    return DriftCheck(
        summary(drifted=drifted),
        ContractReport(unexpected_columns=("note",), unseen_categories={"colour": 3},
                       out_of_range={"x": 2}, unexpected_nulls={"colour": 4}),
        RetrainDecision(action, f"{action}: because"),
        drift_detected=drifted, threshold=0.3, reference_digest="ref123", current_digest="cur456",
        current_uri="s3://bucket/current.csv",
    )


def record(client: MlflowClient, model: str, tmp_path: Path, check: DriftCheck) -> str:
    """One recorded check; it starts after the last one so start times order them."""
    html = tmp_path / "drift_report.html"
    html.write_text("<html>report</html>")
    experiment = client.get_experiment_by_name(monitoring_experiment(model))
    earlier = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                                 max_results=1)
    if earlier:
        deadline = time.monotonic() + 5
        while time.time() * 1000 <= earlier[0].info.start_time + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    run_id = start_check(client, model, "3")
    record_check(client, run_id, check, html)
    return run_id


def test_a_check_is_one_finished_run_with_its_figures_and_report(client, model, tmp_path):
    """Given a drifted check that triggered retraining, its run holds what was compared, the
    scores, the verdict and the HTML report."""
    run_id = record(client, model, tmp_path, a_check())

    run = client.get_run(run_id)

    assert run.info.status == "FINISHED" and run.info.run_name == "drift 0.50: triggered"
    assert run.data.params == {
        "current_uri": "s3://bucket/current.csv", "reference_digest": "ref123",
        "current_digest": "cur456", "drift_share_threshold": "0.3", "reference_rows": "300",
        "current_rows": "200", "sampled": "False", "max_rows": "20000",
        "method.x": "wasserstein", "threshold.x": "0.12",
        "method.colour": "jensenshannon", "threshold.colour": "0.1", "unexpected_columns": "note",
    }
    assert run.data.metrics == {
        "drift_share": 0.5, "drifted_columns": 1.0, "drift_score.x": 0.9, "drift_score.colour": 0.02,
        "target_drift_score": 0.4, "unseen_categories.colour": 3.0, "out_of_range.x": 2.0,
        "unexpected_nulls.colour": 4.0,
    }
    assert run.data.tags["mlflow.note.content"] == "triggered: because"
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    assert tags == {
        "mlops.model_name": model, "mlops.champion_version": "3", "mlops.drift_detected": "true",
        "mlops.retraining": "triggered", "mlops.retraining_reason": "triggered: because",
        "mlops.retraining_state": "triggered", "mlops.drifted_columns": "x",
        "mlops.target_drifted": "true", "mlops.trigger": "manual",
    }
    assert [a.path for a in client.list_artifacts(run_id, "report")] == ["report/drift_report.html"]
    report = client.download_artifacts(run_id, "report/drift_report.html", str(tmp_path / "got"))
    assert Path(report).read_text() == "<html>report</html>"


def test_flags_come_back_oldest_first_and_only_the_last_n(client, model, tmp_path):
    """Given five checks drifted, not, not, drifted, not: the last three flags, oldest first."""
    for drifted in (True, False, False, True, False):
        record(client, model, tmp_path, a_check(drifted=drifted, action="not_needed"))

    assert recent_drift_flags(client, model, 3) == [False, True, False]
    assert recent_drift_flags(client, model, 10) == [True, False, False, True, False]
    assert recent_drift_flags(client, model, 0) == []


def test_degraded_live_quality_counts_as_a_flag(client, model, tmp_path):
    """Given a check without drift whose live quality was degraded, and one judged fine, the
    N-of-M policy reads the first as flagged: both signals share one policy."""
    from monitoring.live import LiveCheck, LiveQuality
    from monitoring.quality import QualityVerdict

    for degraded in (True, False):
        run_id = record(client, model, tmp_path, a_check(drifted=False, action="not_needed"))
        verdict = QualityVerdict("roc_auc", 0.5, 0.9, 200, degraded, 0.0, "judged")
        client.set_tag(run_id, "mlops.quality_degraded",
                       LiveCheck(LiveQuality(verdict, 200, "judged"), None).tags()["mlops.quality_degraded"])

    assert recent_drift_flags(client, model, 2) == [True, False]


def test_a_model_never_checked_has_no_flags_and_never_triggered(client):
    assert recent_drift_flags(client, "never-checked", 3) == []
    assert last_triggered_at(client, "never-checked") is None


def test_last_triggered_at_finds_only_triggered_checks(client, model, tmp_path):
    """Given checks that answered not needed, triggered, cooldown and not needed, the time is
    that of the triggered one, in UTC."""
    record(client, model, tmp_path, a_check(drifted=False, action="not_needed"))
    assert last_triggered_at(client, model) is None

    before = datetime.now(UTC) - timedelta(milliseconds=1)  # MLflow keeps whole milliseconds
    record(client, model, tmp_path, a_check(action="triggered"))
    after = datetime.now(UTC)
    record(client, model, tmp_path, a_check(action="cooldown"))
    record(client, model, tmp_path, a_check(drifted=False, action="not_needed"))

    assert before <= last_triggered_at(client, model) <= after


def test_a_retraining_that_never_ran_does_not_start_the_cooldown(client, model, tmp_path):
    """Given a triggered check whose retraining completed, then one whose retraining was
    cancelled and one whose runner died: the cooldown runs from the completed one."""
    completed = record(client, model, tmp_path, a_check())
    record_retraining(client, completed, "completed", "flow-run-1")
    for state in ("cancelled", "crashed"):
        record_retraining(client, record(client, model, tmp_path, a_check()), state, f"flow-run-{state}")

    started = client.get_run(completed).info.start_time

    assert last_triggered_at(client, model) == datetime.fromtimestamp(started / 1000, tz=UTC)


def test_unsettled_checks_are_those_still_triggered_or_running(client, model, tmp_path):
    """Given four triggering checks (one left triggered, one running, one failed, one
    completed) and one not needing retraining: the first two are unsettled."""
    ids = [record(client, model, tmp_path, a_check()) for _ in range(4)]
    record(client, model, tmp_path, a_check(drifted=False, action="not_needed"))
    for run_id, state in zip(ids[1:], ("running", "failed", "completed"), strict=True):
        record_retraining(client, run_id, state, f"flow-{state}")

    assert unsettled_retrainings(client, model) == {ids[0]: "triggered", ids[1]: "running"}
    assert previous_retraining(client, model, before_run_id=ids[3]) == {
        "monitoring_run_id": ids[2], "state": "failed", "flow_run_id": "flow-failed"}
    assert previous_retraining(client, model, before_run_id="none") == {
        "monitoring_run_id": ids[3], "state": "completed", "flow_run_id": "flow-completed"}


@pytest.mark.parametrize(("prefect", "recorded"), [
    ("SCHEDULED", "triggered"), ("PENDING", "triggered"), ("RUNNING", "running"),
    ("COMPLETED", "completed"), ("FAILED", "failed"), ("CANCELLED", "cancelled"),
    ("CANCELLING", "cancelled"), ("CRASHED", "crashed"),
])
def test_prefect_states_are_recorded_in_the_checks_words(prefect, recorded):
    assert retraining_state(prefect) == recorded


@pytest.mark.parametrize(
    ("drifted", "degraded", "action", "expected"),
    [(True, False, "triggered", "drift 0.50: triggered"),
     (False, False, "not_needed", "drift 0.00: not_needed"),
     (False, True, "cooldown", "drift 0.00, quality degraded: cooldown")],
)
def test_a_checks_name_says_its_verdict(drifted, degraded, action, expected):
    check = replace(a_check(drifted=drifted, action=action), quality_degraded=degraded)

    assert verdict_name(check) == expected
    assert check_tags(check)["mlflow.runName"] == expected


def test_a_check_without_labels_records_no_target_drift():
    """Given live traffic whose labels have not arrived, neither a target score nor a target
    verdict is recorded (rather than a made-up one)."""
    check = replace(a_check(), summary=summary(drifted=True, labelled=False))

    assert "target_drift_score" not in check_metrics(check)
    assert "mlops.target_drifted" not in check_tags(check)
    assert check_metrics(check)["drift_score.x"] == 0.9
