"""Background services, run for real with a cheap process (python -m http.server) in tmp_path.

The services are started as children of the test process. A child that exits stays a zombie
until its parent reaps it; in production `mlops up` exits and init reaps, so these tests reap
their own children in a thread, except the test of stopping without one.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from polling import wait_for

from infra import services as services_module
from infra.errors import PlatformError
from infra.local import local_platform
from infra.profiles import platform_from_settings
from infra.services import (
    Service,
    is_healthy,
    read_state,
    start_services,
    stop_services,
    write_state,
)
from infra.settings import Settings

START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def make_service(port: int, name: str = "python-http", argv: tuple[str, ...] | None = None):
    """A service whose name's first word ('python') appears in its command line."""
    url = f"http://127.0.0.1:{port}"
    return Service(
        name=name,
        argv=argv or (sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
        host="127.0.0.1",
        port=port,
        url=url,
        health_url=f"{url}/",
        port_variable="MLOPS_TEST_PORT",
    )


def pid_of(home: Path, name: str) -> int:
    return int((home / "run" / f"{name}.pid").read_text().split()[0])


def reap_in_background(pid: int) -> None:
    """Wait for our child in a thread so that, once it exits, it is gone (not a zombie)."""

    def wait() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    threading.Thread(target=wait, daemon=True).start()


def kill_own_child(pid: int) -> None:
    """Kill and reap a process group this test started, if it is still our running child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return  # not our child, or already reaped
    if done == 0:
        os.killpg(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # the reaper thread got there first


@pytest.fixture
def home(tmp_path):
    """MLOPS_HOME for one test; any service still recorded there is killed afterwards."""
    home = tmp_path / "home"
    yield home
    for pid_file in (home / "run").glob("*.pid") if (home / "run").exists() else ():
        try:
            kill_own_child(int(pid_file.read_text().split()[0]))
        except ValueError:
            pass


@pytest.fixture
def service() -> Service:
    return make_service(free_port())


@pytest.fixture
def running(service, home) -> Service:
    """The http.server service, started and healthy."""
    start_services([service], home, START_TIMEOUT_S)
    reap_in_background(pid_of(home, service.name))
    return service


def test_start_services_starts_a_healthy_process(service, home):
    """Given a stopped service, when started, then it answers on its health URL and its pid and
    log are recorded."""
    notes = start_services([service], home, START_TIMEOUT_S)
    pid = pid_of(home, service.name)
    reap_in_background(pid)

    assert notes == [f"python-http: started (pid {pid}) at {service.url}"]
    assert is_healthy(service.health_url)
    assert (home / "logs" / "python-http.log").is_file()


def test_second_start_says_already_running(running, home):
    """Given a running service, when started again, then it says so and starts nothing."""
    pid = pid_of(home, running.name)

    notes = start_services([running], home, START_TIMEOUT_S)

    assert notes == [f"python-http: already running (pid {pid}) at {running.url}"]
    assert pid_of(home, running.name) == pid


def test_stop_services_stops_it_and_frees_the_port(running, home):
    """Given a running service, when stopped, then it no longer answers and its port is free."""
    pid = pid_of(home, running.name)

    notes = stop_services([running], home, grace_s=10)

    assert notes == [f"python-http: stopped (pid {pid})"]
    assert not is_healthy(running.health_url)
    assert port_is_free(running.port)
    assert not (home / "run" / "python-http.pid").exists()


def test_stop_services_when_nothing_runs_says_not_running(service, home):
    """Given no pid file, when stopped, then it says 'not running'."""
    assert stop_services([service], home) == ["python-http: not running"]


def test_stale_pid_file_is_removed_with_a_note(service, home):
    """Given a pid file naming a process that does not exist, when started, then the file is
    replaced and a note says the stale one was removed."""
    stale = 999_999
    assert not Path(f"/proc/{stale}").exists()
    (home / "run").mkdir(parents=True)
    (home / "run" / "python-http.pid").write_text(str(stale))

    notes = start_services([service], home, START_TIMEOUT_S)
    reap_in_background(pid_of(home, service.name))

    assert notes[0] == "python-http: removed a stale pid file"
    assert notes[1].startswith("python-http: started (pid ")
    assert pid_of(home, service.name) != stale


def test_taken_port_names_the_port_and_its_variable(service, home):
    """Given another program listening on the port, when started, then PlatformError names the
    port and the variable that moves it, and nothing is spawned."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", service.port))
        blocker.listen()

        with pytest.raises(PlatformError) as caught:
            start_services([service], home, START_TIMEOUT_S)

    assert f"port {service.port}" in str(caught.value)
    assert "MLOPS_TEST_PORT" in str(caught.value)
    assert not (home / "run" / "python-http.pid").exists()


