"""The work pool that scale-out runs on, and the deployment its workers run."""

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

from infra.errors import PlatformError
from infra.platform import PROJECT_ROOT


def ensure_pool(pool: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def register_batch_deployment(pool: str) -> None:
    """The `search-batch` deployment, run from this checkout by the pool's process workers."""
    from flows.search_batch import search_batch

    ensure_pool(pool)
    deployment = search_batch.to_deployment(
        name="search-batch",
        work_pool_name=pool,
        job_variables={"working_dir": str(PROJECT_ROOT)},
        description="A batch of trials of one training's search (mlops train --workers N).",
    )
    deployment.apply()


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
