"""The events our flows emit to Prefect, which automations (retraining, alerts) act on.

Each carries the links a person needs (the MLflow run or model version, the Prefect flow
run), computed here where the flow knows them: an automation's message only quotes them.
Emitting queues the event for Prefect's events client: nothing here waits on a webhook.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for

from flows.links import model_version_url

if TYPE_CHECKING:  # the gate's result only passes through: no MLflow import for the CLI
    from registry.gate import GateResult

DRIFT_EVENT = "mlops.drift.detected"
PROMOTION_EVENT = "mlops.champion.promoted"
# Why a check triggered retraining ("drift" or "quality"): a label on the event's resource,
# so that automations can tell the two apart.
REASON_LABEL = "mlops.reason"
# What makes one event of a kind (an alert is sent once per check, per version).
CHECK_LABEL = "mlops.check"
VERSION_LABEL = "mlops.version"
# When champion moved: one version can take it several times (a rollback, a promotion back).
MOVE_LABEL = "mlops.move"


def model_resource_id(name: str) -> str:
    return f"mlops.model.{name}"


def retraining_resource(name: str, reason: str, check_run_id: str) -> dict[str, str]:
    """The resource of `mlops.drift.detected`: the model, why, and which check."""
    return {"prefect.resource.id": model_resource_id(name), REASON_LABEL: reason,
            CHECK_LABEL: check_run_id}


def flow_run_url() -> str:
    """The Prefect UI page of the flow run this code runs in ("" outside a flow run)."""
    # Not prefect.runtime's flow_run.ui_url: its /flow-runs/... path is not a page of the UI.
    run_id = flow_run.get_id()
    return (url_for("flow-run", obj_id=run_id, url_type="ui") or "") if run_id else ""


def announce_promotion(tracking_uri: str, name: str, gate: "GateResult", trigger: str,
                       run_url: str) -> None:
    """`mlops.champion.promoted` for a version the gate made champion."""
    announce_champion(tracking_uri, name, ChampionMove(
        gate.version, gate.previous_champion, gate.decision.reason, "gate", trigger), run_url)


@dataclass(frozen=True)
class ChampionMove:
    """Who gave `champion` to which version, and why."""

    version: str
    previous: str | None
    reason: str
    by: str  # "gate" or the person
    trigger: str  # what set it off: manual, drift, quality, promote, rollback


def announce_champion(tracking_uri: str, name: str, move: ChampionMove, run_url: str) -> None:
    """`mlops.champion.promoted`: a version took `champion` (from the gate or a person)."""
    emit_event(
        event=PROMOTION_EVENT,
        resource={"prefect.resource.id": model_resource_id(name), VERSION_LABEL: move.version,
                  MOVE_LABEL: datetime.now(UTC).isoformat(timespec="milliseconds")},
        payload={
            "model": name,
            "version": move.version,
            "previous": move.previous,
            "reason": move.reason,
            "by": move.by,
            "trigger": move.trigger,
            "mlflow_run_url": run_url,
            "model_version_url": model_version_url(tracking_uri, name, move.version),
            "flow_run_url": flow_run_url(),
        },
    )
