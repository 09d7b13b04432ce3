"""The monitoring flow: one drift check of a model's champion against current data.

The current data is a file or URI, or (when none is given) the latest window of the live
traffic `mlops serve` recorded; with too little traffic the check is skipped. On confirmed
drift outside the cooldown it emits `mlops.drift.detected`, which the `retrain` deployment
is triggered by. A check of live traffic also weighs the challenger on live labels and, with
`promotion.live_evidence`, promotes it on a significant win (flows/live_evidence.py).
"""

import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from experiments.data import data_digest, load_table
from experiments.errors import InputError
from experiments.spec import MonitoringSection
from experiments.tracking import log_batch
from flows.dashboard import publish_check
from flows.events import DRIFT_EVENT, flow_run_url, retraining_resource
from flows.links import run_url as mlflow_run_url
from flows.live_check import check_live, live_result, load_labelled, record_live
from flows.live_evidence import promote_on_live_evidence
from flows.naming import name_this_run
from flows.preflight import require_champion, require_columns
from flows.recovery import label_this_process, settle_retrainings
from flows.schedules import check_trigger
from infra.settings import process_settings
from monitoring.champion import ChampionData, load_champion_data
from monitoring.drift import MAX_ROWS, DriftColumns, DriftSummary, compute_drift
from monitoring.live import LiveCheck
from monitoring.policy import RetrainDecision, decide_retraining, is_drift
from monitoring.quality import trigger_reason
from monitoring.record import (
    DriftCheck,
    last_triggered_at,
    previous_retraining,
    recent_drift_flags,
    record_check,
    start_check,
)
from monitoring.traffic import open_files
from monitoring.window import WindowRead, read_window_columns

SNAPSHOT = "snapshot.json"  # Evidently's snapshot of a check, for its dashboard


class MonitorParameters(BaseModel):
    """What a drift check compares: a model's champion and a batch of current data."""

    model: str = Field("penguins", description="The registered model whose champion is checked")
    current: str | None = Field(
        None, description="Current data: a CSV/Parquet file, a folder of them, or a URI; "
        "empty: the latest window of live traffic recorded by `mlops serve`")


@task(cache_policy=NO_CACHE)
def load_champion(model: str) -> ChampionData:
    client = MlflowClient()
    require_champion(client, model)
    return load_champion_data(client, model)


def live_traffic(champion: ChampionData) -> tuple[WindowRead, str]:
    """The feature columns of the records served in the window (a seeded sample of MAX_ROWS
    when it holds more: what compute_drift would compare anyway), and where the store is."""
    base = process_settings().traffic_base
    window = read_window_columns(
        open_files(base), champion.name, champion.spec.monitoring.window_minutes,
        champion.contract.feature_names, sample_rows=MAX_ROWS, seed=champion.spec.tuning.seed)
    return window, f"{base.rstrip('/')}/{champion.name}"


@task(cache_policy=NO_CACHE)
def settle_earlier(model: str) -> None:
    """Earlier checks learn how the retrainings they triggered ended (one cancelled before it
    ran has no hook of its own to say so)."""
    with get_client(sync_client=True) as prefect:
        for check, state in settle_retrainings(prefect, MlflowClient(), model):
            get_run_logger().info("the retraining check %s triggered: %s", check, state)


@task(cache_policy=NO_CACHE)
def load_current(uri: str, champion: ChampionData):
    return checked(load_table(uri), uri, champion)


@task(cache_policy=NO_CACHE)
def load_live(champion: ChampionData) -> tuple[WindowRead, str]:
    """The feature columns of the latest window of live traffic (sampled when big)."""
    minutes = champion.spec.monitoring.window_minutes
    window, store = live_traffic(champion)
    if window.sampled:
        get_run_logger().info("%s: %d of the window's %d rows checked (%d of %d row groups read)",
                              champion.name, len(window.frame), window.rows,
                              window.row_groups_read, window.row_groups)
    return window, f"live traffic in {store}, last {minutes:g} minutes"


def checked(current: pd.DataFrame, uri: str, champion: ChampionData):
    """The batch and how it differs from the contract; InputError if it cannot be checked."""
    where = uri if uri.startswith("live traffic") else f"current data {uri}"
    report = require_columns(current, champion.contract, champion.name, where)
    logger = get_run_logger()
    for kind, counts in (("unseen categories", report.unseen_categories),
                         ("out-of-range values", report.out_of_range),
                         ("missing values where training had none", report.unexpected_nulls)):
        if counts:
            logger.warning("%s in %s: %s", kind, uri, counts)
    return current, report


