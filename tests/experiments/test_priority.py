"""A training's helper processes run below the training's CPU priority (no servers)."""

import os
import subprocess
import sys

from synthetic import binary_frame

from experiments.priority import HELPER_NICENESS, yield_to_training
from experiments.profile import close_profile, start_profile
from experiments.trial_writer import WriterProcess


def _niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _expected() -> int:
    return min(19, _niceness(0) + HELPER_NICENESS)


def test_the_data_profile_process_yields_to_the_training():
    pending = start_profile(binary_frame(), "label", "classification", ["x1", "x2"], [], seed=0)
    try:
        # It imports Evidently for seconds before it could end.
        assert _niceness(pending.process.pid) == _expected()
    finally:
        close_profile(pending)


def test_the_trial_writer_process_yields_to_the_training():
    writer = WriterProcess("http://127.0.0.1:9", "0", "no-run")  # nothing is written to it
    try:
        assert _niceness(writer._process.pid) == _expected()
    finally:
        writer.close()


def test_a_helper_that_already_ended_is_left_alone():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    yield_to_training(ended.pid)  # no error: a pid that is gone (or reused, not ours) is skipped
