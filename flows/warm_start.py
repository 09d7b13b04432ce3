"""A warm process's socket: where it is, which environment it serves, what goes through it;
starting and stopping one (flows/warm_commands.py is the process, flows/launch.py its caller).

A warm process serves one environment: the one `mlops up` ran in. Its socket is named after
that environment, the interpreter and the code's place, in a folder only its user can open;
a command run with any other variable (another MLOPS_HOME, PREFECT_API_URL,
OMP_NUM_THREADS...) finds no socket and starts cold. The standard library only: the `mlops`
command imports this before it knows whether it starts warm.
"""

import array
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

# The commands a warm process runs: those that import MLflow, Prefect or scikit-learn and
# start nothing that outlives them (not `up`, `serve`, `worker`, `demo`).
WARM_COMMANDS = ("train", "monitor", "predict", "promote", "rollback", "approve", "reject",
                 "history", "compare", "models")
# Set by shells, terminals, login sessions and make (`make up`, `make demo`), read by nothing
# a command imports: another terminal, ssh or tmux session of the same user finds the warm
# process `mlops up` started in the first (the fork runs with its caller's own values).
_NOT_THE_ENVIRONMENT = frozenset({
    "_", "PWD", "OLDPWD", "SHLVL", "COLUMNS", "LINES",
    "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR",
    "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "XDG_SESSION_ID", "MOTD_SHOWN",
    "TMUX_PANE", "STY", "WINDOW", "WINDOWID", "TERM_SESSION_ID", "ITERM_SESSION_ID", "GPG_TTY",
})
_CODE = Path(__file__).resolve().parents[1]
_PACKAGES = ("experiments", "flows", "infra", "monitoring", "registry", "serving")
_SOCKET_PATH_MAX = 108  # sun_path, with its closing NUL, on Linux
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def this_environment() -> dict[str, str]:
    """This process's environment as its user set it: what a warm process started now serves."""
    return dict(os.environ)


def warm_start_wanted(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("MLOPS_WARM_START", "1") != "0"


def socket_folder(env: Mapping[str, str] = os.environ) -> Path:
    """This user's folder for warm sockets; made private, and refused unless it is."""
    base = env.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"mlops-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    found = folder.lstat()
    if found.st_uid != os.getuid() or found.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise OSError(f"{folder} is not a private folder of this user")
    return folder


def environment_key(env: Mapping[str, str]) -> str:
    """What names a warm process: the environment, the interpreter, the code's place."""
    kept = sorted((k, v) for k, v in env.items() if k not in _NOT_THE_ENVIRONMENT)
    text = json.dumps([kept, sys.executable, str(_CODE)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def code_digest() -> str:
    """The modules' sizes and change times: a warm process with other code is not used."""
    seen = []
    for package in _PACKAGES:
        for folder, _, files in os.walk(_CODE / package):
            for path in (f"{folder}/{name}" for name in files if name.endswith(".py")):
                found = os.stat(path)
                seen.append((path, found.st_mtime_ns, found.st_size))
    return hashlib.sha256(json.dumps(sorted(seen)).encode()).hexdigest()


def warm_file(key: str, suffix: str, env: Mapping[str, str] = os.environ) -> Path:
    """The socket (".sock") or lock (".lock") of the warm process of environment `key`."""
    return socket_folder(env) / f"{key}{suffix}"


def socket_path(env: Mapping[str, str]) -> Path:
    path = warm_file(environment_key(env), ".sock", env)
    if len(os.fsencode(path)) >= _SOCKET_PATH_MAX:
        raise OSError(f"{path} is too long for a socket; set XDG_RUNTIME_DIR to a shorter folder")
    return path


def send_message(conn: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    """One JSON object, length first; `fds` travel with its first byte (SCM_RIGHTS)."""
    body = json.dumps(message).encode()
    data = len(body).to_bytes(4, "big") + body
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = conn.sendmsg([data], ancillary)
    if sent < len(data):  # an empty send to a peer that read all and closed is a broken pipe
        conn.sendall(data[sent:])


def receive_message(conn: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message and the descriptors sent with it; (None, []) at the end of the stream."""
    head, fds = b"", []
    while len(head) < 4:
        space = socket.CMSG_SPACE(max_fds * array.array("i").itemsize) if max_fds else 0
        data, ancillary, _, _ = conn.recvmsg(4 - len(head), space)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(array.array("i", payload[: len(payload) - len(payload) % 4]))
        if not data:
            return None, fds
        head += data
    size, body = int.from_bytes(head, "big"), b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return None, fds
        body += chunk
    return json.loads(body), fds


def start_warm_process(env: Mapping[str, str], log: Path, home: Path | None = None) -> None:
    """Start the warm process of `env` in the background, unless one runs. Waits only until
    it holds its lock (a `mlops down` right after finds it), not for its imports. Raises
    OSError when the user's socket folder is not private, or too deep for a socket. With
    `home`, it exits once none of that platform's services runs (stopped by any means)."""
    socket_path(env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.warm_commands", environment_key(env),
             *([str(home)] if home is not None else [])], env=dict(env),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
            start_new_session=True)
    lock, deadline = lock_path(env), time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:  # it exits if one runs
        if lock.exists() and lock.read_text() == str(process.pid):
            return
        time.sleep(0.02)


def lock_path(env: Mapping[str, str]) -> Path:
    """Held by the warm process of `env` while it runs; it holds its pid."""
    return warm_file(environment_key(env), ".lock", env)


def stop_warm_process(env: Mapping[str, str]) -> bool:
    """Stop the warm process of `env`, also one still importing (not listening yet); False
    when none runs."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(socket_path(env)))
            send_message(conn, {"stop": True})
            return True
    except OSError:
        pass
    from infra.services import runs_our_command  # `down` only: the caller's path stays light

    try:
        pid = int(lock_path(env).read_text() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0 or not runs_our_command(pid, f"flows.warm_commands {environment_key(env)}"):
        return False  # gone, and its pid maybe someone else's by now
    os.kill(pid, signal.SIGTERM)
    return True
