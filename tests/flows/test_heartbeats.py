"""Flow runs beat, and the automation that crashes a run whose beats stopped (no server)."""

from pathlib import Path

import pytest

from flows.heartbeats import HEARTBEAT_EVENT, crash_message, zombie_automation
from infra.clients import connection
from infra.errors import PlatformError
from infra.local import local_platform
from infra.platform import HEARTBEAT_SECONDS
from infra.settings import Settings, load_settings


def test_every_process_that_runs_flows_is_told_to_beat(tmp_path: Path):
    """The runner (and its flow-run processes), and the CLI once connected (its own flows,
    and the workers it starts), beat every HEARTBEAT_SECONDS."""
    platform = local_platform(tmp_path, "127.0.0.1", 5001, 4201, 4281)
    runner = next(s for s in platform.services if s.name == "runner")
    cli = connection(platform, Settings(home=tmp_path)).variables

    for env in (runner.env, cli):
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)


def test_by_default_a_run_is_crashed_only_after_several_missed_beats_and_prefects_interval():
    """A run beating at Prefect's default 180 s (started outside the platform) is never crashed
    while alive; one of ours is crashed after ten missed beats."""
    silence = Settings().heartbeat_silence_s

    assert silence >= 3 * HEARTBEAT_SECONDS and silence > 180


def test_the_silence_is_a_setting(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLOPS_HEARTBEAT_SILENCE_S", str(2 * HEARTBEAT_SECONDS))

    assert load_settings(tmp_path / ".env").heartbeat_silence_s == 2 * HEARTBEAT_SECONDS


@pytest.mark.parametrize("value", [str(2 * HEARTBEAT_SECONDS - 1), "0", "-300", "five"])
def test_a_silence_shorter_than_two_beats_is_refused_in_one_line(monkeypatch, tmp_path: Path, value):
    """One late beat must not get a living run crashed; the error names the variable."""
    monkeypatch.setenv("MLOPS_HEARTBEAT_SILENCE_S", value)

    with pytest.raises(PlatformError) as refused:
        load_settings(tmp_path / ".env")

    message = str(refused.value)
    assert message.startswith("MLOPS_HEARTBEAT_SILENCE_S: ") and "\n" not in message


@pytest.mark.parametrize("silence", [2 * HEARTBEAT_SECONDS, 300])
def test_the_automation_is_prefects_documented_zombie_detector(silence):
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger

    automation = zombie_automation(silence)
    trigger = ServerTrigger.model_validate(automation.trigger.model_dump())

    assert trigger.posture == "Proactive" and trigger.for_each == {"prefect.resource.id"}
    assert trigger.starts_after(HEARTBEAT_EVENT) and trigger.expects(HEARTBEAT_EVENT)
    assert all(trigger.expects(f"prefect.flow-run.{s}") for s in ("Completed", "Failed", "Crashed"))
    # A claimed run (Pending) must start within the silence; a running one must beat.
    assert trigger.starts_after("prefect.flow-run.Pending") and trigger.expects("prefect.flow-run.Running")
    assert not trigger.starts_after("prefect.flow-run.Running")
    assert not trigger.expects("prefect.flow-run.Pending") and not trigger.expects("prefect.flow-run.Paused")
    assert trigger.within.total_seconds() == silence
    assert [(a.type, a.state.value, a.message) for a in automation.actions] == [
        ("change-flow-run-state", "CRASHED", crash_message(silence))]


def test_mlops_up_refuses_a_short_silence_in_one_line_and_starts_nothing(tmp_path: Path):
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    short = 2 * HEARTBEAT_SECONDS - 1
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_HEARTBEAT_SILENCE_S": str(short)}

    done = subprocess.run([str(Path(sys.executable).parent / "mlops"), "up"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)

    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: MLOPS_HEARTBEAT_SILENCE_S: must be at least ")
    assert f"(got {short})" in line
    assert not home.exists()


def test_a_flow_run_in_process_ends_without_waiting_for_its_heartbeat_thread(platform, monkeypatch):
    """Given heartbeats every 30 s (their thread asleep when the flow ends), a flow run in a
    process that called end_flows_without_waiting_for_their_heartbeats returns while its
    heartbeat thread still sleeps (Prefect's own engine joins it: up to a second), and that
    thread then stops by itself."""
    import threading

    import prefect.flow_engine
    from polling import wait_for
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.heartbeats import end_flows_without_waiting_for_their_heartbeats

    monkeypatch.setattr(prefect.flow_engine, "_send_heartbeats", prefect.flow_engine._send_heartbeats)
    end_flows_without_waiting_for_their_heartbeats()

    @flow(name="it-heartbeat-end")
    def quick() -> int:
        return 1

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        quick()  # Prefect's own background threads start with the first flow of a process
        before = set(threading.enumerate())
        assert quick() == 1
        beating = [t for t in threading.enumerate() if t not in before and t.is_alive()]

    assert beating, "the heartbeat thread was joined before the flow returned"
    assert wait_for(lambda: not any(t.is_alive() for t in beating), timeout_s=10)
