"""Registered models by alias only: `champion` serves, `challenger` waits, history is kept."""

from datetime import UTC, datetime

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry.loading import DIGEST_TAG, digest_of
from registry.promotion import PromotionDecision

CHAMPION = "champion"
CHALLENGER = "challenger"
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _is_not_found(error: MlflowException) -> bool:
    return error.error_code in _NOT_FOUND


def get_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding `champion`, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if _is_not_found(error):
            return None
        # A registered model without the alias is INVALID_PARAMETER_VALUE, as other bad
        # requests are: look at the model's aliases before calling it "no champion".
        if error.error_code == "INVALID_PARAMETER_VALUE" and CHAMPION not in (
                client.get_registered_model(name).aliases or {}):
            return None
        raise


def register(client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict) -> ModelVersion:
    """A new version of NAME, tagged with the digest its loads are checked against."""
    # Taken from the files as they are now: a model changed later no longer matches.
    tags = {**tags, DIGEST_TAG: digest_of(model_uri, client.tracking_uri)}
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if not _is_not_found(error):
            raise
        client.create_registered_model(name, description="Managed by mlops-platform.")
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return client.get_model_version(name, version.version)


def apply_decision(
    client: MlflowClient, name: str, version: str, decision: PromotionDecision,
    previous_version: str | None,
) -> None:
    """Move `champion` (recording when) or mark the version `challenger`, tagging why."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, "mlops.promotion", decision.reason)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "mlops.champion_from", now)
        if previous_version is not None:
            client.set_model_version_tag(name, previous_version, "mlops.champion_until", now)
        return
    client.set_registered_model_alias(name, CHALLENGER, version)


def champion_history(client: MlflowClient, name: str) -> list[dict[str, str | None]]:
    """Every version that held `champion`, oldest first, with when it took and lost it."""
    versions = client.search_model_versions(f"name = '{name}'")
    held = [
        {
            "version": v.version,
            "from": v.tags.get("mlops.champion_from"),
            "until": v.tags.get("mlops.champion_until"),
        }
        for v in versions
        if "mlops.champion_from" in v.tags
    ]
    return sorted(held, key=lambda h: h["from"] or "")
