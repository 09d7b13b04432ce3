"""A spare process beside a command, for CPU work of its own on the machine's other core.

After its search a training is Python holding one interpreter lock: its plots, learning
curve and permutation importance waited on each other while the second core idled. The
warm process's fork for `mlops train` (flows/warm_commands.py), and each flow run the
runner forks (flows/warm.py), forks once more before it starts any thread, so nothing is
copied half-done: the spare has everything imported, waits on a socket pair for a
function of ours with its arguments, runs it and sends back its result or its error. It
runs nothing else: what it reads comes from the process that forked it, over a socket no
other process holds. It ends with its command: at once on Linux (a parent-death signal),
elsewhere at the end of that socket, once the job it runs is done.

A command without a spare (started cold, in-process in tests), or whose spare is gone,
computes the same functions itself when it asks for their results: the same results on one
core, nothing lost.

A second such process, the helper, runs below the command's CPU priority (`behind`): work
that goes on during the search and must not slow it, such as the training data's profile.
Forked as the spare is, it has pandas and scikit-learn imported: the profile there cost
~3.7 CPU-s on the bench's data (Evidently's import 2.3 of it), where a fresh process spent
~8 on the search's two cores (experiments/profile.py). Evidently is not imported before the
fork: its import makes an asyncio event loop, whose wake-up socket pair every fork would share.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import struct
import threading
from collections.abc import Iterable
from concurrent.futures import Future

from experiments.priority import yield_to_training

log = logging.getLogger(__name__)
_HEADER = struct.Struct("!Q")
_spare: _Spare | None = None
_helper: _Spare | None = None


def fork_spare(close: Iterable[socket.socket] = ()) -> int | None:
    """Fork this process's spare (which closes its copies of `close`) and its helper (the
    same, below this process's CPU priority) and return the spare's pid; None when this
    process runs more than one thread (a fork copies no other thread, and one of their locks
    could be held) or cannot fork (then its jobs are computed here)."""
    global _spare, _helper
    if threading.active_count() > 1:
        return None
    close = tuple(close)
    _spare = _fork(close, low_priority=False)
    if _spare is None:
        return None
    _helper = _fork((*close, _spare.sock), low_priority=True)
    return _spare.pid


def _fork(close: tuple[socket.socket, ...], low_priority: bool) -> _Spare | None:
    parent = os.getpid()
    try:
        mine, its = socket.socketpair()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        mine.close()
        its.close()
        return None
    if pid == 0:
        _die_with(parent)
        mine.close()
        for sock in close:
            sock.close()
        if low_priority:
            yield_to_training(os.getpid())
        _serve(its)  # never returns
    its.close()
    return _Spare(pid, mine)


def _die_with(parent: int) -> None:
    """On Linux, be killed when the command's process ends, even mid-job (a parent-death
    signal): a killed training's profile or plots do not run on. Elsewhere the end of the
    socket ends this process once its job is done."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(0)


def spare_beside():
    """`beside` when this process has a spare to send jobs to; None when they would be
    computed here."""
    return beside if _mine(_spare) is not None else None


def beside(fn, /, *args, **kwargs) -> Pending:
    """fn(*args, **kwargs) sent to the spare process now (one job after another); computed
    here, in the thread that asks for its result, when there is no spare, it is gone, or the
    job does not pickle (so no two threads of this process ever draw at once)."""
    spare = _mine(_spare)
    job = _pickled(fn, args, kwargs) if spare is not None else None
    if job is None:  # no spare, or this is a child of the command's, which has none
        return Pending(fn, args, kwargs, None)
    return Pending(fn, args, kwargs, spare.submit(job))


def behind(fn, /, *args, **kwargs) -> Pending | None:
    """fn(*args, **kwargs) sent to the helper process now, for work that must not slow this
    one's (it runs below this process's CPU priority, one job after another); None when there
    is no helper or the job does not pickle. Never computed here: if the helper is gone, its
    result raises SpareGone."""
    helper = _mine(_helper)
    job = _pickled(fn, args, kwargs) if helper is not None else None
    if job is None:
        return None
    return Pending(fn, args, kwargs, helper.submit(job), here=False, process=helper)


def _mine(spare: _Spare | None) -> _Spare | None:
    """The spare if this process forked it (a child of the command's has none of its own)."""
    return spare if spare is not None and spare.owner == os.getpid() else None