def test_process_exiting_while_starting_reports_its_last_log_line(home):
    """Given a process that prints 'boom' and exits at once, when started, then PlatformError
    says it exited while starting and quotes the log's last line."""
    crashing = make_service(
        free_port(),
        name="python-boom",
        argv=(sys.executable, "-c", 'import sys; print("boom"); sys.exit(3)'),
    )

    with pytest.raises(PlatformError) as caught:
        start_services([crashing], home, START_TIMEOUT_S)

    assert "python-boom exited while starting: boom" in str(caught.value)
    assert "python-boom.log" in str(caught.value)


def test_stop_services_leaves_an_unrelated_process_alone(home):
    """Given an 'mlflow' pid file naming a live process that is not an mlflow server, when
    stopped, then that process is left running and the service is reported not running."""
    unrelated = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        (home / "run").mkdir(parents=True)
        (home / "run" / "mlflow.pid").write_text(str(unrelated.pid))

        notes = stop_services([make_service(free_port(), name="mlflow")], home, grace_s=1)

        assert notes == ["mlflow: not running"]
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


def test_stop_services_returns_promptly_when_the_caller_started_it(service, home):
    """Given a service started by this process (no reaper), when stopped with a 3 s grace,
    then stop returns as soon as the process has exited, well before the grace runs out."""
    start_services([service], home, START_TIMEOUT_S)
    pid = pid_of(home, service.name)

    started = time.monotonic()
    try:
        stop_services([service], home, grace_s=3)
        elapsed = time.monotonic() - started
    finally:
        kill_own_child(pid)  # reap it

    assert elapsed < 2


def test_start_does_not_take_a_child_still_in_exec_for_a_dead_one(home, monkeypatch):
    """Given a live child ('sleep 30') and a health check that fails at once (so liveness is
    checked right after the spawn), when started with no time to wait, up to 100 times, then
    every attempt says it did not become healthy and none says it exited."""
    monkeypatch.setattr(services_module, "is_healthy", lambda url, timeout_s=2.0: False)
    sleeper = make_service(free_port(), name="sleep-server", argv=("sleep", "30"))
    claims = []
    for _ in range(100):
        with pytest.raises(PlatformError) as caught:
            start_services([sleeper], home, timeout_s=0)
        kill_own_child(pid_of(home, sleeper.name))
        (home / "run" / "sleep-server.pid").unlink()
        if "exited while starting" in str(caught.value):
            claims.append(str(caught.value))
            break

    assert claims == []


# --- state and platform -----------------------------------------------------------------------


def test_state_round_trips(tmp_path):
    """Given a state written to MLOPS_HOME, when read, then the same mapping comes back."""
    write_state(tmp_path, {"profile": "local", "services": {"mlflow": {"port": 5001}}})

    assert read_state(tmp_path) == {"profile": "local", "services": {"mlflow": {"port": 5001}}}


def test_missing_state_reads_as_none(tmp_path):
    """Given no state file, when read, then None comes back."""
    assert read_state(tmp_path) is None


def test_corrupt_state_raises_platform_error_naming_the_file(tmp_path):
    """Given state.json that is not JSON, when read, then PlatformError names the file."""
    (tmp_path / "state.json").write_text("{not json")

    with pytest.raises(PlatformError, match="state.json is not valid JSON"):
        read_state(tmp_path)


def test_platform_uses_the_ports_a_previous_up_recorded(tmp_path):
    """Given a state recording ports 5055 and 4255, then the platform uses those ports."""
    write_state(tmp_path, local_platform(tmp_path, "127.0.0.1", 5055, 4255).state())
    settings = Settings(home=tmp_path, mlflow_port=5000, prefect_port=4200)

    platform = platform_from_settings(settings)

    assert platform.mlflow_url == "http://127.0.0.1:5055"
    assert platform.client_environment() == {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5055",
        "PREFECT_API_URL": "http://127.0.0.1:4255/api",
        "MLOPS_EVIDENTLY_URL": "http://127.0.0.1:8000",
    }


def test_unknown_profile_raises_platform_error(tmp_path):
    """Given a profile that does not exist, then PlatformError names it."""
    with pytest.raises(PlatformError, match="unknown profile 'huge'"):
        platform_from_settings(Settings(home=tmp_path), profile="huge")


