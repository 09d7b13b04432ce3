"""The messages alert automations send, rendered as Prefect's server renders them (no server):
each names the kind, the model, the version, the reason and the MLflow and Prefect links."""

import uuid
from datetime import UTC, datetime

import pytest
from prefect.server.events.jinja_filters import all_filters
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.schemas.core import Deployment, Flow, FlowRun
from prefect.server.utilities.user_templates import (
    register_user_template_filters,
    render_user_template_sync,
    validate_user_template,
)
from prefect.settings import PREFECT_UI_URL, temporary_settings

from flows.alerts import message, trigger
from flows.events import DRIFT_EVENT, PROMOTION_EVENT

MLFLOW = "http://127.0.0.1:5000"


def _event(name: str, resource: dict, payload: dict | None = None) -> ReceivedEvent:
    return ReceivedEvent(occurred=datetime.now(UTC), event=name, resource=resource,
                         payload=payload or {}, id=uuid.uuid4())


def _render(kind: str, **context) -> str:
    template = message(kind, MLFLOW)
    validate_user_template(template)
    register_user_template_filters(all_filters)
    with temporary_settings({PREFECT_UI_URL: "http://127.0.0.1:4200"}):
        return render_user_template_sync(template, context)


@pytest.mark.parametrize("kind", ["drift", "quality"])
def test_a_triggered_check_names_kind_model_version_reason_and_links(kind):
    event = _event(DRIFT_EVENT, {"prefect.resource.id": "mlops.model.wine", "mlops.reason": kind}, {
        "model": "wine", "champion_version": "3", "reason": "2 of the last 3 windows drifted",
        "mlflow_url": f"{MLFLOW}/#/experiments/2/runs/abc", "flow_run_url": "http://p/runs/flow-run/x"})

    text = _render(kind, event=event)

    assert text.splitlines() == [
        f"mlops {kind} alert: wine v3: retraining triggered",
        "reason: 2 of the last 3 windows drifted",
        f"MLflow: {MLFLOW}/#/experiments/2/runs/abc",
        "Prefect: http://p/runs/flow-run/x",
    ]


@pytest.mark.parametrize("previous, was", [("2", "was v2"), (None, "was none")])
def test_a_promotion_names_the_new_and_previous_champion(previous, was):
    event = _event(PROMOTION_EVENT, {"prefect.resource.id": "mlops.model.wine"}, {
        "model": "wine", "version": "4", "previous": previous, "reason": "wins: roc_auc 0.9 vs 0.8",
        "trigger": "drift", "mlflow_run_url": "M/run", "model_version_url": "M/models/wine/versions/4",
        "flow_run_url": "P/runs/flow-run/y"})

    text = _render("promotion", event=event)

    assert f"wine v4 is the new champion ({was})" in text
    assert "reason: wins: roc_auc 0.9 vs 0.8 (trigger: drift, by gate)" in text
    assert "MLflow: M/models/wine/versions/4 run: M/run" in text and "Prefect: P/runs/flow-run/y" in text


@pytest.mark.parametrize("deployment, shown", [(True, "deployment: train"),
                                               (False, "deployment: none, run from the command line")])
def test_a_failure_names_the_run_its_flow_model_and_links(deployment, shown):
    flow = Flow(id=uuid.uuid4(), name="train")
    run = FlowRun(id=uuid.uuid4(), name="brave-fox", flow_id=flow.id,
                  parameters={"params": {"experiment": "wine", "data": "bad.csv"}})
    event = _event("prefect.flow-run.Failed", {
        "prefect.resource.id": f"prefect.flow-run.{run.id}", "prefect.state-name": "Failed",
        "prefect.state-message": "Flow run encountered an exception: InputError: column 'y' missing"})
    served = Deployment(id=uuid.uuid4(), name="train", flow_id=flow.id) if deployment else None
    context = {"event": event, "flow_run": run, "flow": flow, "deployment": served}

    text = _render("failure", **context)

    assert text.startswith("mlops failure alert: flow run brave-fox of train Failed")
    assert shown in text and "model: wine, version: none" in text
    assert "reason: Flow run encountered an exception: InputError: column 'y' missing" in text
    assert f"MLflow: {MLFLOW}/#/experiments?workflowType=machine_learning\n" in text
    assert f"Prefect: http://127.0.0.1:4200/runs/flow-run/{run.id}" in text


@pytest.mark.parametrize("kind, event, labels, fires", [
    ("drift", DRIFT_EVENT, {"mlops.reason": "drift"}, True),
    ("drift", DRIFT_EVENT, {"mlops.reason": "quality"}, False),
    ("quality", DRIFT_EVENT, {"mlops.reason": "quality"}, True),
    ("promotion", PROMOTION_EVENT, {}, True),
    ("promotion", DRIFT_EVENT, {"mlops.reason": "drift"}, False),
])
def test_each_kind_listens_to_its_own_events(kind, event, labels, fires):
    """As the server decides it: its own trigger model's `covers`."""
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger

    server_trigger = ServerTrigger.model_validate(trigger(kind).model_dump())

    resource = {"prefect.resource.id": "mlops.model.wine", **labels}
    assert server_trigger.covers(_event(event, resource)) is fires


@pytest.mark.parametrize("state, fires", [("Failed", True), ("Crashed", True), ("Completed", False),
                                           ("Cancelled", False)])
def test_failure_listens_to_failed_and_crashed_flow_runs(state, fires):
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger

    server_trigger = ServerTrigger.model_validate(trigger("failure").model_dump())
    event = _event(f"prefect.flow-run.{state}", {"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}"})

    assert server_trigger.covers(event) is fires
