"""The events our flows emit to Prefect, which automations (retraining, alerts) act on.

Each carries the links a person needs (the MLflow run or model version, the Prefect flow
run), computed here where the flow knows them: an automation's message only quotes them.
Emitting queues the event for Prefect's events client: nothing here waits on a webhook.
"""

from typing import TYPE_CHECKING

from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for

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


def model_version_url(tracking_uri: str, name: str, version: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"


def announce_promotion(tracking_uri: str, name: str, gate: "GateResult", trigger: str,
                       run_url: str) -> None:
    """`mlops.champion.promoted` for a version the gate made champion."""
    emit_event(
        event=PROMOTION_EVENT,
        resource={"prefect.resource.id": model_resource_id(name), VERSION_LABEL: gate.version},
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
