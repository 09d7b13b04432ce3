"""Waiting on a condition with a deadline, rather than for a fixed time."""

import time


def wait_for(condition, timeout_s: float = 5.0, interval_s: float = 0.02) -> bool:
    """Whether `condition()` came true before the deadline (checked once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())
