"""The deployment runner `mlops up` starts: serves train, monitor, retrain and predict deployments.

In the full profile those four (and search batches) are deployments of the work pool instead
(flows/pool.py), run by the platform's own worker or by workers on other machines; the runner
serves the approval waits and does the upkeep (recovery, schedules, the heartbeat automation).

`monitor` runs on each model's own schedule (flows/schedules.py), made when a version
becomes champion; applying the deployment here at each start leaves those schedules be.

`retrain` runs on the event `mlops.drift.detected` (resource `mlops.model.<name>`), one at a
time: a second event while a retraining runs is cancelled rather than queued.

Prefect's runner web server stays off: anyone who reached its port could call `/shutdown`.
The runner's port answers `GET /health` only (infra/health.py), on the host and port
Prefect's server would have used (PREFECT_RUNNER_SERVER_HOST and _PORT).
"""

import asyncio
import datetime
import logging
import time
from functools import partial

import mlflow
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import TerminationSignal
from prefect.runner import Runner
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_RUNNER_POLL_FREQUENCY,
    PREFECT_RUNNER_SERVER_HOST,
    PREFECT_RUNNER_SERVER_MISSED_POLLS_TOLERANCE,
    PREFECT_RUNNER_SERVER_PORT,
)

from flows.approval import approve, expire_approval
from flows.heartbeats import install_zombie_automation
from flows.monitor import DRIFT_EVENT, monitor
from flows.predict import predict
from flows.recovery import recover
from flows.retrain import retrain
from flows.schedules import schedule_missing
from flows.train import train
from flows.warm import use_warm_processes
from infra.errors import PlatformError
from infra.health import serve_health
from infra.services import is_healthy, write_start_notes
from infra.settings import process_settings


def served_flows():
    """Each flow the runner serves, with its deployment's options."""
    retrain_trigger = DeploymentEventTrigger(
        name="retrain on drift",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": "mlops.model.*"},
        parameters={
            "params": {
                "model": "{{ event.payload.model }}",
                "monitoring_run_id": "{{ event.payload.monitoring_run_id }}",
                "current": "{{ event.payload.current }}",
                # Prefect renders a lone expression through tojson, which fails on a
                # missing key: an event without a trigger (an older check's) is drift.
                "trigger": "{{ event.payload.trigger | default('drift') }}",
            }
        },
    )
    return [
        (train, {"name": "train", "description": "Train an experiment and gate the winner."}),
        # No schedule here: each model's own (flows/schedules.py, slugged, so applying this
        # deployment again at every start keeps them).
        (monitor, {
            "name": "monitor",
            "description": "One drift check of a champion against current data; a schedule per "
                           "model that has a champion.",
        }),
        (retrain, {
            "name": "retrain",
            "description": "Retrain after drift (started by the mlops.drift.detected event).",
            "triggers": [retrain_trigger],
            "concurrency_limit": ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        }),
        # Started by a training in `promotion.mode: approve`; each run waits, suspended, for a
        # person's decision (Resume in the UI, or `mlops approve` / `mlops reject`).
        (approve, {
            "name": "approve",
            "description": "Wait for a person to approve or reject a version that won the gate.",
        }),
        (expire_approval, {
            "name": "expire-approval",
            "description": "At an approval's deadline, reject the version if it still waits.",
        }),
        (predict, {
            "name": "predict",
            "description": "Batch scoring: a model version scores a CSV/Parquet file (local or "
                           "s3://) into a file with its predictions.",
        }),
    ]


def deployments():
    return [flow.to_deployment(**options) for flow, options in served_flows()]


def runner_flows(profile: str, pool: str) -> list:
    """What this runner serves itself: everything in the local profile; in the full profile
    what is not a deployment of the pool, once those are applied."""
    served = served_flows()
    if profile != "full":
        return served
    from flows.pool import POOL_DEPLOYMENTS, register_pool_deployments

    register_pool_deployments(pool, served)
    return [(flow, options) for flow, options in served if options["name"] not in POOL_DEPLOYMENTS]


