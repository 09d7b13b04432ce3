"""Alerts as Prefect notification blocks and automations: one message per event.

An alert is one notification block (Prefect's Slack block for a Slack webhook, otherwise a
custom webhook that POSTs `{"text": ...}`) and one automation per event kind it is on:
- drift, quality: a check that triggered retraining (`mlops.drift.detected`, told apart by
  the resource label `mlops.reason`);
- promotion: a new champion, from the gate or a person's `mlops promote`/`rollback`
  (`mlops.champion.promoted`);
- failure: a flow run that failed or crashed (Prefect's own `prefect.flow-run.*` events).
The automations run in the Prefect server, which sends the message: a flow only emits an
event, so a webhook that does not answer never fails or delays it.
Prefect 3.8 allows private and loopback addresses (`allow_private_urls` defaults to true
on both blocks), so a webhook on this machine works too.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from experiments.errors import InputError
from flows.events import (
    CHECK_LABEL,
    DRIFT_EVENT,
    MOVE_LABEL,
    PROMOTION_EVENT,
    REASON_LABEL,
    VERSION_LABEL,
)
from flows.links import experiments_url
from flows.webhooks import KINDS, is_slack, mask_url

ALERT_TAG = "mlops.alert"
BLOCK_PREFIX = "mlops-alert-"
FAILED_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
# Prefect's server may hand one event to the triggers twice (seen: a flow run's Failed event
# fired an immediate automation twice, 1 s apart). A reactive trigger with a window fires on
# the first event of its bucket and ignores the rest of the window, so each trigger counts
# per event identity (the check, the version, the flow run) over this window.
ONCE_WITHIN = timedelta(minutes=5)

_RETRAINING = (
    "mlops __KIND__ alert: {{ event.payload.model }} v{{ event.payload.champion_version }}: "
    "retraining triggered\n"
    "reason: {{ event.payload.reason }}\n"
    "MLflow: {{ event.payload.mlflow_url }}\n"
    "Prefect: {{ event.payload.flow_run_url }}"
)
_PROMOTION = (
    "mlops promotion alert: {{ event.payload.model }} v{{ event.payload.version }} is the new "
    "champion (was {{ 'v' ~ event.payload.previous if event.payload.previous else 'none' }})\n"
    "reason: {{ event.payload.reason }} (trigger: {{ event.payload.trigger }}, by "
    "{{ event.payload.by or 'gate' }})\n"
    "MLflow: {{ event.payload.model_version_url }} run: {{ event.payload.mlflow_run_url }}\n"
    "Prefect: {{ event.payload.flow_run_url or 'none: moved with the mlops command' }}"
)
# The flow run, its flow and deployment are fetched by the server when it renders this; the
# MLflow address is the platform's, written in when the alert is added.
_FAILURE = (
    "{% set p = flow_run.parameters.params or {} %}"
    "mlops failure alert: flow run {{ flow_run.name }} of {{ flow.name }} "
    "{{ event.resource['prefect.state-name'] }} "
    "(deployment: {{ deployment.name or 'none, run from the command line' }})\n"
    "model: {{ p.model or p.experiment or 'unknown' }}, version: {{ p.version or 'none' }}\n"
    "reason: {{ (event.resource['prefect.state-message'] or 'not given') | truncate(400) }}\n"
    "MLflow: __MLFLOW__\n"
    "Prefect: {{ flow_run | ui_url }}"
)


@dataclass(frozen=True)
class Alert:
    id: str
    url: str  # masked
    on: tuple[str, ...]


def message(kind: str, mlflow_url: str) -> str:
    """The Jinja template of the message an automation of KIND sends."""
    if kind in ("drift", "quality"):
        return _RETRAINING.replace("__KIND__", kind)
    if kind == "promotion":
        return _PROMOTION
    return _FAILURE.replace("__MLFLOW__", experiments_url(mlflow_url))


def trigger(kind: str) -> EventTrigger:
    """Each matching event, once."""
    if kind in ("drift", "quality"):
        expect, match = {DRIFT_EVENT}, {"prefect.resource.id": "mlops.model.*", REASON_LABEL: kind}
        each = {"prefect.resource.id", CHECK_LABEL}
    elif kind == "promotion":
        expect, match = {PROMOTION_EVENT}, {"prefect.resource.id": "mlops.model.*"}
        each = {"prefect.resource.id", VERSION_LABEL, MOVE_LABEL}
    else:
        expect, match = set(FAILED_EVENTS), {"prefect.resource.id": "prefect.flow-run.*"}
        each = {"prefect.resource.id"}
    return EventTrigger(expect=expect, match=ResourceSpecification(match), for_each=each,
                        posture=Posture.Reactive, threshold=1, within=ONCE_WITHIN)


def notification_block(url: str, alert_id: str):
    """Slack's block for a Slack webhook; otherwise a JSON POST of {"text": ...}. The address
    is kept as a secret value, so Prefect's UI and API show it obfuscated."""
    if is_slack(url):
        return SlackWebhook(url=url)
    return CustomWebhookNotificationBlock(
        name=f"{BLOCK_PREFIX}{alert_id}", url="{{webhook_url}}", method="POST",
        # Prefect's server sends notifications two at a time: a webhook that never answers
        # holds one of the two for this long per message, delaying other alerts (not flows).
        json_data={"text": "{{body}}"}, secrets={"webhook_url": url}, timeout=5,
    )


