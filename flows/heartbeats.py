"""Prefect's documented automation that marks a flow run whose heartbeats stopped as Crashed.

A self-hosted Prefect server does not notice a flow-run process that died (killed, machine
gone): its run stays Running for good. Every flow run sends `prefect.flow-run.heartbeat`
(the platform sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY for the processes that run flows); this
automation expects the next heartbeat, or the run's end, within a silence of the last one
(the setting `heartbeat_silence_s`), and otherwise sets the run Crashed ("How to detect and
respond to zombie flows", Prefect docs). A run claimed by a worker (Pending) that died
before starting it never beats: it is expected to start, or end, within the same silence.
The runner installs it when it starts, idempotently.
"""

import inspect
import logging
from contextlib import contextmanager
from datetime import timedelta

import prefect.flow_engine
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

log = logging.getLogger(__name__)

NAME = "mlops: crash flow runs whose heartbeats stopped"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
PENDING_EVENT = "prefect.flow-run.Pending"
RUNNING_EVENT = "prefect.flow-run.Running"
ENDS = ("Completed", "Failed", "Cancelled", "Crashed")


def crash_message(silence_s: int) -> str:
    return f"no heartbeat for {silence_s} s: the process running it, or about to, is gone"


def zombie_automation(silence_s: int) -> AutomationCore:
    return AutomationCore(
        name=NAME,
        description=(f"Marks a flow run Crashed when no heartbeat came for {silence_s} s, or "
                     "it stayed Pending that long: its process is gone (installed by the "
                     "mlops runner)."),
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT, PENDING_EVENT},
            expect={HEARTBEAT_EVENT, RUNNING_EVENT, *(f"prefect.flow-run.{state}" for state in ENDS)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=silence_s),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=crash_message(silence_s),
        )],
    )


def _same(installed, wanted: AutomationCore) -> bool:
    keys = ("name", "description", "enabled", "trigger", "actions")
    return installed.model_dump(include=set(keys)) == wanted.model_dump(include=set(keys))


def install_zombie_automation(client, silence_s: int) -> str:
    """Create the automation, or bring the one there up to date (another silence); one copy only."""
    wanted = zombie_automation(silence_s)
    installed = client.read_automations_by_name(NAME)
    for extra in installed[1:]:
        client.delete_automation(extra.id)
    if not installed:
        client.create_automation(wanted)
        log.info("installed the automation %r", NAME)
        return "created"
    if _same(installed[0], wanted):
        return "unchanged"
    client.update_automation(installed[0].id, wanted)
    return "updated"


def end_flows_without_waiting_for_their_heartbeats() -> None:
    """Flows run in this process end without waiting out their heartbeat thread's sleep.

    Prefect's sync flow engine joins the thread that sends a run's heartbeats at the run's
    end, and that thread sleeps a second at a time between looks at its stop flag: every
    flow run in this process (each `mlops train`) waited 0 to 1 s at its end (0.14-0.62 s
    measured). Prefect's async engine leaves the daemon thread to stop by itself
    (`join_on_exit=False`); this has the sync engine do the same. The thread sends no
    heartbeat once the run's state is final, and stops at its next look."""
    original = prefect.flow_engine._send_heartbeats
    if getattr(original, "unjoined", False):
        return
    if "join_on_exit" not in inspect.signature(original).parameters:
        raise RuntimeError("prefect.flow_engine._send_heartbeats takes no join_on_exit in this "
                           "Prefect version: flows/heartbeats.py needs a look")

    @contextmanager
    def unjoined(engine, join_on_exit: bool = True):
        with original(engine, join_on_exit=False):
            yield

    unjoined.unjoined = True
    prefect.flow_engine._send_heartbeats = unjoined
