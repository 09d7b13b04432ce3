"""Drift checks as MLflow runs in `<name>-monitoring`, and the history the policy reads."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow.tracking import MlflowClient

from experiments.contract import ContractReport
from experiments.tracking import ensure_experiment, log_batch
from monitoring.drift import DriftSummary
from monitoring.policy import RetrainDecision


def monitoring_experiment(name: str) -> str:
    return f"{name}-monitoring"


def recent_drift_flags(client: MlflowClient, name: str, count: int) -> list[bool]:
    """Drift flags of the last `count` checks, oldest first; degraded live quality counts as
    drift, so both signals share the N-of-M policy."""
    experiment = client.get_experiment_by_name(monitoring_experiment(name))
    if experiment is None or count <= 0:
        return []
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=count)
    return [r.data.tags.get("mlops.drift_detected") == "true"
            or r.data.tags.get("mlops.quality_degraded") == "true" for r in reversed(runs)]


def last_triggered_at(client: MlflowClient, name: str) -> datetime | None:
    """When a check last triggered a retraining that ran (or may still run), if ever.

    A retraining cancelled before it ran, or whose runner died, retrained nothing: it does
    not start the cooldown, so the next drift check can trigger again."""
    for run in _triggered_checks(client, name, max_results=50):
        if run.data.tags.get(RETRAINING_STATE) not in NEVER_RAN:
            return datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
    return None


def _triggered_checks(client: MlflowClient, name: str, max_results: int, extra: str = "") -> list:
    experiment = client.get_experiment_by_name(monitoring_experiment(name))
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlops.retraining` = 'triggered'{extra}",
        order_by=["attributes.start_time DESC"], max_results=max_results,
    )


# How the retraining a check triggered stands, on the check's run: written by the retrain
# flow's state hooks and by the reconciliation in flows/recovery.py.
RETRAINING_STATE = "mlops.retraining_state"
RETRAINING_FLOW_RUN = "mlops.retraining_flow_run_id"
NEVER_RAN = ("cancelled", "crashed")
UNSETTLED = ("triggered", "running")
_STATES = {"SCHEDULED": "triggered", "PENDING": "triggered", "PAUSED": "running",
           "RUNNING": "running", "COMPLETED": "completed", "FAILED": "failed",
           "CANCELLING": "cancelled", "CANCELLED": "cancelled", "CRASHED": "crashed"}


def retraining_state(prefect_state_type: str) -> str:
    """A Prefect state type (COMPLETED, CRASHED, ...) as the check records it."""
    return _STATES.get(prefect_state_type.upper(), prefect_state_type.lower())


def record_retraining(client: MlflowClient, monitoring_run_id: str, state: str,
                      flow_run_id: str) -> None:
    log_batch(client, monitoring_run_id,
              tags={RETRAINING_STATE: state, RETRAINING_FLOW_RUN: flow_run_id})


def unsettled_retrainings(client: MlflowClient, name: str, max_results: int = 100) -> dict[str, str]:
    """Checks of MODEL whose retraining has not ended as far as they know: {run id: state}."""
    return {run.info.run_id: run.data.tags.get(RETRAINING_STATE, "triggered")
            for run in _triggered_checks(client, name, max_results)
            if run.data.tags.get(RETRAINING_STATE, "triggered") in UNSETTLED}


def previous_retraining(client: MlflowClient, name: str, before_run_id: str) -> dict | None:
    """The retraining the latest earlier triggering check asked for, and how it stands."""
    for run in _triggered_checks(client, name, max_results=5):
        if run.info.run_id != before_run_id:
            tags = run.data.tags
            return {"monitoring_run_id": run.info.run_id,
                    "state": tags.get(RETRAINING_STATE, "triggered"),
                    "flow_run_id": tags.get(RETRAINING_FLOW_RUN)}
    return None


def start_check(client: MlflowClient, name: str, champion_version: str, trigger: str = "manual") -> str:
    """A check's run, tagged with why it ran (`schedule` or `manual`); renamed with its
    verdict when it is recorded."""
    experiment_id = ensure_experiment(client, monitoring_experiment(name))
    run = client.create_run(experiment_id, run_name=f"check-v{champion_version}",
                            tags={"mlops.model_name": name, "mlops.champion_version": champion_version,
                                  "mlops.trigger": trigger})
    return run.info.run_id


@dataclass(frozen=True)
class DriftCheck:
    """One drift check as it is recorded: what was compared, what was found, what was decided."""

    summary: DriftSummary
    contract_report: ContractReport
    decision: RetrainDecision
    drift_detected: bool
    threshold: float  # the drift share that counts as drift
    reference_digest: str
    current_digest: str
    current_uri: str
    quality_degraded: bool = False  # live labels showed the champion doing worse


def verdict_name(check: DriftCheck) -> str:
    """The run's name in MLflow's list: what was found and what was decided,
    e.g. `drift 0.43: triggered`, `drift 0.00, quality degraded: triggered`."""
    found = f"drift {check.summary.drift_share:.2f}"
    if check.quality_degraded:
        found += ", quality degraded"
    return f"{found}: {check.decision.action}"


def record_check(client: MlflowClient, run_id: str, check: DriftCheck, report_html: Path) -> None:
    """Everything a person needs to trust (or question) the decision, on one run."""
    log_batch(client, run_id, params=check_params(check), metrics=check_metrics(check),
              tags=check_tags(check))
    client.log_artifact(run_id, str(report_html), "report")
    client.set_terminated(run_id, status="FINISHED")


def check_params(check: DriftCheck) -> dict:
    """What was compared, and how each column was judged."""
    summary = check.summary
    params = {
        "current_uri": check.current_uri,
        "reference_digest": check.reference_digest,
        "current_digest": check.current_digest,
        "drift_share_threshold": check.threshold,
        "reference_rows": summary.reference_rows,
        "current_rows": summary.current_rows,
        "sampled": summary.sampled,
        "max_rows": summary.max_rows,
    }
    if check.contract_report.unexpected_columns:  # not checked for drift: the model ignores them
        params["unexpected_columns"] = ",".join(check.contract_report.unexpected_columns)[:6000]
    for column in summary.columns:
        params[f"method.{column.column}"] = column.method
        params[f"threshold.{column.column}"] = column.threshold
    return params


def check_metrics(check: DriftCheck) -> dict[str, float]:
    """The drift found, column by column, and how the data broke the contract."""
    summary, report = check.summary, check.contract_report
    metrics = {"drift_share": summary.drift_share, "drifted_columns": len(summary.drifted_columns)}
    metrics.update({f"drift_score.{c.column}": c.score for c in summary.columns})
    if summary.target is not None:
        metrics["target_drift_score"] = summary.target.score
    metrics.update({f"unseen_categories.{k}": v for k, v in report.unseen_categories.items()})
    metrics.update({f"out_of_range.{k}": v for k, v in report.out_of_range.items()})
    metrics.update({f"unexpected_nulls.{k}": v for k, v in report.unexpected_nulls.items()})
    return metrics


def check_tags(check: DriftCheck) -> dict[str, str]:
    """The verdict and the decision: what recent_drift_flags and last_triggered_at search."""
    summary = check.summary
    tags = {
        "mlflow.runName": verdict_name(check),
        "mlflow.note.content": check.decision.reason,  # the run's description in MLflow's UI
        "mlops.drift_detected": str(check.drift_detected).lower(),
        "mlops.retraining": check.decision.action,
        "mlops.retraining_reason": check.decision.reason,
        "mlops.drifted_columns": ",".join(summary.drifted_columns)[:5000],
    }
    if check.decision.action == "triggered":  # the retraining's own hooks move it on
        tags[RETRAINING_STATE] = "triggered"
    if summary.target is not None:
        tags["mlops.target_drifted"] = str(summary.target.drifted).lower()
    return tags
