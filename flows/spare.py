"""A spare process beside a command, for CPU work of its own on the machine's other core.

After its search a training is Python holding one interpreter lock: its plots, learning
curve and permutation importance waited on each other while the second core idled. The
warm process's fork for `mlops train` (flows/warm_commands.py), and each flow run the
runner forks (flows/warm.py), forks once more before it starts any thread, so nothing is
copied half-done: the spare has everything imported, waits on a socket pair for a
function of ours with its arguments, runs it and sends back its result or its error. It
runs nothing else: what it reads comes from the process that forked it, over a socket no
other process holds. It ends with its command (the end of that socket), at the latest
once the job it runs is done.

A command without a spare (started cold, in-process in tests), or whose spare is gone,
computes the same functions itself when it asks for their results: the same results on one
core, nothing lost.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import struct
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)
_HEADER = struct.Struct("!Q")
_spare: _Spare | None = None
_executor: ThreadPoolExecutor | None = None


def fork_spare(close: Iterable[socket.socket] = ()) -> int | None:
    """Fork this process's spare (which closes its copies of `close`) and return its pid;
    None when this process runs more than one thread (a fork copies no other thread, and
    one of their locks could be held) or cannot fork (then its jobs are computed here)."""
    global _spare
    if threading.active_count() > 1:
        return None
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
        mine.close()
        for sock in close:
            sock.close()
        _serve(its)  # never returns
    its.close()
    _spare = _Spare(pid, mine)
    return pid


def beside(fn, /, *args, **kwargs) -> Pending:
    """fn(*args, **kwargs) sent to the spare process now (one job after another); computed
    here, in the thread that asks for its result, when there is no spare, it is gone, or the
    job does not pickle (so no two threads of this process ever draw at once)."""
    global _executor
    spare = _spare if _spare is not None and _spare.owner == os.getpid() else None
    if spare is None:  # none, or this is a child of the command's, which has none
        return Pending(fn, args, kwargs, None)
    try:
        job = pickle.dumps((fn, args, kwargs), pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        log.debug("not sent to the spare process (%s); run here", error)
        return Pending(fn, args, kwargs, None)
    if _executor is None:
        _executor = ThreadPoolExecutor(1, thread_name_prefix="mlops-spare")
    return Pending(fn, args, kwargs, _executor.submit(_run_there, spare, job))


class Pending:
    """The result of a job given to `beside`."""

    def __init__(self, fn, args: tuple, kwargs: dict, sent: Future | None) -> None:
        self._call, self._sent = (fn, args, kwargs), sent

    def result(self):
        """The job's result (its error raised), waiting for the spare; computed here when the
        spare could not compute it."""
        if self._sent is not None:
            try:
                return self._sent.result()
            except _SpareGone:
                self._sent = None
        fn, args, kwargs = self._call
        return fn(*args, **kwargs)


class _SpareGone(Exception):
    pass


def _run_there(spare: _Spare, job: bytes):
    global _spare
    try:
        return spare.run(job)
    except (OSError, EOFError) as error:  # it died or was killed: the job is done here
        log.warning("the spare process is gone (%s); its work runs in this one", error)
        if _spare is spare:
            _spare = None
        spare.close()
        raise _SpareGone from error


class _Spare:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.owner, self._sock = pid, os.getpid(), sock

    def run(self, job: bytes):
        _send(self._sock, job)
        ok, value = pickle.loads(_receive(self._sock))
        if ok:
            return value
        raise value

    def close(self) -> None:
        self._sock.close()


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
            fn, args, kwargs = pickle.loads(job)
            try:
                reply = (True, fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - raised again in the command
                reply = (False, error)
            _send(sock, _dumps(reply))
    finally:
        os._exit(0)


def _dumps(reply: tuple) -> bytes:
    try:
        return pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # noqa: BLE001 - a result or error that does not pickle
        return pickle.dumps((False, RuntimeError(f"the spare process could not send back "
                                                 f"{reply[1]!r}: {error}")))


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
