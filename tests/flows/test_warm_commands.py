"""Flow commands started warm (flows/launch.py, flows/warm_commands.py): the same command,
output and exit status as cold, only for the environment and code the warm process has."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from environment import without_client_variables
from polling import wait_for

from flows.warm_start import (
    code_digest,
    environment_key,
    receive_message,
    send_message,
    socket_folder,
    socket_path,
    start_warm_process,
    stop_warm_process,
)

MLOPS = str(Path(sys.executable).parent / "mlops")
# Exit 99 when the command could not start warm (run_warm answered None).
WARM_ONLY = ("import sys\nfrom flows.launch import run_warm\n"
             "code = run_warm(['mlops', *sys.argv[1:]])\nsys.exit(99 if code is None else code)\n")


@contextmanager
def _environment(tmp_path: Path, **extra: str) -> Iterator[dict[str, str]]:
    """A user's environment whose sockets are in a folder of its own (short: a socket's path
    has 107 bytes at most); its warm process, if one was started, stopped after."""
    run = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))
    env = {**without_client_variables(os.environ), "XDG_RUNTIME_DIR": str(run),
           "MLOPS_HOME": str(tmp_path / "home"), **extra}
    try:
        yield env
    finally:
        stop_warm_process(env)
        shutil.rmtree(run, ignore_errors=True)


def _started(env: dict[str, str], tmp_path: Path) -> Path:
    start_warm_process(env, tmp_path / "warm.log")
    path = socket_path(env)
    assert wait_for(path.exists, timeout_s=120, interval_s=0.2), (tmp_path / "warm.log").read_text()
    return path


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("warm")
    with _environment(tmp_path) as env:
        _started(env, tmp_path)
        yield env


def _warm_only(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WARM_ONLY, *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_warm_command_prints_and_exits_as_the_cold_one(warm):
    """Given the warm process of an environment, `mlops train --help`, a bad option and the
    registry and scoring commands run warm (the caller imports nothing of the CLI), with the
    cold command's output and status."""
    for args in (("train", "--help"), ("train", "--no-such-option"), ("promote", "--help"),
                 ("predict", "--no-such-option")):
        started = _warm_only(warm, *args)
        cold = subprocess.run([MLOPS, *args], env={**warm, "MLOPS_WARM_START": "0"},
                              capture_output=True, text=True, timeout=120)

        assert started.returncode != 99, "it started cold"
        assert (started.returncode, started.stdout, started.stderr) == (
            cold.returncode, cold.stdout, cold.stderr)
        said = {"train": "Run the training flow", "promote": "Move `champion` to VERSION"}
        assert args[1] != "--help" or said[args[0]] in started.stdout


def test_another_environment_or_command_starts_cold(warm):
    assert _warm_only({**warm, "OMP_NUM_THREADS": "3"}, "train", "--help").returncode == 99
    assert _warm_only(warm, "status").returncode == 99  # not a flow command


def test_a_caller_with_other_code_is_answered_cold_and_the_warm_process_exits(tmp_path):
    with _environment(tmp_path, MLOPS_TEST_WARM="other-code") as env:
        path = _started(env, tmp_path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(path))
            send_message(conn, {"argv": ["mlops", "train", "--help"], "cwd": "/", "env": env,
                                "code": "not " + code_digest()}, fds=(0, 1, 2))
            answer, _ = receive_message(conn)

        assert answer == {"cold": "the code changed since this warm process started"}
        assert wait_for(lambda: not path.exists(), timeout_s=10)


def test_a_socket_folder_too_deep_for_a_socket_is_refused(tmp_path):
    deep = tmp_path / ("x" * 100)
    deep.mkdir()
    with pytest.raises(OSError, match="too long for a socket"):
        start_warm_process({"XDG_RUNTIME_DIR": str(deep)}, tmp_path / "warm.log")