@pytest.mark.integration
def test_down_with_a_truncated_state_file_still_stops_what_up_started(home, tmp_path):
    """Given a running service and a state.json cut off mid-write, `mlops down` says the state
    is unreadable, stops the process its pid file names, and exits 0."""
    running = make_service(free_port())
    start_services([running], home, START_TIMEOUT_S)
    pid = pid_of(home, running.name)
    reap_in_background(pid)
    write_state(home, {"profile": "local", "services": {running.name: {"port": running.port}}})
    text = (home / "state.json").read_text()
    (home / "state.json").write_text(text[: len(text) // 2])

    done = subprocess.run([str(Path(sys.executable).parent / "mlops"), "down"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "MLOPS_HOME": str(home)})

    assert done.returncode == 0, done.stderr
    assert "state.json is not valid JSON" in done.stderr
    assert f"python-http: stopped (pid {pid})" in done.stderr
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)
    assert not (home / "run" / "python-http.pid").exists()


def test_a_scrubbed_environment_keeps_the_basics_and_what_is_given(monkeypatch):
    """Given secrets and settings in this process's environment, a scrubbed child environment
    holds PATH and HOME, what it was given, and nothing else of this process's."""
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-password")
    monkeypatch.setenv("MLOPS_DATABASE_URL", "postgresql://postgres:pw@db:5432")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "mlops:secret")

    env = services_module.scrubbed_environment({"MLFLOW_TRACKING_PASSWORD": "serve-password"})

    assert env["MLFLOW_TRACKING_PASSWORD"] == "serve-password"
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    assert "MLOPS_DATABASE_URL" not in env and "PREFECT_API_AUTH_STRING" not in env
    assert set(env) <= set(services_module._BASIC_VARIABLES) | {"MLFLOW_TRACKING_PASSWORD"}


def test_evidently_listens_on_loopback_with_its_workspace_under_home(tmp_path):
    """Given the local platform with an Evidently port, then Evidently's UI is a service bound
    to 127.0.0.1, health-checked on /api/version, its workspace under MLOPS_HOME, no telemetry,
    and clients (the runner, the CLI) are told where it is."""
    platform = local_platform(tmp_path, "127.0.0.1", 5055, 4255, 4280, 8011)

    evidently = next(s for s in platform.services if s.name == "evidently")
    runner = next(s for s in platform.services if s.name == "runner")

    assert evidently.argv[1:] == ("ui", "--workspace", str(tmp_path.resolve() / "evidently"),
                                  "--host", "127.0.0.1", "--port", "8011")
    assert evidently.health_url == "http://127.0.0.1:8011/api/version" and evidently.wave == 0
    assert evidently.env["DO_NOT_TRACK"] == "1" and "EVIDENTLY_SECRET" in evidently.unset_env
    assert platform.evidently_url == runner.env["MLOPS_EVIDENTLY_URL"] == "http://127.0.0.1:8011"
    assert platform.client_environment()["MLOPS_EVIDENTLY_URL"] == "http://127.0.0.1:8011"
    assert platform.state()["evidently_url"] == "http://127.0.0.1:8011"


def test_a_service_spawned_early_starts_with_the_first_wave_and_is_awaited_in_its_own(home):
    """Given a first-wave service and two second-wave ones, one spawned early: when the
    second wave is about to start (the first answers), the early one is already running
    and the other not yet; `up` then reports both started and healthy."""
    first = make_service(free_port(), name="python-first")
    early = replace(make_service(free_port(), name="python-early"), wave=1, spawn_early=True)
    late = replace(make_service(free_port(), name="python-late"), wave=1)
    seen = {}

    def before_wave(wave: int) -> None:
        if wave == 1:
            seen.update({s.name: (home / "run" / f"{s.name}.pid").exists() for s in (early, late)})

    notes = start_services([first, early, late], home, START_TIMEOUT_S, before_wave=before_wave)
    for service in (first, early, late):
        reap_in_background(pid_of(home, service.name))

    assert seen == {"python-early": True, "python-late": False}
    assert [n.split(":")[0] for n in notes] == ["python-first", "python-early", "python-late"]
    assert all(is_healthy(s.health_url) for s in (first, early, late))


def test_an_early_service_is_not_spawned_when_the_first_wave_cannot_start(home):
    """Given a first-wave service whose port is taken, `up` fails naming that port, and the
    service that would have been spawned early beside it was never started."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        first = make_service(taken.getsockname()[1], name="python-first")
        early = replace(make_service(free_port(), name="python-early"), wave=1, spawn_early=True)
        with pytest.raises(PlatformError, match="is taken by another program"):
            start_services([first, early], home, START_TIMEOUT_S)
    finally:
        taken.close()

    assert not (home / "run" / "python-early.pid").exists()


# A server that, on SIGTERM, marks that it got it, waits up to 5 s for the other one's mark,
# then writes whether it saw it and exits.
WAITS_FOR_THE_OTHER_ON_SIGTERM = """
import http.server, os, pathlib, signal, sys, time
port, mine, other, result = int(sys.argv[1]), *map(pathlib.Path, sys.argv[2:5])

def stop(*_):
    mine.touch()
    deadline = time.monotonic() + 5
    while not other.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    result.write_text("together" if other.exists() else "alone")
    os._exit(0)

