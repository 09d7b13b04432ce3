"""A monitoring schedule per model: an interval schedule on the `monitor` deployment whose
parameters name the model, kept in step with the model's champion.

Every schedule made here has a slug (`monitor-<model>`). That is what lets the schedules
outlive the runner: at each start it applies the `monitor` deployment again with no
schedules of its own, and Prefect's server (3.8, PATCH /deployments) then leaves a
deployment's schedules alone when every existing one has a slug; without slugs it would
replace them all with none.
"""

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from httpx import HTTPStatusError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.exceptions import ObjectNotFound

from infra.errors import PlatformError
from monitoring.champion import load_run_spec
from registry.champion import get_champion
from registry.models import list_models

MONITOR_DEPLOYMENT = "monitor/monitor"  # flow name / deployment name (flows/serve.py)
SLUG_PREFIX = "monitor-"
# Prefect's scheduler tags every run it creates from a schedule with this.
SCHEDULED_TAG = "auto-scheduled"

Action = Literal["create", "update", "delete", "keep", "none"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSchedule:
    """One model's schedule as Prefect holds it."""

    model: str
    every_minutes: float
    active: bool
    anchor: datetime
    parameters: dict
    schedule_id: UUID | None = None


def schedule_slug(model: str) -> str:
    return f"{SLUG_PREFIX}{model}"


def schedule_parameters(model: str) -> dict:
    """What a scheduled run of `monitor` is given: the model, and no data (live traffic)."""
    return {"params": {"model": model}}


def decide_schedule(current: ModelSchedule | None, model: str, every_minutes: float) -> Action:
    """What to do so that MODEL is checked every `every_minutes` (0: never)."""
    if every_minutes < 0:
        raise ValueError(f"monitoring.every_minutes must be 0 or more, not {every_minutes}")
    if every_minutes == 0:
        return "delete" if current is not None else "none"
    if current is None:
        return "create"
    same = (math.isclose(current.every_minutes, every_minutes) and current.active
            and current.parameters == schedule_parameters(model))
    return "keep" if same else "update"


def next_check(anchor: datetime, every_minutes: float, now: datetime) -> datetime:
    """The first time at or after `now` that an interval schedule anchored at `anchor` fires."""
    if now <= anchor:
        return anchor
    periods = math.ceil((now - anchor).total_seconds() / (every_minutes * 60))
    return anchor + timedelta(minutes=every_minutes) * periods


def check_trigger(tags: list[str]) -> Literal["schedule", "manual"]:
    """Why a monitoring run runs: its schedule, or someone (the CLI, the UI) asked for it."""
    return "schedule" if SCHEDULED_TAG in tags else "manual"


def model_schedules(deployment) -> dict[str, ModelSchedule]:
    """The per-model schedules among a `monitor` deployment's schedules, by model."""
    found = {}
    for schedule in deployment.schedules or []:
        interval = getattr(schedule.schedule, "interval", None)
        if not (schedule.slug or "").startswith(SLUG_PREFIX) or interval is None:
            continue  # not ours: a schedule someone added by hand in the UI
        model = schedule.slug.removeprefix(SLUG_PREFIX)
        found[model] = ModelSchedule(
            model, interval.total_seconds() / 60, schedule.active,
            # Prefect gives a pendulum DateTime: a plain one from here on.
            datetime.fromtimestamp(schedule.schedule.anchor_date.timestamp(), UTC),
            dict(schedule.parameters), schedule.id)
    return found


def monitor_deployment(prefect):
    """The `monitor` deployment the runner registers; one line when it is not there."""
    try:
        return prefect.read_deployment_by_name(MONITOR_DEPLOYMENT)
    except ObjectNotFound as error:
        raise PlatformError(f"Prefect has no deployment {MONITOR_DEPLOYMENT} (the runner "
                            "registers it): start the platform with `mlops up`") from error


def schedule_monitoring(prefect, model: str, every_minutes: float) -> Action:
    """Make MODEL's schedule on `monitor` fire every `every_minutes` (0 removes it).

    `prefect` is a sync Prefect client. Returns what was done."""
    deployment = monitor_deployment(prefect)
    current = model_schedules(deployment).get(model)
    action = decide_schedule(current, model, every_minutes)
    interval = IntervalSchedule(interval=timedelta(minutes=every_minutes)) if every_minutes else None
    if action == "create":
        try:
            prefect.create_deployment_schedules(deployment.id, [DeploymentScheduleCreate(
                schedule=interval, active=True, parameters=schedule_parameters(model),
                slug=schedule_slug(model))])
        except HTTPStatusError as error:
            if error.response.status_code != 409:
                raise
            # Another training of MODEL made it meanwhile (slugs are unique): set its interval.
            return schedule_monitoring(prefect, model, every_minutes)
    elif action == "update":
        prefect.update_deployment_schedule(deployment.id, current.schedule_id, active=True,
                                           schedule=interval, parameters=schedule_parameters(model))
    elif action == "delete":
        prefect.delete_deployment_schedule(deployment.id, current.schedule_id)
    if action in ("create", "update"):
        # Prefect's scheduler makes runs of a new or changed schedule only at its next loop
        # (60 s; a schedule does not count as a change of its deployment): make them now.
        prefect.request("POST", "/deployments/{id}/schedule", path_params={"id": deployment.id},
                        json={})
    log.info("monitoring schedule of %s (every %g minutes): %s", model, every_minutes, action)
    return action


def follow_champion(client: MlflowClient, prefect, model: str) -> Action:
    """Schedule MODEL's checks as its champion's spec says (none without a champion).

    For whatever moves `champion`: the gate, a promotion, a rollback, an approval."""
    champion = get_champion(client, model)
    every = 0.0 if champion is None else load_run_spec(client, champion.run_id).monitoring.every_minutes
    return schedule_monitoring(prefect, model, every)


def monitoring_overview(prefect, now: datetime) -> dict[str, dict]:
    """Each scheduled model's interval and next check: {"every_minutes", "next_check"}."""
    deployment = monitor_deployment(prefect)
    running = not deployment.paused
    return {
        model: {"every_minutes": schedule.every_minutes,
                "next_check": (next_check(schedule.anchor, schedule.every_minutes, now).isoformat()
                               if schedule.active and running else None)}
        for model, schedule in model_schedules(deployment).items()
    }


def describe_models(client: MlflowClient, prefect, now: datetime) -> list[dict]:
    """Every registered model with its champion, challenger, versions and monitoring schedule
    (`every_minutes` 0 and no `next_check` when it has none)."""
    scheduled = monitoring_overview(prefect, now)
    return [{"name": m.name, "champion_version": m.champion_version,
             "challenger_version": m.challenger_version, "versions": m.versions,
             "awaiting_approval": list(m.awaiting_approval),
             "monitoring": scheduled.get(m.name, {"every_minutes": 0, "next_check": None})}
            for m in list_models(client)]


def schedule_missing(client: MlflowClient, prefect) -> dict[str, Action]:
    """A schedule for every model with a champion that has none, as its champion's spec says.

    The runner does this at start: it brings back schedules that a restart lost (Prefect
    replaces all of a deployment's schedules when one of them has no slug, such as one a
    person added in the UI) and schedules models trained before there were schedules. An
    existing schedule is left as it is: it follows the latest training's spec."""
    scheduled = model_schedules(monitor_deployment(prefect))
    done = {}
    for model in list_models(client):
        if model.champion_version is None or model.name in scheduled:
            continue
        try:
            done[model.name] = follow_champion(client, prefect, model.name)
        except (MlflowException, OSError) as error:  # registered elsewhere: no spec of ours
            log.warning("%s is not scheduled: its champion's spec cannot be read (%s)", model.name, error)
    return done