def test_the_socket_folder_is_private_or_refused(tmp_path):
    made = socket_folder({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert made.stat().st_mode & 0o777 == 0o700

    made.chmod(0o755)
    with pytest.raises(OSError, match="not a private folder"):
        socket_folder({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_the_warm_process_holds_no_connection_when_it_forks(warm):
    """Only its listening socket is open: a fork shares no connection with another."""
    [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_warm(int(p), warm)]
    sockets = [fd for fd in os.listdir(f"/proc/{pid}/fd")
               if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")]
    assert len(sockets) == 1


def test_the_warm_process_loads_what_a_training_loads_beside_its_search():
    """Model logging, pyplot and MLflow's map of installed packages are loaded before a fork:
    a warm training does not spend that CPU during its search."""
    check = ("import sys\nfrom flows.warm_commands import import_once\nimport_once()\n"
             "from mlflow.utils import requirements_utils\n"
             "assert requirements_utils._MODULES_TO_PACKAGES is not None\n"
             "assert {'matplotlib.pyplot', 'mlflow.sklearn', 'experiments.fast_skops'} <= set(sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _is_warm(pid: int, env: dict[str, str]) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"flows.warm_commands" in command and environment_key(env).encode() in command


def test_down_right_after_up_stops_a_warm_process_still_importing(tmp_path):
    """Given a warm process just started (it holds its lock, and imports for seconds before
    it listens), stopping it ends it: none is left behind to idle for an hour."""
    with _environment(tmp_path, MLOPS_TEST_WARM="stopped-early") as env:
        start_warm_process(env, tmp_path / "warm.log")
        [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_warm(int(p), env)]
        assert not socket_path(env).exists()  # still importing

        assert stop_warm_process(env)
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout_s=10)
        assert not socket_path(env).exists()


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_a_warm_process_ends_when_its_platform_stops(tmp_path):
    """Given a warm process started for a platform home, when none of that platform's
    recorded services runs any more (stopped without `mlops down`: a test's fixture, a
    reboot), it exits within its next look, and its socket is gone."""
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    service = subprocess.Popen(["sleep", "300"])
    (home / "run" / "mlflow.pid").write_text(f"{service.pid} 0 sleep\n")
    with _environment(tmp_path, MLOPS_TEST_WARM="platform-bound") as env:
        start_warm_process(env, tmp_path / "warm.log", home)
        assert wait_for(socket_path(env).exists, timeout_s=120, interval_s=0.2)

        service.kill()
        service.wait()

        assert wait_for(lambda: not socket_path(env).exists(), timeout_s=30, interval_s=0.2)


def test_the_shell_after_make_up_finds_the_warm_process_of_make_up():
    """`make up` runs `mlops up` with make's variables set; the shell's commands have none."""
    shell = {"MLOPS_HOME": "/somewhere", "PATH": "/bin", "PWD": "/a", "SHLVL": "1"}
    made = {**shell, "MAKEFLAGS": "", "MFLAGS": "", "MAKELEVEL": "1", "PWD": "/b", "SHLVL": "2"}

    assert environment_key(made) == environment_key(shell)
    assert environment_key({**shell, "OMP_NUM_THREADS": "1"}) != environment_key(shell)


def test_another_terminal_or_ssh_session_finds_the_same_warm_process():
    """Two ssh logins (or tmux panes) of one user differ in their session's variables only."""
    first = {"MLOPS_HOME": "/somewhere", "PATH": "/bin", "SSH_CONNECTION": "10.0.0.2 50110 10.0.0.1 22",
             "SSH_CLIENT": "10.0.0.2 50110 22", "SSH_TTY": "/dev/pts/0", "XDG_SESSION_ID": "3",
             "SSH_AUTH_SOCK": "/tmp/ssh-a/agent.1", "TMUX_PANE": "%0"}
    second = {**first, "SSH_CONNECTION": "10.0.0.2 50222 10.0.0.1 22", "SSH_CLIENT": "10.0.0.2 50222 22",
              "SSH_TTY": "/dev/pts/1", "XDG_SESSION_ID": "4", "SSH_AUTH_SOCK": "/tmp/ssh-b/agent.2",
              "TMUX_PANE": "%1"}

    assert environment_key(second) == environment_key(first)
    assert environment_key({**first, "MLFLOW_TRACKING_URI": "http://elsewhere"}) != environment_key(first)