def restore_schedules() -> None:
    """Models with a champion but no monitoring schedule get one (see schedule_missing)."""
    with get_client(sync_client=True) as prefect:
        for model, action in schedule_missing(MlflowClient(), prefect).items():
            logging.getLogger(__name__).info("monitoring schedule of %s: %s", model, action)


def polled_recently(runner: Runner, within_s: float) -> bool:
    """Whether the runner asked Prefect for work within the last `within_s` seconds (the test
    Prefect's own runner server makes)."""
    last = runner.last_polled
    now = datetime.datetime.now(datetime.UTC)
    return last is not None and (now - last).total_seconds() <= within_s


def install_zombie_automation_safely(silence_s: int) -> None:
    """Runs whose process died are crashed by Prefect's server from now on (see heartbeats)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            install_zombie_automation(client, silence_s)
    except Exception:  # noqa: BLE001 - serving must start anyway; the next start installs it
        logging.getLogger(__name__).warning("could not install the heartbeat automation", exc_info=True)


def wait_for_servers(timeout_s: float, interval_s: float = 0.1) -> None:
    """Wait until Prefect and MLflow answer: `up` starts the runner beside them (its imports
    overlap their start), and everything after this talks to both."""
    addresses = {"Prefect": f"{PREFECT_API_URL.value().rstrip('/')}/health",
                 "MLflow": f"{mlflow.get_tracking_uri().rstrip('/')}/health"}
    deadline = time.monotonic() + timeout_s
    for name, health in addresses.items():
        while not is_healthy(health, timeout_s=1.0):
            if time.monotonic() > deadline:
                raise PlatformError(f"{name} did not answer at {health} within {timeout_s:g} s")
            time.sleep(interval_s)


def main() -> None:
    settings = process_settings()
    wait_for_servers(settings.start_timeout_s)  # as long as `up` waits for them
    served = runner_flows(settings.profile, settings.work_pool)
    try:
        # Before serving: the runs it crashes must not be picked up as ours. Only its own: a
        # worker's runs are a worker's (a dead one's are crashed by their missed heartbeats).
        settled = recover(runner_starts=True, deployments=tuple(options["name"] for _, options in served))
    except Exception as error:  # noqa: BLE001 - serving must start anyway; the next check settles its own
        logging.getLogger(__name__).warning("could not settle what the last runner left", exc_info=True)
        settled = [f"could not settle the runs stopped processes left: {error}"]
    # For the `up` that started this runner to print (it settles nothing itself then).
    write_start_notes(settings.home, "runner", settled)
    install_zombie_automation_safely(settings.heartbeat_silence_s)
    # What Flow.serve does, for several flows, with the runner in hand for the health check.
    # Flows added as objects run in a fork of the warm process (flows/warm.py), not in a new
    # `python -m prefect.engine` that imports everything again.
    runner = Runner(pause_on_shutdown=True, limit=None)
    # The warm process's imports wait until the runner has polled (it is healthy then): on a
    # busy machine they slowed registering the deployments and the first poll by 1-3 s.
    use_warm_processes(start_when=lambda: runner.last_polled is not None)
    for flow, options in served:
        runner.add_flow(flow, **options)
    try:
        restore_schedules()
    except Exception:  # noqa: BLE001 - serving must start anyway; the next training schedules its model
        logging.getLogger(__name__).warning("could not restore the monitoring schedules", exc_info=True)
    tolerance = PREFECT_RUNNER_POLL_FREQUENCY.value() * PREFECT_RUNNER_SERVER_MISSED_POLLS_TOLERANCE.value()
    serve_health(PREFECT_RUNNER_SERVER_HOST.value(), PREFECT_RUNNER_SERVER_PORT.value(),
                 partial(polled_recently, runner, tolerance))
    try:
        asyncio.run(runner.start(webserver=False))
    except (KeyboardInterrupt, TerminationSignal):
        pass  # stopped by `mlops down`


if __name__ == "__main__":
    main()
