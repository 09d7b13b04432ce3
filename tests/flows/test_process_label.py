"""Which process runs a flow run, and whether it is gone: what `mlops up` crashes runs by."""

import socket
import subprocess
import sys

from flows.recovery import _start_ticks, process_is_gone, this_process


def test_this_process_is_not_gone():
    assert not process_is_gone(this_process())


def test_a_process_is_gone_once_it_ends_or_its_pid_is_used_again():
    """Given a child's label, it is not gone while the child runs and gone once it ended; a
    label with this process's pid but another start time (the pid used again) is gone."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    label = f"{socket.gethostname()}:{child.pid}:{_start_ticks(child.pid)}"
    running = process_is_gone(label)
    child.kill()
    child.wait()
    host, pid, _ = this_process().split(":")

    assert not running
    assert process_is_gone(label)
    assert process_is_gone(f"{host}:{pid}:1")


def test_a_process_on_another_machine_is_not_known_to_be_gone():
    assert not process_is_gone("some-other-host:1:1")
