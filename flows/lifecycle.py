"""A person moves `champion`: promote a version, or roll back to the one that served before.

Each move is checked, made and recorded under the model's promotion lock, the one the gate
holds, so a person racing a retraining (or another person) never loses a record; afterwards
the model's monitoring schedule follows the new champion.
"""

import logging
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client

from experiments.errors import InputError
from flows import locks
from flows.events import ChampionMove, announce_champion
from flows.links import run_url
from flows.schedules import follow_champion
from infra.errors import PlatformError
from registry.champion import Move, get_champion, move_champion
from registry.history import champion_periods, rollback_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moved:
    model_name: str
    champion_version: str
    previous_champion: str | None
    by: str
    reason: str


def _not_found(error: MlflowException) -> bool:
    return error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def require_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if _not_found(error):
            raise InputError(f"unknown model {name!r}: `mlops models` lists the registered ones") from error
        raise


def require_version(client: MlflowClient, name: str, version: str) -> None:
    """VERSION exists and its files are registered (not pending, not failed)."""
    try:
        found = client.get_model_version(name, version)
    except MlflowException as error:
        if _not_found(error):
            raise InputError(f"model {name!r} has no version {version}") from error
        raise
    if found.status != "READY":
        raise InputError(f"{name} version {version} is not ready to serve (status {found.status})")


def promote(client: MlflowClient, name: str, version: str, reason: str, by: str) -> Moved:
    """Give VERSION `champion`; refused when it holds it already."""
    require_model(client, name)
    require_version(client, name, version)
    with locks.held(locks.promotion_lock(name)):
        current = get_champion(client, name)
        previous = None if current is None else str(current.version)
        if previous == version:
            raise InputError(f"{name} version {version} is already champion")
        move_champion(client, name, version, Move(by, reason, previous))
    return Moved(name, version, previous, by, reason)


def rollback(client: MlflowClient, name: str, reason: str | None, by: str) -> Moved:
    """Give `champion` back to the version that held it before the current one's period."""
    require_model(client, name)
    with locks.held(locks.promotion_lock(name)):
        current = get_champion(client, name)
        if current is None:
            raise InputError(f"{name} has no champion to roll back from")
        current = str(current.version)
        target = rollback_target(champion_periods(client, name), current)
        if target is None:
            raise InputError(f"{name} has no earlier champion than version {current} to roll back to")
        require_version(client, name, target)
        reason = reason or f"rollback from version {current}"
        move_champion(client, name, target, Move(by, reason, current))
    return Moved(name, target, current, by, reason)


def follow(client: MlflowClient, name: str) -> str | None:
    """Reschedule NAME's checks for its new champion; a note when that could not be done
    (the move stands: the next training or runner start schedules it)."""
    try:
        with get_client(sync_client=True) as prefect:
            follow_champion(client, prefect, name)
    except (PlatformError, MlflowException, OSError) as error:
        log.warning("%s: monitoring schedule not updated: %s", name, error)
        return f"the monitoring schedule was not updated: {error}"
    return None


def announce(client: MlflowClient, moved: Moved, how: str) -> str | None:
    """The promotion event (and so its alerts) for a move a person made: HOW is `promote`
    or `rollback`; the MLflow link is the run that made the version. A note when it could
    not be sent (the move stands)."""
    try:
        version = client.get_model_version(moved.model_name, moved.champion_version)
        experiment_id = client.get_run(version.run_id).info.experiment_id
    except (MlflowException, OSError) as error:
        log.warning("%s: no promotion event: %s", moved.model_name, error)
        return f"no promotion alert was sent: {error}"
    announce_champion(client.tracking_uri, moved.model_name, ChampionMove(
        moved.champion_version, moved.previous_champion, moved.reason, moved.by, how),
        run_url(client.tracking_uri, experiment_id, version.run_id))
    return None
