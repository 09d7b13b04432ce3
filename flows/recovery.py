"""Settling what a stopped process left behind in Prefect, and telling the checks about it.

The runner is the only process that runs the flow runs of the deployments it serves, so a
runner that starts knows that those left Pending or Running are nobody's: it marks them
Crashed, which also gives back the deployment concurrency slot they held (Prefect releases
it on a transition out of Pending or Running, even when the slot's lease was lost with a
restarted server). Without that, `retrain` (one slot, cancel-new) cancelled every later
drift retraining.

A retraining's outcome is written on the drift check that triggered it (the tag
`mlops.retraining_state` of its monitoring run): by the retrain flow's own state hooks
when it runs, and here for the runs that never ran (cancelled at once because another
retraining held the slot) or whose runner died.
"""

import logging

from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Crashed

from monitoring.record import record_retraining, retraining_state, unsettled_retrainings

log = logging.getLogger(__name__)

RUNNER_DEPLOYMENTS = ("train", "monitor", "retrain")
UNFINISHED = (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)
CRASHED_MESSAGE = "its runner stopped before it finished; marked crashed when the runner started again"
RECENT_RETRAININGS = 200  # the newest retrain flow runs looked at: far more than checks pending


def crash_orphaned_runs(client, deployments=RUNNER_DEPLOYMENTS) -> list[FlowRun]:
    """Mark Crashed the runs of the runner's deployments that a previous runner left unfinished."""
    orphans = client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=list(deployments))),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(UNFINISHED)))),
    )
    for run in orphans:
        client.set_flow_run_state(run.id, Crashed(message=CRASHED_MESSAGE), force=True)
        log.warning("flow run %s (%s) was left %s by a stopped runner: marked crashed",
                    run.id, run.name, run.state.type.value if run.state else "unknown")
    return orphans


def retrain_runs(client, limit: int = RECENT_RETRAININGS) -> list[FlowRun]:
    """The newest flow runs of the `retrain` deployment."""
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit,
    )


def monitoring_run_of(run: FlowRun) -> str | None:
    return ((run.parameters or {}).get("params") or {}).get("monitoring_run_id") or None


def settle_retrainings(prefect, mlflow: MlflowClient, model: str) -> list[tuple[str, str]]:
    """Write on MODEL's checks still saying triggered or running how their retraining ended
    (as far as Prefect knows); returns (monitoring run id, state) for each one written."""
    waiting = unsettled_retrainings(mlflow, model)
    if not waiting:
        return []
    written = []
    # Newest first: of several runs for one check, the latest speaks for it.
    for run in retrain_runs(prefect):
        check = monitoring_run_of(run)
        if check in waiting and run.state is not None:
            state = retraining_state(run.state.type.value)
            if state != waiting.pop(check):
                record_retraining(mlflow, check, state, str(run.id))
                written.append((check, state))
    return written


def recover() -> None:
    """What the runner does first: crash the orphans, then settle every model's checks."""
    mlflow = MlflowClient()
    with get_client(sync_client=True) as prefect:
        crash_orphaned_runs(prefect)
        for model in mlflow.search_registered_models():
            settle_retrainings(prefect, mlflow, model.name)
