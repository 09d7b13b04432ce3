"""When a fanned-out search calls a batch lost: the rule the parent applies every poll."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from flows.fanout import Batch, is_lost

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _trial(state: TrialState, ended_seconds_ago: float | None = None):
    ended = None if ended_seconds_ago is None else NOW - timedelta(seconds=ended_seconds_ago)
    return SimpleNamespace(state=state, datetime_complete=ended)


def _batch(state="RUNNING", trials=(), submitted_seconds_ago=10.0, final=False):
    return Batch("run", (NOW - timedelta(seconds=submitted_seconds_ago)).timestamp(),
                 state=state, final=final, trials=list(trials))


@pytest.mark.parametrize(
    ("batch", "lost"),
    [
        (_batch(trials=[_trial(TrialState.RUNNING)]), False),  # mid-trial: its heartbeat vouches
        (_batch(trials=[_trial(TrialState.COMPLETE, 5)]), False),  # between trials
        (_batch(trials=[_trial(TrialState.COMPLETE, 50)]), True),  # idle past the grace
        (_batch(trials=[_trial(TrialState.FAIL, 50), _trial(TrialState.COMPLETE, 70)]), True),
        (_batch(trials=[], submitted_seconds_ago=100), False),  # still importing
        (_batch(trials=[], submitted_seconds_ago=300), True),  # never ran a trial
        (_batch(state="SCHEDULED", submitted_seconds_ago=900), False),  # waiting for a worker
        (_batch(state="COMPLETED", trials=[_trial(TrialState.COMPLETE, 500)], final=True), False),
    ],
)
def test_is_lost(batch, lost):
    assert is_lost(batch, NOW.timestamp(), idle_grace_s=40, startup_grace_s=240) is lost
