"""The spare process beside a command (flows/spare.py): each case runs in a fresh Python of
its own, as the warm process's fork for `mlops train` is (one thread when it forks)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import os, signal, sys, threading, time
from flows import spare
def pid():
    return os.getpid()
def fail():
    raise KeyError("no such column")
def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()
"""


def _run(body: str, timeout_s: float = 60) -> list[str]:
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def _gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # ended; its parent (this test's Python's) reaps it
            return True
        time.sleep(0.05)
    return False


def test_a_job_runs_in_the_spare_and_its_result_or_error_comes_back():
    me, spare_pid, ran_in, error = _run("""
        forked = spare.fork_spare()
        print(os.getpid(), forked, spare.beside(pid).result())
        try:
            spare.beside(fail).result()
        except KeyError as e:
            print(type(e).__name__)
    """)
    assert ran_in == spare_pid != me
    assert error == "KeyError"


def test_without_a_spare_the_job_runs_in_this_process():
    me, ran_in = _run("print(os.getpid(), spare.beside(pid).result())")
    assert ran_in == me


def test_a_process_running_threads_forks_no_spare():
    me, forked, ran_in = _run("""
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        print(os.getpid(), spare.fork_spare(), spare.beside(pid).result())
    """)
    assert forked == "None" and ran_in == me


def test_a_killed_spare_loses_nothing_its_jobs_run_here():
    """Given a spare killed before a job, or while it runs one, the job's result comes from the
    command's own process, and so do the next jobs'."""
    me, first, then = _run("""
        os.kill(spare.fork_spare(), signal.SIGKILL)
        print(os.getpid(), spare.beside(pid).result(), spare.beside(pid).result())
    """)
    assert first == then == me
    me, during, then = _run("""
        forked = spare.fork_spare()
        job = spare.beside(pid_after, 1.0)
        time.sleep(0.3)
        os.kill(forked, signal.SIGKILL)
        print(os.getpid(), job.result(), spare.beside(pid).result())
    """)
    assert during == then == me


def test_a_job_that_does_not_pickle_runs_here():
    me, forked, ran_in = _run(
        "print(os.getpid(), spare.fork_spare(), spare.beside(lambda: os.getpid()).result())")
    assert forked != me and ran_in == me


def test_the_spare_ends_with_its_command_even_a_killed_one():
    for end in ("sys.exit(0)", "os.kill(os.getpid(), signal.SIGKILL)"):
        command = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + f"print(spare.fork_spare(), flush=True)\ntime.sleep(1)\n{end}"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        forked = int(command.stdout.readline())
        assert not _gone(forked, timeout_s=0.2)
        command.wait(timeout=30)
        assert _gone(forked), end