def automation(alert_id: str, kind: str, block_id: uuid.UUID, mlflow_url: str,
               shown_url: str) -> AutomationCore:
    return AutomationCore(
        name=f"mlops alert {alert_id}: {kind}",
        description=f"Sends a message to {shown_url} on each {kind} event (`mlops alerts`).",
        tags=[ALERT_TAG, f"{ALERT_TAG}.id:{alert_id}", f"{ALERT_TAG}.kind:{kind}"],
        trigger=trigger(kind),
        actions=[SendNotification(block_document_id=block_id, subject=f"mlops {kind} alert",
                                  body=message(kind, mlflow_url))],
    )


def add_alert(client, url: str, kinds: tuple[str, ...], mlflow_url: str) -> str:
    """Create the block and one automation per kind; on any error, remove what was made."""
    alert_id = uuid.uuid4().hex[:8]
    block_id = notification_block(url, alert_id).save(name=f"{BLOCK_PREFIX}{alert_id}")
    made = []
    try:
        for kind in kinds:
            made.append(client.create_automation(
                automation(alert_id, kind, block_id, mlflow_url, mask_url(url))))
    except BaseException:
        for automation_id in made:
            client.delete_automation(automation_id)
        client.delete_block_document(block_id)
        raise
    return alert_id


def _tag_value(tags: list[str], key: str) -> str | None:
    prefix = f"{ALERT_TAG}.{key}:"
    return next((t.removeprefix(prefix) for t in tags if t.startswith(prefix)), None)


def _alert_automations(client) -> dict[str, list]:
    """Our alerts' automations, by alert id."""
    found: dict[str, list] = {}
    for item in client.read_automations():
        alert_id = _tag_value(item.tags, "id")
        if ALERT_TAG in item.tags and alert_id:
            found.setdefault(alert_id, []).append(item)
    return found


def _block_ids(automations) -> set[uuid.UUID]:
    return {a.block_document_id for item in automations for a in item.actions
            if isinstance(a, SendNotification)}


def _shown_url(client, block_ids: set[uuid.UUID]) -> str:
    for block_id in block_ids:
        document = client.read_block_document(block_id, include_secrets=True)
        data = document.data
        url = (data.get("secrets") or {}).get("webhook_url") or data.get("url")
        if url:
            return mask_url(url)
    return "(its notification block is gone)"


def list_alerts(client) -> list[Alert]:
    alerts = []
    for alert_id, items in sorted(_alert_automations(client).items()):
        kinds = {_tag_value(item.tags, "kind") for item in items}
        alerts.append(Alert(alert_id, _shown_url(client, _block_ids(items)),
                            tuple(k for k in KINDS if k in kinds)))
    return alerts


def remove_alert(client, alert_id: str) -> None:
    """Delete the alert's automations and its block; InputError if there is no such alert."""
    items = _alert_automations(client).get(alert_id)
    if not items:
        raise InputError(f"no alert with id {alert_id!r}; `mlops alerts list` shows them")
    for item in items:
        client.delete_automation(item.id)
    for block_id in _block_ids(items):
        client.delete_block_document(block_id)
