"""The events our flows emit to Prefect, which automations (retraining, alerts) act on.

Each carries the links a person needs (the MLflow run or model version, the Prefect flow
run), computed here where the flow knows them: an automation's message only quotes them.
Emitting queues the event for Prefect's events client: nothing here waits on a webhook.
"""

from typing import TYPE_CHECKING

from prefect.events import emit_event
from prefect.runtime import flow_run

if TYPE_CHECKING:  # the gate's result only passes through: no MLflow import for the CLI
    from registry.gate import GateResult

DRIFT_EVENT = "mlops.drift.detected"
PROMOTION_EVENT = "mlops.champion.promoted"
# Why a check triggered retraining ("drift" or "quality"): a label on the event's resource,
# so that automations can tell the two apart.
REASON_LABEL = "mlops.reason"


def model_resource_id(name: str) -> str:
    return f"mlops.model.{name}"


def flow_run_url() -> str:
    """The Prefect UI page of the flow run this code runs in ("" outside a flow run)."""
    return flow_run.ui_url or ""


def model_version_url(tracking_uri: str, name: str, version: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"


def announce_promotion(tracking_uri: str, name: str, gate: "GateResult", trigger: str,
                       run_url: str) -> None:
    """`mlops.champion.promoted` for a version the gate made champion."""
    emit_event(
        event=PROMOTION_EVENT,
        resource={"prefect.resource.id": model_resource_id(name)},
        payload={
            "model": name,
            "version": gate.version,
            "previous": gate.previous_champion,
            "reason": gate.decision.reason,
            "by": "gate",
            "trigger": trigger,
            "mlflow_run_url": run_url,
            "model_version_url": model_version_url(tracking_uri, name, gate.version),
            "flow_run_url": flow_run_url(),
        },
    )
