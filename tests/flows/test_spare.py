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
def variable_of(name):
    return os.environ.get(name, "-")
def niceness():
    return os.getpriority(os.PRIO_PROCESS, 0)
class Odd(Exception):
    def __init__(self, column, why):
        super().__init__(f"{column}: {why}")
def fail_oddly():
    raise Odd("price", "not a number")
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


def test_a_job_the_spare_cannot_load_runs_here_and_the_spare_stays():
    """Given a function the spare does not have (defined after the fork), the job is computed
    in the command's process, and the spare takes the next job."""
    me, spare_pid, ran_in, then = _run("""
        forked = spare.fork_spare()
        def later():
            return os.getpid()
        print(os.getpid(), forked, spare.beside(later).result(), spare.beside(pid).result())
    """)
    assert ran_in == me and then == spare_pid != me


def test_a_job_sees_the_commands_environment_as_it_was_when_sent():
    """Given a variable the command set after its spare was forked (as connecting exports the
    clients' credentials), a job sees it; one the command removed, it does not."""
    seen, gone = _run("""
        os.environ["MLOPS_TEST_GONE"] = "yes"
        spare.fork_spare()
        os.environ["MLFLOW_TRACKING_PASSWORD"] = "set-after-the-fork"
        del os.environ["MLOPS_TEST_GONE"]
        print(spare.beside(variable_of, "MLFLOW_TRACKING_PASSWORD").result(),
              spare.behind(variable_of, "MLOPS_TEST_GONE").result())
    """)
    assert (seen, gone) == ("set-after-the-fork", "-")


def test_an_error_that_would_not_come_back_whole_comes_back_as_its_text():
    """Given a job raising an error whose class wants other arguments than its message (it
    pickles, and cannot be rebuilt), the command gets a RuntimeError that names it."""
    (line,) = _run("""
        spare.fork_spare()
        try:
            spare.beside(fail_oddly).result()
        except RuntimeError as e:
            print(str(e).replace(" ", "_"))
    """)
    assert "Odd:_price:_not_a_number" in line


def test_the_spare_and_its_helper_end_with_their_command_even_a_killed_one_mid_job():
    for end in ("sys.exit(0)", "os.kill(os.getpid(), signal.SIGKILL)"):
        command = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + "print(spare.fork_spare(), spare._helper.pid, flush=True)\n"
             "jobs = [spare.beside(pid_after, 600), spare.behind(pid_after, 600)]\n"
             f"time.sleep(1)\n{end}"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        forked = [int(pid) for pid in command.stdout.readline().split()]
        assert not any(_gone(pid, timeout_s=0.2) for pid in forked)
        command.wait(timeout=30)
        assert all(_gone(pid) for pid in forked), end


def test_a_job_behind_runs_in_a_helper_below_the_commands_priority():
    """Given a spare forked, `behind` sends jobs to a third process, the helper, which runs
    them at the command's niceness + 10 (what experiments.priority gives helper processes);
    the spare keeps the command's."""
    me, spare_pid, helper_pid, mine, the_spares, the_helpers = _run("""
        forked = spare.fork_spare()
        print(os.getpid(), forked, spare.behind(pid).result(), niceness(),
              spare.beside(niceness).result(), spare.behind(niceness).result())
    """)
    assert len({me, spare_pid, helper_pid}) == 3
    assert the_spares == mine
    assert int(the_helpers) == min(19, int(mine) + 10)


def test_without_a_helper_behind_takes_no_job_and_there_is_no_spare_to_write_in():
    before, after = _run("""
        print(spare.spare_beside() is None, end=" ")
        spare.fork_spare()
        print(spare.spare_beside() is spare.beside)
    """)
    assert (before, after) == ("True", "True")
    (none,) = _run("print(spare.behind(pid))")
    assert none == "None"


def test_a_helper_killed_or_cancelled_fails_its_job_and_nothing_runs_here():
    """Given the helper killed while it runs a job, or the job cancelled, the job's result
    raises SpareGone: a job behind is never computed in the command's own process."""
    (killed,) = _run("""
        spare.fork_spare()
        job = spare.behind(pid_after, 1.0)
        time.sleep(0.3)
        os.kill(spare._helper.pid, signal.SIGKILL)
        try:
            print(job.result())
        except spare.SpareGone:
            print("gone")
    """)
    cancelled, waited = _run("""
        spare.fork_spare()
        job = spare.behind(pid_after, 60)
        time.sleep(0.3)
        started = time.monotonic()
        job.cancel()
        try:
            print(job.result(timeout=30))
        except spare.SpareGone:
            print("gone", round(time.monotonic() - started))
    """)
    assert killed == cancelled == "gone"
    assert waited == "0"