signal.signal(signal.SIGTERM, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_the_services_of_one_wave_are_stopped_together(home, tmp_path):
    """Given two services of one wave, each of which, told to stop, waits for the other to be
    told too before it exits, when stopped, then each saw the other's stop: neither waited
    for the other to finish (a platform's four servers take ~2 s each to shut down)."""
    script = tmp_path / "server.py"
    script.write_text(WAITS_FOR_THE_OTHER_ON_SIGTERM)
    marks = {name: tmp_path / f"{name}.stopping" for name in ("python-a", "python-b")}
    results = {name: tmp_path / f"{name}.result" for name in marks}
    pair = [make_service(port, name=name, argv=(sys.executable, str(script), str(port), str(marks[name]),
                                                str(marks[other]), str(results[name])))
            for (name, other), port in zip((("python-a", "python-b"), ("python-b", "python-a")),
                                           (free_port(), free_port()), strict=True)]
    start_services(pair, home, START_TIMEOUT_S)
    pids = {name: pid_of(home, name) for name in marks}
    for pid in pids.values():
        reap_in_background(pid)

    notes = stop_services(pair, home, grace_s=10)

    assert [results[name].read_text() for name in marks] == ["together", "together"]
    assert notes == [f"{name}: stopped (pid {pid})" for name, pid in pids.items()]


# A server that ignores SIGTERM.
IGNORES_SIGTERM = """
import http.server, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
handler = http.server.SimpleHTTPRequestHandler
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""

# A server that, on SIGTERM, waits up to 10 s for the process a pid file names to be gone,
# then writes whether it was and exits.
OUTWAITS_ANOTHER_ON_SIGTERM = """
import http.server, os, pathlib, signal, sys, time
port, pid_file, result = int(sys.argv[1]), *map(pathlib.Path, sys.argv[2:4])

def gone(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True

def stop(*_):
    pid = int(pid_file.read_text().split()[0])
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    result.write_text("gone" if gone(pid) else "still there")
    os._exit(0)

signal.signal(signal.SIGTERM, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_each_service_is_killed_after_its_own_grace(home, tmp_path):
    """Given, in one wave, a server that ignores SIGTERM with a 0.5 s grace and one with the
    default 15 s grace that, told to stop, waits up to 10 s for the first to be gone, when
    stopped, then the first was killed while the second still waited, and both are gone
    (ports free) when stop returns."""
    (tmp_path / "stubborn.py").write_text(IGNORES_SIGTERM)
    (tmp_path / "patient.py").write_text(OUTWAITS_ANOTHER_ON_SIGTERM)
    result = tmp_path / "patient.result"
    ports = free_port(), free_port()
    stubborn = replace(make_service(ports[0], name="python-stubborn",
                                    argv=(sys.executable, str(tmp_path / "stubborn.py"), str(ports[0]))),
                       stop_grace_s=0.5)
    patient = make_service(ports[1], name="python-patient", argv=(
        sys.executable, str(tmp_path / "patient.py"), str(ports[1]),
        str(home / "run" / "python-stubborn.pid"), str(result)))
    start_services([stubborn, patient], home, START_TIMEOUT_S)
    pids = [pid_of(home, s.name) for s in (stubborn, patient)]

    stop_services([stubborn, patient], home)

    assert result.read_text() == "gone"
    assert not any(services_module._group_runs(pid) for pid in pids)
    assert all(port_is_free(port) for port in ports)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_group_of_exited_processes_not_yet_reaped_is_not_running():
    """Given a process group whose processes exited but were not reaped (zombies: what a
    stopped service's orphans are until init reaps them), then it does not count as running;
    a group with one live process does, also when its leader is a zombie."""
    exited = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    sleeping = subprocess.Popen(["sleep", "30"], start_new_session=True)
    leader_gone = subprocess.Popen(["sh", "-c", "sleep 30 & exit 0"], start_new_session=True)
    try:
        for child in (exited, leader_gone):
            assert wait_for(lambda c=child: _state(c.pid) == "Z", timeout_s=10)
        os.killpg(exited.pid, 0)  # the zombie's group still "exists" for kill()

        assert services_module._group_runs(exited.pid) is False
        assert services_module._group_runs(sleeping.pid) is True
        assert services_module._group_runs(leader_gone.pid) is True
    finally:
        for child in (exited, sleeping, leader_gone):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()


def test_start_notes_are_the_last_starts_lines_one_per_line(tmp_path):
    """A service's start notes read back a line each (a message over several lines is one),
    and a later start's replace them."""
    from infra.services import start_notes, write_start_notes

    assert start_notes(tmp_path, "runner") == []
    write_start_notes(tmp_path, "runner", ["flow run a was left RUNNING", "could not:\n  twice"])
    assert start_notes(tmp_path, "runner") == ["flow run a was left RUNNING", "could not: twice"]
    write_start_notes(tmp_path, "runner", [])
    assert start_notes(tmp_path, "runner") == []
    assert list((tmp_path / "run").glob("*.pid")) == []  # nothing `mlops down` would take for a service
