"""A drift check's snapshot on its model's Evidently dashboard: a task the monitor flow calls.

Publishing is a courtesy to the person watching: the check is already recorded in MLflow, so
an Evidently UI that is down or refuses only costs a warning in the flow's log.
"""

from pathlib import Path

from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.services import is_healthy
from infra.settings import process_settings
from monitoring.dashboard import SnapshotInfo, publish_snapshot

DASHBOARD_TAG = "mlops.evidently_url"


@task(cache_policy=NO_CACHE)
def publish_check(model: str, champion_version: str, run_id: str, snapshot: Path) -> str | None:
    """Add the check's snapshot to the model's Evidently project; the dashboard's address
    (also tagged on the monitoring run), or None when it could not be added."""
    logger = get_run_logger()
    settings = process_settings()
    url = settings.evidently_url
    if not url:
        logger.info("no Evidently UI configured (MLOPS_EVIDENTLY_URL): the check is not on a dashboard")
        return None
    # Evidently's client sets no timeout: a server that is not there is found out here, in 2 s.
    if not is_healthy(f"{url.rstrip('/')}/api/version", timeout_s=2.0):
        logger.warning("the Evidently UI does not answer at %s: this check is not on its dashboard", url)
        return None
    info = SnapshotInfo(name=f"check of v{champion_version}",
                        metadata={"model": model, "champion_version": champion_version,
                                  "mlflow_run_id": run_id})
    try:
        dashboard = publish_snapshot(url, settings.evidently_secret.get_secret_value(), model,
                                     snapshot, info)
    except Exception as error:  # noqa: BLE001 - whatever Evidently raises, the check stands
        logger.warning("could not add this check to the Evidently dashboard at %s: %s", url, error)
        return None
    MlflowClient().set_tag(run_id, DASHBOARD_TAG, dashboard)
    return dashboard
