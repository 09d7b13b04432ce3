"""The work pool, and the deployments its workers run.

A worker needs the installed package, the platform's addresses and its credentials, nothing
else: each deployment names its flow by module path (`flows.retrain.retrain`), so a process
worker imports it from wherever the package is installed, with no path, folder or pull step,
and runs it in a temporary folder of its own. What one flow leaves for another goes to the
bucket (MLOPS_DATA_URI, MLOPS_TRAFFIC_URI) or to MLflow.
"""

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.types.entrypoint import EntrypointType

from infra.errors import PlatformError

# In the full profile these run on the pool; the runner keeps only the approval waits.
POOL_DEPLOYMENTS = ("train", "monitor", "retrain", "predict")


def ensure_pool(pool: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def pool_deployment(flow, pool: str, **options):
    """A deployment of `flow` on the pool, by module path, with no working folder."""
    return flow.to_deployment(work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
                              **options)


def batch_deployment(pool: str):
    from flows.search_batch import BATCH_FLOW, search_batch

    return pool_deployment(
        search_batch, pool, name=BATCH_FLOW,
        description="A batch of trials of one training's search (mlops train --workers N).")


def register_pool_deployments(pool: str, served: list) -> list[str]:
    """The search-batch deployment and those of `served` (flow, options) named in
    POOL_DEPLOYMENTS, applied on the pool; the names applied."""
    ensure_pool(pool)
    deployments = [batch_deployment(pool)] + [
        pool_deployment(flow, pool, **options) for flow, options in served
        if options["name"] in POOL_DEPLOYMENTS]
    for deployment in deployments:
        deployment.apply()
    return [d.name for d in deployments]


def require_worker(pool: str) -> None:
    """One line when no worker polls the pool: a fanned-out search would wait forever."""
    with get_client(sync_client=True) as client:
        try:
            workers = client.read_workers_for_work_pool(pool)
        except ObjectNotFound:
            workers = []
    if not any(str(getattr(w.status, "value", w.status)).upper() == "ONLINE" for w in workers):
        raise PlatformError(
            f"no worker is polling the work pool '{pool}'; start one with `mlops worker`"
        )
