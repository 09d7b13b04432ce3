"""Registered models by alias only: `champion` serves, `challenger` waits, history is kept."""

from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.history import (
    BY_TAG,
    FROM_TAG,
    GATE,
    REASON_TAG,
    UNTIL_TAG,
    Period,
    log_period,
)
from registry.loading import DIGEST_TAG, digest_of
from registry.promotion import PromotionDecision

CHAMPION = "champion"
CHALLENGER = "challenger"
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


@dataclass(frozen=True)
class Move:
    """Who moves `champion` (`gate` or a person), why, and from which version (None: none)."""

    by: str
    reason: str
    previous: str | None


def _is_not_found(error: MlflowException) -> bool:
    return error.error_code in _NOT_FOUND


def get_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding `champion`, or None when the model or the alias does not exist."""
    return get_alias(client, name, CHAMPION)


def get_challenger(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding `challenger`, or None when the model or the alias does not exist."""
    return get_alias(client, name, CHALLENGER)


def get_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if _is_not_found(error):
            return None
        # A registered model without the alias is INVALID_PARAMETER_VALUE, as other bad
        # requests are: look at the model's aliases before calling it "no such alias".
        if error.error_code == "INVALID_PARAMETER_VALUE" and alias not in (
                client.get_registered_model(name).aliases or {}):
            return None
        raise


def register(client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict,
             digest: str | None = None) -> ModelVersion:
    """A new version of NAME, tagged with the digest its loads are checked against: the one
    taken from the files as they were uploaded, or else from the stored files as they are now
    (downloaded). A model changed later no longer matches."""
    tags = {**tags, DIGEST_TAG: digest or digest_of(model_uri, client.tracking_uri)}
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if not _is_not_found(error):
            raise
        client.create_registered_model(name, description="Managed by mlops-platform.")
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return client.get_model_version(name, version.version)


def move_champion(client: MlflowClient, name: str, version: str, move: Move) -> None:
    """Give VERSION `champion` and record the move: a period in the model's history, and on
    the versions the latest period's tags (VERSION's from, by, reason; the previous one's until).

    Call under the model's promotion lock: the previous champion read before is the one replaced.
    """
    now = datetime.now(UTC).isoformat(timespec="seconds")
    # The SQLite store gives versions as numbers where the REST client gives text.
    version, previous = str(version), None if move.previous is None else str(move.previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    log_period(client, name, Period(version, now, move.by, move.reason))
    describe_version(client, name, version, f"Champion since {now}, moved by {move.by}: {move.reason}")
    if previous is not None and previous != version:
        describe_version(client, name, previous, f"Champion until {now}, when version {version} "
                         f"took over (moved by {move.by}: {move.reason})")
    tags = client.get_model_version(name, version).tags
    for key, value in ((FROM_TAG, now), (REASON_TAG, move.reason), (BY_TAG, move.by)):
        client.set_model_version_tag(name, version, key, value)
    if UNTIL_TAG in tags:  # serving again: its latest period is open
        client.delete_model_version_tag(name, version, UNTIL_TAG)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, previous, UNTIL_TAG, now)
    aliases = client.get_registered_model(name).aliases or {}
    if str(aliases.get(CHALLENGER, "")) == version:  # no longer waiting: it serves
        client.delete_registered_model_alias(name, CHALLENGER)


def apply_decision(
    client: MlflowClient, name: str, version: str, decision: PromotionDecision,
    previous_version: str | None,
) -> None:
    """Move `champion` (recorded as the gate's move) or mark the version `challenger`, tagging why."""
    if decision.promote:
        move_champion(client, name, version, Move(GATE, decision.reason, previous_version))
        return
    client.set_model_version_tag(name, version, REASON_TAG, decision.reason)
    client.set_registered_model_alias(name, CHALLENGER, version)
    describe_version(client, name, version, f"Challenger, not serving: {decision.reason}")


CARD_LINE = "Model card: "


def describe_version(client: MlflowClient, name: str, version: str, text: str) -> None:
    """The version's description in MLflow's UI: where it stands and why, in one sentence,
    and the line pointing to its model card when it has one (kept through every move)."""
    current = client.get_model_version(name, version).description or ""
    card = next((line for line in current.splitlines() if line.startswith(CARD_LINE)), None)
    text = text[:4000]
    client.update_model_version(name, version, description=f"{text}\n\n{card}" if card else text)


def point_to_card(client: MlflowClient, name: str, version: str, address: str) -> None:
    """Add to the version's description the line that links its model card."""
    current = client.get_model_version(name, version).description or ""
    kept = "\n".join(line for line in current.splitlines() if not line.startswith(CARD_LINE)).strip()
    line = f"{CARD_LINE}[model_card.md]({address})"
    client.update_model_version(name, version, description=f"{kept}\n\n{line}" if kept else line)
