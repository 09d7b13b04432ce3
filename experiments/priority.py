"""Helper processes of a training yield the CPU to its search.

A training starts two helpers beside its search: the data profile (experiments/profile.py:
~8 CPU-s on the bench's data, most of it importing Evidently and scikit-learn) and the trial
writer (experiments/trial_writer.py: ~3.5 CPU-s, most of it importing MLflow). On two cores
they competed with the search, which fits on one thread: in four alternated pairs of a
20-trial `mlops train` (issue 13's bench), the search took 13.65-14.02 s with helpers at the
training's own priority and 12.91-13.61 s with them at niceness +10, whole trainings
19.2-20.4 s against 18.6-19.4 s. Neither helper is awaited before the search ends.

Only standard-library imports here: the trial writer imports this module in its own process.
"""

import os

HELPER_NICENESS = 10


def yield_to_training(pid: int) -> None:
    """Lower a just-started helper process's CPU priority below the training's.

    Call it before the helper starts threads of its own: on Linux a priority belongs to a
    thread, and new threads inherit the one of the thread that starts them. A helper that
    already ended, or a system that refuses, leaves the helper as it was."""
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, mine + HELPER_NICENESS))
    except OSError:
        pass