def _pickled(fn, args: tuple, kwargs: dict) -> bytes | None:
    """The job, with this process's environment as it is now: a command exports its clients'
    variables (addresses, credentials) after its spare was forked, and a job that writes to
    MLflow needs them."""
    try:
        return pickle.dumps((fn, args, kwargs, dict(os.environ)), pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        log.debug("not sent to a spare process (%s)", error)
        return None


class Pending:
    """The result of a job given to `beside` or `behind`."""

    def __init__(self, fn, args: tuple, kwargs: dict, sent: Future | None, here: bool = True,
                 process: _Spare | None = None) -> None:
        self._call, self._sent, self._here, self._process = (fn, args, kwargs), sent, here, process

    def result(self, timeout: float | None = None):
        """The job's result (its error raised), waiting for the spare at most `timeout`
        seconds (TimeoutError after); computed here when the spare could not compute it,
        unless the job came from `behind`."""
        if self._sent is not None:
            try:
                return self._sent.result(timeout)
            except SpareGone:
                if not self._here:
                    raise
                self._sent = None
        fn, args, kwargs = self._call
        return fn(*args, **kwargs)

    def cancel(self) -> None:
        """A `behind` job not done yet is stopped: its helper process is killed."""
        if self._process is not None and self._sent is not None and not self._sent.done():
            self._process.kill()


class SpareGone(Exception):
    """The spare process running a job ended before it answered, or could not load the job."""


class _Spare:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.owner, self.sock = pid, os.getpid(), sock
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._gone = False

    def submit(self, job: bytes) -> Future:
        """The job sent after those before it, from a daemon thread: a command that ends
        with a job still out does not wait for it (its spare ends with it)."""
        future: Future = Future()
        self._jobs.put((future, job))
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_jobs, name="mlops-spare", daemon=True)
            self._sender.start()
        return future

    def _send_jobs(self) -> None:
        while True:
            future, job = self._jobs.get()
            try:
                future.set_result(self._run(job))
            except BaseException as error:  # noqa: BLE001 - raised by the job's result()
                future.set_exception(error)

    def _run(self, job: bytes):
        if self._gone:
            raise SpareGone("the spare process is gone")
        try:
            _send(self.sock, job)
            ok, value = pickle.loads(_receive(self.sock))
        except (OSError, EOFError) as error:  # it died or was killed: the caller decides
            log.warning("a spare process is gone (%s)", error)
            self._gone = True
            self.sock.close()
            raise SpareGone(str(error)) from error
        if ok is None:  # it could not load the job: not its to compute
            raise SpareGone(f"the spare process could not load the job ({value})")
        if ok:
            return value
        raise value

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass


def _serve(sock: socket.socket) -> None:
    """The spare's life: jobs until its command's end of the socket closes, then exit."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is its command's; that one's end ends this
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):  # the caller's stdin and stdout are its command's alone
            os.dup2(null, fd)
        while True:
            try:
                job = _receive(sock)
            except EOFError:
                break
            try:
                fn, args, kwargs, environment = pickle.loads(job)
            except Exception as error:  # noqa: BLE001 - a function defined after the fork
                _send(sock, pickle.dumps((None, f"{type(error).__name__}: {error}")))
                continue
            if os.environ != environment:  # the command's, as it was when it sent the job
                os.environ.clear()
                os.environ.update(environment)
            try:
                reply = (True, fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - raised again in the command
                reply = (False, error)
            _send(sock, _dumps(reply))
    finally:
        os._exit(0)


def _dumps(reply: tuple) -> bytes:
    """The reply; an error that would not come back whole (one that does not pickle, or not
    unpickle: its constructor wants other arguments) goes back as a RuntimeError with its text."""
    try:
        data = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        if not reply[0]:
            pickle.loads(data)
        return data
    except Exception as error:  # noqa: BLE001 - a result or error that does not pickle
        what = reply[1] if reply[0] else f"{type(reply[1]).__name__}: {reply[1]}"
        return pickle.dumps((False, RuntimeError(f"the spare process could not send back "
                                                 f"{what!r}: {error}")))


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _receive(sock: socket.socket) -> bytes:
    (size,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    return _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end of the spare's socket closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
