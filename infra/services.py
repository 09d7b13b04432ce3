"""Background service processes: start, wait until healthy, report, stop.

Each service runs in its own session (process group) with its pid file and log under
MLOPS_HOME, so `down` stops exactly what `up` started and nothing else.
"""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import PlatformError

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Service:
    """How to run one server process and how to tell that it is healthy."""

    name: str
    argv: tuple[str, ...]
    host: str
    port: int
    url: str
    health_url: str
    port_variable: str
    env: Mapping[str, str] = field(default_factory=dict)
    unset_env: tuple[str, ...] = ()
    marker: str = ""  # text in the process's command line that proves it is ours
    cwd: Path | None = None
    wave: int = 0  # services of a later wave start once the earlier ones are healthy
    # Spawned with the first wave all the same, to import while the others start; it is
    # awaited in its own wave, and waits itself for the services it needs.
    spawn_early: bool = False
    # Made just before the process starts (a description writes nothing): folders, and
    # files only their owner can read (configs that hold a key).
    folders: tuple[Path, ...] = ()
    files: tuple[tuple[Path, str], ...] = ()
    # Makes what a description should not hold: key material, made afresh at each start.
    prepare: Callable[[], None] | None = None
    # Seconds from SIGTERM to SIGKILL when `stop_services` stops it.
    stop_grace_s: float = 15.0

    @property
    def command_marker(self) -> str:
        return self.marker or self.name.split("-")[0]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    running: bool
    pid: int | None


def venv_bin(name: str) -> str:
    """The path of a console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


def is_healthy(health_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with _NO_PROXY.open(health_url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def _pid_file(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.pid"


def _log_file(home: Path, name: str) -> Path:
    return home / "logs" / f"{name}.log"


def _notes_file(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.notes"


def write_start_notes(home: Path, name: str, lines: Sequence[str]) -> None:
    """What a service did at its start that the `up` which started it should print (a
    line each), written before the service reports healthy."""
    write_atomically(_notes_file(home, name), "".join(" ".join(line.split()) + "\n" for line in lines))


def start_notes(home: Path, name: str) -> list[str]:
    """The lines the service wrote at its last start (none if it wrote none)."""
    try:
        return _notes_file(home, name).read_text().splitlines()
    except FileNotFoundError:
        return []


def _recorded(pid_file: Path) -> tuple[int, int, str] | None:
    """A pid file's pid, wave and command marker (`up` writes all three)."""
    try:
        fields = pid_file.read_text().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else 0, " ".join(fields[2:])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def runs_our_command(pid: int, marker: str) -> bool:
    """Whether process `pid` still runs a command line holding `marker` (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    # A recycled pid belongs to someone else: only claim it if it still runs our server.
    return bool(marker) and marker in cmdline


def _alive_pid(home: Path, service: Service) -> int | None:
    """The pid recorded for the service if that process still runs it; else None."""
    recorded = _recorded(_pid_file(home, service.name))
    if recorded is None:
        return None
    return recorded[0] if runs_our_command(recorded[0], service.command_marker) else None


def is_alive(home: Path, service: Service) -> bool:
    """Whether the service's recorded process runs (`start_services` leaves it be)."""
    return _alive_pid(home, service) is not None


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _last_lines(path: Path, count: int = 3) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-count:])


def write_private(path: Path, text: str) -> None:
    """A file only its owner can read, written whole (mkstemp creates it with mode 600)."""
    write_atomically(path, text, mode=0o600)


