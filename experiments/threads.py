"""Native thread pools (OpenMP, BLAS) while a training fits and scores its models.

Scikit-learn's boosting fits on OpenMP threads that spin while they wait for one another.
When other programs want the cores, a spinning thread holds a core another thread of the same
fit waits for: on a busy two-core machine one HistGradientBoosting fit on 275 rows took
8-14 s on OpenMP's default threads against 0.12 s on one. A fit on a busy machine therefore
runs on one native thread; on a machine with cores to spare the libraries keep their default.
"""

import functools
import os
from contextlib import AbstractContextManager, nullcontext

import sklearn.ensemble  # noqa: F401 - its OpenMP runtime is loaded before the pools are found
from threadpoolctl import ThreadpoolController


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_busy() -> bool:
    """True when the last minute's load fills every core this process may use (this
    training counts in it: on two cores, one more runnable thread than its own)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this system: assume the cores are shared
        return True
    return load >= usable_cores()


@functools.cache
def _controller() -> ThreadpoolController:
    """The native thread pools of this process, found once (a search is under way, so
    scikit-learn's are loaded): finding them costs 10-50 ms, limiting them microseconds."""
    return ThreadpoolController()


def fit_threads(busy=machine_busy) -> AbstractContextManager:
    """A context in which native thread pools use one thread if the machine is busy."""
    return _controller().limit(limits=1) if busy() else nullcontext()


def one_thread_when_busy(objective, busy=machine_busy):
    """The Optuna objective, each trial run under `fit_threads`; the trial records whether
    its fits were limited to one native thread (user attribute `one_thread`)."""

    def limited(trial):
        limit = busy()
        trial.set_user_attr("one_thread", limit)
        with fit_threads(lambda: limit):
            return objective(trial)

    return limited