@task(cache_policy=NO_CACHE)
def check_drift(champion: ChampionData, current, html_path: Path,
                sampled: bool = False) -> DriftSummary:
    """Drift of `current`; the report as HTML at html_path, its snapshot beside it (SNAPSHOT).
    `sampled`: current is a sample of the live window (cut on reading, not by compute_drift)."""
    contract = champion.contract
    target = contract.target if contract.target in current.columns else None
    summary = compute_drift(
        champion.reference, current, DriftColumns(
            contract.numeric, contract.categorical, target=target,
            target_kind="categorical" if contract.task == "classification" else "numeric"),
        seed=champion.spec.tuning.seed, html_path=html_path,
        snapshot_path=html_path.with_name(SNAPSHOT),
    )
    return replace(summary, sampled=True) if sampled else summary


@task(cache_policy=NO_CACHE)
def decide(champion: ChampionData, summary: DriftSummary, live: LiveCheck) -> RetrainDecision:
    """Degraded live quality counts as drift does: same N-of-M policy, same cooldown."""
    client = MlflowClient()
    policy = champion.spec.monitoring
    decision = decide_retraining(
        drifted_now=is_drift(summary.drift_share, policy.drift_share) or live.degraded,
        recent=recent_drift_flags(client, champion.name, policy.window_count - 1),
        windows_needed=policy.windows_needed,
        window_count=policy.window_count,
        last_triggered_at=last_triggered_at(client, champion.name),
        now=datetime.now(UTC),
        cooldown=timedelta(minutes=policy.cooldown_minutes),
    )
    if not live.degraded:
        return decision
    return RetrainDecision(decision.action, f"Live quality degraded ({live.quality.note}); the "
                           f"policy counts it as drift. {decision.reason}")


@task(cache_policy=NO_CACHE)
def announce(champion: ChampionData, summary: DriftSummary, decision: RetrainDecision,
             result: dict, current_uri: str, reason: str | None = None) -> None:
    """A Prefect artifact for every check; the drift event only when retraining is due."""
    run_id, run_url, dashboard_url = result["monitoring_run_id"], result["run_url"], result["evidently_url"]
    columns = ", ".join(summary.drifted_columns) or "none"
    create_markdown_artifact(
        key=f"{champion.spec.slug}-drift",
        markdown=(
            f"# Drift check of {champion.name} v{champion.version}\n\n"
            f"[MLflow run]({run_url})"
            + (f" · [Evidently dashboard]({dashboard_url})" if dashboard_url else "") + "\n\n"
            f"drift share **{summary.drift_share:.2f}** (threshold "
            f"{champion.spec.monitoring.drift_share}); drifted: {columns}\n\n"
            f"retraining: **{decision.action}**: {decision.reason}\n"
        ),
        description=f"Drift check of {champion.name}",
    )
    if decision.action == "triggered":
        emit_event(
            event=DRIFT_EVENT,
            # mlops.reason lets an automation tell drift from quality retrainings apart.
            resource=retraining_resource(champion.name, reason or "drift", run_id),
            payload={
                "model": champion.name,
                "champion_version": champion.version,
                "reason": decision.reason,
                "mlflow_url": run_url,
                "flow_run_url": flow_run_url(),
                "drift_share": summary.drift_share,
                "drifted_columns": list(summary.drifted_columns),
                "monitoring_run_id": run_id,
                "current": current_uri,
                # "drift" or "quality": the new version's mlops.trigger
                "trigger": reason or "drift",
            },
        )


@task(cache_policy=NO_CACHE)
def weigh_challenger(model: str) -> dict | None:
    """The challenger against the champion on live labels, promoted on a significant win
    (only with `promotion.live_evidence` in the champion's spec)."""
    try:
        weighed = promote_on_live_evidence(MlflowClient(), model)
    except InputError as error:  # the drift check stands; the challenger is not weighed
        get_run_logger().warning("%s: challenger not weighed: %s", model, error)
        return {"promoted": False, "reason": str(error)}
    if weighed is not None:
        get_run_logger().info("%s: challenger v%s %s: %s", model, weighed["challenger_version"],
                              "promoted" if weighed["promoted"] else "not promoted",
                              weighed["reason"])
    return weighed


