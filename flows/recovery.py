"""Settling what a stopped process left behind in Prefect, and telling the checks about it.

The runner is the only process that runs the flow runs of the deployments it serves, so a
runner that starts knows that those left Pending or Running are nobody's: it marks them
Crashed, which also gives back the deployment concurrency slot they held (Prefect releases
it on a transition out of Pending or Running, even when the slot's lease was lost with a
restarted server). Without that, `retrain` (one slot, cancel-new) cancelled every later
drift retraining. Every flow also labels its run with its process (host, pid, start time),
so `mlops up` can crash the runs of a process on this machine that has ended (a training
that stopped because Prefect did), while leaving a live runner's runs alone.

A retraining's outcome is written on the drift check that triggered it (the tag
`mlops.retraining_state` of its monitoring run): by the retrain flow's own state hooks
when it runs, and here for the runs that never ran (cancelled at once because another
retraining held the slot) or whose runner died.
"""

import logging
import os
import socket
from pathlib import Path

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
from prefect.runtime import flow_run
from prefect.states import Crashed

from monitoring.record import record_retraining, retraining_state, unsettled_retrainings

log = logging.getLogger(__name__)

RUNNER_DEPLOYMENTS = ("train", "monitor", "retrain", "predict", "approve", "expire-approval")
UNFINISHED = (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)
CRASHED_MESSAGE = "its runner stopped before it finished; marked crashed when the runner started again"
RECENT_RETRAININGS = 200  # the newest retrain flow runs looked at: far more than checks pending


PROCESS_LABEL = "mlops.process"  # host:pid:start time of the process that runs the flow run
GONE_MESSAGE = "the process that ran it is gone; marked crashed by `mlops up` or the runner"


def unfinished_runs(client, deployments: tuple[str, ...] | None = None) -> list[FlowRun]:
    """Flow runs Pending, Running or Cancelling; of DEPLOYMENTS only, when given."""
    return client.read_flow_runs(
        deployment_filter=(DeploymentFilter(name=DeploymentFilterName(any_=list(deployments)))
                           if deployments else None),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(UNFINISHED)))),
    )


def _crash(client, runs: list[FlowRun], message: str) -> list[FlowRun]:
    for run in runs:
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        log.warning("flow run %s (%s) was left %s: marked crashed (%s)", run.id, run.name,
                    run.state.type.value if run.state else "unknown", message)
    return runs


def crash_orphaned_runs(client, deployments=RUNNER_DEPLOYMENTS) -> list[FlowRun]:
    """Mark Crashed the runs of the runner's deployments that a previous runner left unfinished."""
    return _crash(client, unfinished_runs(client, tuple(deployments)), CRASHED_MESSAGE)


def crash_runs_of_gone_processes(client) -> list[FlowRun]:
    """Mark Crashed the unfinished runs whose process, on this machine, has ended (a killed
    `mlops train`, a training that stopped because Prefect did): nobody will finish them."""
    gone = [run for run in unfinished_runs(client)
            if (run.labels or {}).get(PROCESS_LABEL) and process_is_gone(run.labels[PROCESS_LABEL])]
    return _crash(client, gone, GONE_MESSAGE)


def _start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks since boot): a pid used again differs in it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def process_is_gone(process: str) -> bool:
    """Whether the process a label names has ended; one on another machine is not known."""
    host, pid, start = process.rsplit(":", 2)
    return host == socket.gethostname() and _start_ticks(int(pid)) != start


def label_this_process() -> None:
    """Called first by each flow: which process runs this flow run, for the recovery above."""
    with get_client(sync_client=True) as client:
        client.update_flow_run_labels(flow_run.get_id(), {PROCESS_LABEL: this_process()})


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


def recover(runner_starts: bool, deployments: tuple[str, ...] = RUNNER_DEPLOYMENTS) -> list[str]:
    """Crash the runs of processes that are gone (and, when the runner starts, the runs the
    last runner left of the DEPLOYMENTS it serves), then settle every model's checks. `mlops up`
    and the runner call it; returns a line per run crashed."""
    mlflow = MlflowClient()
    with get_client(sync_client=True) as prefect:
        crashed = crash_orphaned_runs(prefect, deployments) if runner_starts and deployments else []
        crashed += crash_runs_of_gone_processes(prefect)
        for model in mlflow.search_registered_models():
            settle_retrainings(prefect, mlflow, model.name)
    return [f"flow run {run.name} ({run.id}) was left {run.state.type.value if run.state else '?'} "
            "by a process that is gone: marked crashed" for run in crashed]
