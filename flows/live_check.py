"""The monitoring flow's look at the champion itself: live quality on the labels that came
back, and the drift of its predictions (the logic is in monitoring/live.py)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from experiments.tracking import log_batch
from infra.settings import process_settings
from monitoring.champion import ChampionData
from monitoring.live import (
    LiveCheck,
    LiveQuality,
    check_prediction_drift,
    judge_live_quality,
    labelled_since,
    with_labels,
    write_quality_report,
)
from monitoring.traffic import open_files, read_labelled
from registry.loading import UnsafeModel, load_registered

QUALITY_REPORT = "quality_report.html"


@task(cache_policy=NO_CACHE)
def load_labelled(champion: ChampionData, current: pd.DataFrame, from_file: bool) -> pd.DataFrame:
    """The checked rows whose true label is known: a file's own target column, or the live
    records of the window that got feedback."""
    target = champion.contract.target
    if from_file:
        return with_labels(current, target)
    since = datetime.now(UTC) - timedelta(minutes=champion.spec.monitoring.window_minutes)
    files = open_files(process_settings().traffic_base)
    return with_labels(labelled_since(read_labelled(files, champion.name, target, since), since),
                       target)


@task(cache_policy=NO_CACHE)
def check_live(champion: ChampionData, current: pd.DataFrame, labelled: pd.DataFrame,
               folder: Path) -> tuple[LiveCheck, Path | None]:
    """Live quality and prediction drift, and the quality report's HTML when judged."""
    client = MlflowClient()
    try:
        pipeline = load_registered(client, champion.name, champion.version).pipeline
    except UnsafeModel as error:  # the drift check still stands; the champion is not run
        return LiveCheck(LiveQuality(None, len(labelled), f"no verdict: {error}"), None), None
    metrics = client.get_run(champion.run_id).data.metrics
    reference = metrics.get(f"holdout_{champion.spec.metric}")
    quality = judge_live_quality(pipeline, labelled, champion.contract, champion.spec, reference)
    get_run_logger().info("live quality of %s v%s: %s", champion.name, champion.version,
                          quality.note)
    drift = check_prediction_drift(pipeline, champion.reference, current, champion.contract,
                                   seed=champion.spec.tuning.seed)
    html = None
    if quality.verdict is not None:
        html = folder / QUALITY_REPORT
        write_quality_report(pipeline, labelled, champion.contract, html)
    return LiveCheck(quality, drift), html


def record_live(client: MlflowClient, run_id: str, live: LiveCheck, html: Path | None) -> None:
    """On the check's run, before record_check closes it."""
    log_batch(client, run_id, params=live.params(), metrics=live.metrics(), tags=live.tags())
    if html is not None:
        client.log_artifact(run_id, str(html), "report")


def live_result(client: MlflowClient, run_id: str, live: LiveCheck, html: Path | None) -> dict:
    """The check's answer's share: `quality`, `prediction_drift` and the quality report."""
    report = None
    if html is not None:
        report = f"{client.get_run(run_id).info.artifact_uri}/report/{QUALITY_REPORT}"
    return {**live.as_json(), "quality_report_uri": report, "quality_note": live.quality.note}