def too_little_traffic(rows: int, policy: MonitoringSection) -> str:
    return (f"too little live traffic: {rows} records in the last {policy.window_minutes:g} "
            f"minutes; at least {policy.min_rows} are needed (monitoring.min_rows)")


def skipped(champion: ChampionData, reason: str) -> dict:
    """A scheduled check with nothing to check completes, saying so, rather than failing."""
    get_run_logger().warning("%s: no drift check: %s", champion.name, reason)
    return {"model_name": champion.name, "champion_version": champion.version, "skipped": True,
            "drift_detected": None, "retraining": "not_needed", "reason": reason,
            "trigger": check_trigger(flow_run.get_tags())}


@flow(name="monitor")
def monitor(params: MonitorParameters) -> dict:
    """Check MODEL's champion against current data; trigger retraining on real drift."""
    label_this_process()
    name_this_run("monitor", params.model, check_trigger(flow_run.get_tags()))
    client = MlflowClient()
    champion = load_champion(params.model)
    settle_earlier(params.model)
    window = None  # the live window read, when no file is given
    if params.current:
        source = params.current
        current, contract_report = load_current(params.current, champion)
    else:
        window, source = load_live(champion)
        if window.rows < champion.spec.monitoring.min_rows:
            return {**skipped(champion, too_little_traffic(window.rows, champion.spec.monitoring)),
                    "challenger": weigh_challenger(params.model)}
        current, contract_report = checked(window.frame, source, champion)
    labelled = load_labelled(champion, current, bool(params.current))
    run_id = start_check(client, champion.name, champion.version, check_trigger(flow_run.get_tags()))
    if window is not None:
        log_batch(client, run_id, metrics=window.metrics())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            html = Path(tmp) / "drift_report.html"
            summary = check_drift(champion, current, html, window is not None and window.sampled)
            live_check, quality_html = check_live(champion, current, labelled, Path(tmp))
            decision = decide(champion, summary, live_check)
            record_live(client, run_id, live_check, quality_html)
            record_check(client, run_id, DriftCheck(
                summary, contract_report, decision,
                drift_detected=is_drift(summary.drift_share, champion.spec.monitoring.drift_share),
                threshold=champion.spec.monitoring.drift_share,
                reference_digest=data_digest(champion.reference),
                current_digest=data_digest(current), current_uri=source,
                quality_degraded=live_check.degraded,
            ), html)
            dashboard = publish_check(champion.name, champion.version, run_id, html.with_name(SNAPSHOT))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    result = drift_result(client, champion, summary, decision, run_id, dashboard)
    if window is not None:  # how much of the live window was read: all of it, or a sample
        result["window"] = window.as_json()
    reason = trigger_reason(decision.action, result["drift_detected"], live_check.degraded)
    # The event carries a path only: "" tells retraining the data was live traffic.
    announce(champion, summary, decision, result, params.current or "", reason)
    return {**result, "trigger_reason": reason,
            **live_result(client, run_id, live_check, quality_html),
            "challenger": None if params.current else weigh_challenger(params.model)}


def drift_result(client: MlflowClient, champion: ChampionData, summary: DriftSummary,
                 decision: RetrainDecision, run_id: str, dashboard: str | None) -> dict:
    """The check's answer about drift and the decision, with links to its run."""
    run = client.get_run(run_id)
    run_url = mlflow_run_url(client.tracking_uri, run.info.experiment_id, run_id)
    return {
        "model_name": champion.name,
        "champion_version": champion.version,
        "drift_detected": is_drift(summary.drift_share, champion.spec.monitoring.drift_share),
        "drift_share": summary.drift_share,
        "drifted_columns": list(summary.drifted_columns),
        "target_drifted": summary.target.drifted if summary.target else None,
        "report_uri": f"{run.info.artifact_uri}/report/drift_report.html",
        "retraining": decision.action,
        "reason": decision.reason,
        "monitoring_run_id": run_id,
        "previous_retraining": previous_retraining(client, champion.name, before_run_id=run_id),
        "run_url": run_url, "evidently_url": dashboard,
        "sampled": summary.sampled,
    }


if __name__ == "__main__":
    monitor(MonitorParameters())
