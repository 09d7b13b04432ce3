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
    """Drift flags of the last `count` checks, oldest first."""
    experiment = client.get_experiment_by_name(monitoring_experiment(name))
    if experiment is None or count <= 0:
        return []
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=count)
    return [r.data.tags.get("mlops.drift_detected") == "true" for r in reversed(runs)]


def last_triggered_at(client: MlflowClient, name: str) -> datetime | None:
    """When a check last triggered retraining for this model, if ever."""
    experiment = client.get_experiment_by_name(monitoring_experiment(name))
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`mlops.retraining` = 'triggered'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not runs:
        return None
    return datetime.fromtimestamp(runs[0].info.start_time / 1000, tz=UTC)


def start_check(client: MlflowClient, name: str, champion_version: str) -> str:
    experiment_id = ensure_experiment(client, monitoring_experiment(name))
    run = client.create_run(experiment_id, run_name=f"check-v{champion_version}",
                            tags={"mlops.model_name": name, "mlops.champion_version": champion_version})
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
        "mlops.drift_detected": str(check.drift_detected).lower(),
        "mlops.retraining": check.decision.action,
        "mlops.retraining_reason": check.decision.reason,
        "mlops.drifted_columns": ",".join(summary.drifted_columns)[:5000],
    }
    if summary.target is not None:
        tags["mlops.target_drifted"] = str(summary.target.drifted).lower()
    return tags
