"""Flow runs beat, and the automation that crashes a run whose beats stopped (no server)."""

from pathlib import Path

from flows.heartbeats import HEARTBEAT_EVENT, SILENCE_S, zombie_automation
from infra.clients import connection
from infra.local import local_platform
from infra.platform import HEARTBEAT_SECONDS
from infra.settings import Settings


def test_every_process_that_runs_flows_is_told_to_beat(tmp_path: Path):
    """The runner (and its flow-run processes), and the CLI once connected (its own flows,
    and the workers it starts), beat every HEARTBEAT_SECONDS."""
    platform = local_platform(tmp_path, "127.0.0.1", 5001, 4201, 4281)
    runner = next(s for s in platform.services if s.name == "runner")
    cli = connection(platform, Settings(home=tmp_path)).variables

    for env in (runner.env, cli):
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)


def test_a_run_is_crashed_only_after_several_missed_beats_and_prefects_default_interval():
    """A run beating at Prefect's default 180 s (started outside the platform) is never crashed
    while alive; one of ours is crashed after ten missed beats."""
    assert SILENCE_S >= 3 * HEARTBEAT_SECONDS and SILENCE_S > 180


def test_the_automation_is_prefects_documented_zombie_detector():
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger

    automation = zombie_automation()
    trigger = ServerTrigger.model_validate(automation.trigger.model_dump())

    assert trigger.posture == "Proactive" and trigger.for_each == {"prefect.resource.id"}
    assert trigger.starts_after(HEARTBEAT_EVENT) and trigger.expects(HEARTBEAT_EVENT)
    assert all(trigger.expects(f"prefect.flow-run.{s}") for s in ("Completed", "Failed", "Crashed"))
    assert not trigger.expects("prefect.flow-run.Running")
    assert trigger.within.total_seconds() == SILENCE_S
    assert [(a.type, a.state.value) for a in automation.actions] == [("change-flow-run-state", "CRASHED")]
