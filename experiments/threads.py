"""Native thread pools (OpenMP, BLAS) while a training fits and scores its models.

Scikit-learn's boosting fits on OpenMP threads that spin while they wait for one another.
When other programs want the cores, a spinning thread holds a core another thread of the same
fit waits for: on a busy two-core machine one HistGradientBoosting fit on 275 rows took
8-14 s on OpenMP's default threads against 0.12 s on one. A fit on a busy machine therefore
runs on one native thread; on a machine with cores to spare the libraries keep their default.

Small data fit on one native thread too: there the threads cost more than they share. On a
quiet two-core machine a HistGradientBoosting fit (100 iterations, 30 features) took 97 ms on
one thread and 113 ms on two at 455 rows, the same at 2,000 rows, and 289 ms on two against
337 ms on one at 10,000 rows. A 20-trial `mlops train` on 570 rows, its servers beside it, ran
0.7-1.9 s faster and used 4-5 CPU-s less under OMP_NUM_THREADS=1 (three alternated pairs).
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


# Fits on fewer rows than this run on one native thread even on a quiet machine (see above).
SMALL_DATA_ROWS = 2_000


def one_thread_suits(rows: int, busy=machine_busy) -> bool:
    """Whether fits on `rows` rows should run on one native thread: small data, or a busy
    machine."""
    return rows < SMALL_DATA_ROWS or busy()


@functools.cache
def _controller() -> ThreadpoolController:
    """The native thread pools of this process, found once (a search is under way, so
    scikit-learn's are loaded): finding them costs 10-50 ms, limiting them microseconds."""
    return ThreadpoolController()


def fit_threads(rows: int, busy=machine_busy) -> AbstractContextManager:
    """A context in which native thread pools use one thread for fits on `rows` rows when
    `one_thread_suits` says so."""
    return _limited(one_thread_suits(rows, busy))


def _limited(one_thread: bool) -> AbstractContextManager:
    return _controller().limit(limits=1) if one_thread else nullcontext()


def threads_per_trial(objective, rows: int, busy=machine_busy):
    """The Optuna objective on `rows` training rows, each trial run under `fit_threads`; the
    trial records whether its fits were limited to one native thread (user attribute
    `one_thread`)."""

    def limited(trial):
        one_thread = one_thread_suits(rows, busy)
        trial.set_user_attr("one_thread", one_thread)
        with _limited(one_thread):
            return objective(trial)

    return limited
