"""The warm process behind flows/launch.py: imports once, forks a process per command.

`python -m flows.warm_commands` (started by `mlops up` in its own environment) takes a lock
named after that environment (a second one exits at once), imports what the flow commands
import, and listens on a Unix socket in the user's private folder. For each connection from
a process of the same user, it forks: the fork takes the caller's descriptors, working
directory, environment and arguments, runs the `mlops` command, sends its exit status and
exits. The fork is a process group of its own (stopping the warm process leaves running
commands alone), and kills itself when its caller is gone (a killed `mlops train` leaves no
training running, as a cold one would). The warm process holds no connection but its
listening socket when it forks, and starts no thread (its imports start none: the runner's
forkserver, flows/warm.py, preloads the same modules), and runs nothing a caller sends but
the `mlops` command line of the same user: the caller could have run that itself.

It exits when asked (`mlops down`), when a caller's code differs from what it imported, when
none of its platform's services runs any more (however they were stopped), and after IDLE_S
without a command.
"""

import atexit
import fcntl
import gc
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

from flows.warm_start import (
    FORWARDED,
    WARM_COMMANDS,
    code_digest,
    receive_message,
    send_message,
    warm_file,
)

IDLE_S = 3600
LOOK_S = 5  # how often it looks whether its platform still runs
PRELOAD = ("flows.cli", "flows.preflight", "flows.train", "flows.monitor", "flows.predict",
           "flows.lifecycle", "flows.approval", "flows.compare", "experiments.spec",
           "experiments.fast_skops")
# Commands whose fork forks a spare process (flows/spare.py) before it starts a thread: a
# training draws its plots and learning curve there, on the other core.
WITH_SPARE = ("train",)


def serve(env_key: str, home: Path | None = None) -> None:
    lock = open(warm_file(env_key, ".lock"), "a+")  # held until this process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # one warm process an environment: that one serves
    lock.truncate(0)
    lock.write(str(os.getpid()))  # `mlops down` stops it by it while it imports
    lock.flush()
    import_once()
    digest = code_digest()
    path = warm_file(env_key, ".sock")  # its length checked by start_warm_process
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.settimeout(LOOK_S)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the forks
    last = time.monotonic()
    try:
        while time.monotonic() - last < IDLE_S and (home is None or _platform_runs(home)):
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            last = time.monotonic()
            if _serve_one(listener, conn, digest) == "stop":
                return
    finally:
        path.unlink(missing_ok=True)


def _platform_runs(home: Path) -> bool:
    from infra.services import running_recorded

    return bool(running_recorded(home))


def import_once() -> None:
    """What the flow commands import, MLflow's quiet and telemetry switches set first (it
    reads the telemetry one on import; a cold command's `connect` sets them all the same),
    and what a training loads beside its search (model logging, pyplot, and MLflow's map of
    installed packages: 0.8 s of CPU a training would otherwise spend during its search)."""
    from infra.clients import quiet

    quiet()
    for module in PRELOAD:
        __import__(module)
    from experiments.tracking import preload_model_logging

    preload_model_logging().join()
    gc.collect()
    gc.freeze()  # what every fork shares lives until exit: out of the collector's passes


def _serve_one(listener: socket.socket, conn: socket.socket, digest: str) -> str | None:
    conn.settimeout(5)  # a caller that sends nothing does not hold the others up
    fds: list[int] = []
    try:
        if _peer_uid(conn) != os.getuid():
            return None
        request, fds = receive_message(conn, max_fds=3)
        if not request or request.get("stop"):
            return "stop" if request else None
        if request.get("code") != digest:
            send_message(conn, {"cold": "the code changed since this warm process started"})
            return "stop"
        if len(fds) != 3 or len(request["argv"]) < 2 or request["argv"][1] not in WARM_COMMANDS:
            send_message(conn, {"cold": "not a warm command"})
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            _run_forked(listener, conn, request, fds)  # never returns
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _peer_uid(conn: socket.socket) -> int:
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def _run_forked(listener: socket.socket, conn: socket.socket, request: dict, fds: list[int]) -> None:
    code = 1
    try:
        listener.close()
        _become_the_caller(request, fds)
        if request["argv"][1] in WITH_SPARE:
            from flows.spare import fork_spare

            fork_spare(close=(conn,))  # the caller's socket is the command's alone
        conn.settimeout(None)
        threading.Thread(target=_die_with_caller, args=(conn,), daemon=True).start()
        send_message(conn, {"pid": os.getpid()})
        code = _run_command(request["argv"])
    except BaseException:  # noqa: BLE001 - reported on the caller's stderr, then exit 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        # What the interpreter does at its end: wait for the threads that are not daemons,
        # then run the exit handlers (Prefect's drains); then say how it ended.
        threading._shutdown()
        atexit._run_exitfuncs()
        try:
            send_message(conn, {"exit": code})
        except OSError:
            pass
        os._exit(code)


def _become_the_caller(request: dict, fds: list[int]) -> None:
    os.setpgid(0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children
    for signum in FORWARDED:  # as a Python started by the caller would have them
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if int(signum) in request.get("ignored", ()) else default)
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)  # the copies: the caller's streams end with the command's own
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=stream.isatty())
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # Prefect read its settings (.env, variables) on import
    from infra.settings import use

    use(None)


def _die_with_caller(conn: socket.socket) -> None:
    """The caller sends nothing more: the end of its stream is its end, and this one's."""
    try:
        while conn.recv(1024):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _run_command(argv: list[str]) -> int:
    from flows.cli import app

    try:
        app(args=argv[1:], prog_name="mlops")
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else None)