def child_environment(env: Mapping[str, str], unset: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without `unset`, with `env` on top: what a child gets."""
    inherited = {k: v for k, v in os.environ.items() if k not in unset}
    return {**inherited, **env}


# What a process started with a scrubbed environment still inherits: where programs,
# home, locale, temporary files, proxies and CA certificates are. Nothing that grants access.
_BASIC_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy",
)


def scrubbed_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` and the basic variables of this process's environment, nothing else: for a
    child that must not hold this process's secrets (the serving process)."""
    return {**{k: os.environ[k] for k in _BASIC_VARIABLES if k in os.environ}, **env}


def _prepare(service: Service) -> None:
    for folder in service.folders:
        folder.mkdir(parents=True, exist_ok=True)
    for path, text in service.files:
        write_private(path, text)
    if service.prepare is not None:
        service.prepare()


def _spawn(service: Service, home: Path) -> subprocess.Popen:
    log_path = _log_file(home, service.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _pid_file(home, service.name).parent.mkdir(parents=True, exist_ok=True)
    _prepare(service)
    env = child_environment(service.env, service.unset_env)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(service.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=service.cwd or home,
            start_new_session=True,
        )
    _pid_file(home, service.name).write_text(f"{process.pid} {service.wave} {service.command_marker}\n")
    return process


def start_services(
    services: Sequence[Service], home: Path, timeout_s: float,
    before_wave: Callable[[int], None] | None = None,
) -> list[str]:
    """Start every service not already running, then wait until all are healthy.

    Services start in waves; `before_wave(n)` runs before wave n starts (to create what the
    wave needs once the earlier waves answer: databases, a bucket).

    Returns one line per service saying what happened. Raises PlatformError with the
    reason when a port is taken, a process dies while starting, or time runs out.
    """
    home.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    early: dict[str, subprocess.Popen] = {}
    for wave in range(max((s.wave for s in services), default=-1) + 1):
        if before_wave is not None:
            before_wave(wave)
        members = [s for s in services if s.wave == wave]
        started = {s.name: early[s.name] for s in members if s.name in early}
        started |= _spawn_all([s for s in members if not _early(s)], home, notes)
        if wave == 0:  # once the first wave's ports were free and its processes started
            early = _spawn_all([s for s in services if _early(s)], home, notes)
        _wait_until_healthy(members, home, started, timeout_s)
        notes += [f"{s.name}: started (pid {started[s.name].pid}) at {s.url}"
                  for s in members if s.name in started]
    return notes


def _early(service: Service) -> bool:
    return service.spawn_early and service.wave > 0


def _spawn_all(services: Sequence[Service], home: Path, notes: list[str]) -> dict[str, subprocess.Popen]:
    """Start each service not already running; a note for each found running or stale."""
    started: dict[str, subprocess.Popen] = {}
    for service in services:
        pid = _alive_pid(home, service)
        if pid is not None:
            notes.append(f"{service.name}: already running (pid {pid}) at {service.url}")
            continue
        if _pid_file(home, service.name).exists():
            _pid_file(home, service.name).unlink()
            notes.append(f"{service.name}: removed a stale pid file")
        if not _port_is_free(service.host, service.port):
            raise PlatformError(
                f"port {service.port} on {service.host} is taken by another program, so "
                f"{service.name} cannot start; stop that program or set {service.port_variable}"
            )
        started[service.name] = _spawn(service, home)
    return started


def _wait_until_healthy(
    services: Sequence[Service],
    home: Path,
    started: Mapping[str, subprocess.Popen],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(services)
    while waiting:
        for service in list(waiting):
            if is_healthy(service.health_url, timeout_s=1.0):
                waiting.remove(service)
            # Our own child: poll() is exact, while /proc/PID/cmdline is empty during exec().
            elif service.name in started and started[service.name].poll() is not None:
                log = _log_file(home, service.name)
                raise PlatformError(
                    f"{service.name} exited while starting: {_last_lines(log)} (log: {log})"
                )
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.name for s in waiting)
            raise PlatformError(
                f"{names} did not become healthy within {timeout_s:.0f} s; "
                f"see the logs in {home / 'logs'}"
            )
        if waiting:
            time.sleep(0.25)


def stop_services(services: Sequence[Service], home: Path, grace_s: float | None = None) -> list[str]:
    """Stop the processes `start_services` recorded; anything else is left alone. Each
    gets its own `stop_grace_s` unless `grace_s` is given."""
    found = [(service.wave, service.name, _alive_pid(home, service),
              service.stop_grace_s if grace_s is None else grace_s) for service in services]
    return _stop_by_wave(found, home)


def _stop_by_wave(found: Sequence[tuple[int, str, int | None, float]], home: Path) -> list[str]:
    """Stop each (wave, name, live pid or None, grace), later waves first (the runner needs
    Prefect until it stops); a wave's members stop together, so a slow one delays no other."""
    notes = []
    for wave in sorted({wave for wave, *_ in found}, reverse=True):
        members = [(name, pid, grace) for w, name, pid, grace in found if w == wave]
        _terminate_groups({pid: grace for _, pid, grace in members if pid is not None})
        for name, pid, _ in members:
            _pid_file(home, name).unlink(missing_ok=True)
            notes.append(f"{name}: not running" if pid is None else f"{name}: stopped (pid {pid})")
    return notes


def _terminate_groups(graces: Mapping[int, float]) -> None:
    """SIGTERM each process group, SIGKILL each still there after its grace (seconds), and
    return once all are gone (their ports free for the next start) or 5 s after a kill."""
    start = time.monotonic()
    deadlines, killed = {}, set()
    for pid, grace_s in graces.items():
        try:
            os.killpg(pid, signal.SIGTERM)
            deadlines[pid] = start + grace_s
        except ProcessLookupError:
            pass
    while deadlines:
        for pid in list(deadlines):
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if we are its parent
            except ChildProcessError:
                pass
            if not _group_runs(pid) or (pid in killed and time.monotonic() >= deadlines[pid]):
                del deadlines[pid]
            elif time.monotonic() >= deadlines[pid]:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed.add(pid)
                deadlines[pid] = time.monotonic() + 5.0
        if deadlines:
            time.sleep(0.1)


def _group_runs(pgid: int) -> bool:
    """Whether a process of the group has not exited yet. An exited one that its parent has
    not reaped (a zombie: its ports and files are closed) does not count: the orphans of a
    stopped service wait for init, which on some machines reaps only every ~2 s."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:
        entries = [entry for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:  # no /proc: what killpg says
        return True
    for entry in entries:
        try:
            with open(f"{entry.path}/stat") as stat:
                state, _, group = stat.read().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):  # gone meanwhile
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


def running_recorded(home: Path) -> list[str]:
    """The services whose pid files name a live process of theirs."""
    files = sorted((home / "run").glob("*.pid")) if (home / "run").is_dir() else []
    return [f.stem for f in files
            if (found := _recorded(f)) is not None and runs_our_command(found[0], found[2])]


def stop_recorded(home: Path, grace_s: float = 15.0) -> list[str]:
    """Stop what the pid files name, later waves first: for when the platform cannot be
    described (a damaged state file), since the pid files alone say what `up` started."""
    found = []
    for pid_file in sorted((home / "run").glob("*.pid")) if (home / "run").is_dir() else ():
        recorded = _recorded(pid_file)
        if recorded is not None:
            pid, wave, marker = recorded
            found.append((wave, pid_file.stem, pid if runs_our_command(pid, marker) else None, grace_s))
    return _stop_by_wave(sorted(found, reverse=True), home)


def service_statuses(services: Sequence[Service], home: Path) -> list[ServiceStatus]:
    return [
        ServiceStatus(
            name=s.name,
            url=s.url,
            pid=_alive_pid(home, s),
            running=is_healthy(s.health_url),
        )
        for s in services
    ]


def write_state(home: Path, state: Mapping[str, object]) -> None:
    write_atomically(home / "state.json", json.dumps(state, indent=2))


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a temporary file beside `path` and rename it over: a reader (or a crash) sees
    the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def platform_lock(home: Path) -> Iterator[None]:
    """One `up` or `down` at a time per MLOPS_HOME: they read and write its state."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(home: Path) -> dict | None:
    try:
        return json.loads((home / "state.json").read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise PlatformError(f"{home / 'state.json'} is not valid JSON: {error}") from error
