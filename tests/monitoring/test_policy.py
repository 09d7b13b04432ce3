"""Retraining policy: drift confirmed in N of the last M checks, outside the cooldown."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitoring.policy import decide_retraining, is_drift

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.mark.parametrize(
    ("share", "threshold", "expected"),
    [
        (0.0, 0.3, False),
        (0.29, 0.3, False),
        (0.3, 0.3, True),  # exactly at the threshold counts as drift
        (0.31, 0.3, True),
        (1.0, 1.0, True),
        (0.0, 0.0, True),
    ],
)
def test_is_drift(share, threshold, expected):
    assert is_drift(share, threshold) is expected


@pytest.mark.parametrize(
    ("drifted_now", "recent", "needed", "count", "last", "expected"),
    [
        # 1 of 1 (the defaults): the current check alone decides
        (False, (), 1, 1, None, "not_needed"),
        (True, (), 1, 1, None, "triggered"),
        (False, (True, True, True), 1, 1, None, "not_needed"),  # earlier flags outside the window
        # 2 of the last 3
        (True, (False, False), 2, 3, None, "not_needed"),
        (True, (True, False), 2, 3, None, "triggered"),
        (False, (True, True), 2, 3, None, "triggered"),  # confirmed even though the current check is clean
        (True, (True, False, False), 2, 3, None, "not_needed"),  # the oldest True fell out of the window
        (True, (), 2, 3, None, "not_needed"),  # too few checks yet: the missing ones count as clean
        # 3 of 3
        (True, (True, True), 3, 3, None, "triggered"),
        (True, (False, True, True), 3, 3, None, "triggered"),
        (True, (True, False), 3, 3, None, "not_needed"),
        # cooldown applies only once drift is confirmed
        (True, (), 1, 1, NOW - timedelta(hours=1), "cooldown"),
        (True, (), 1, 1, NOW - DAY + timedelta(seconds=1), "cooldown"),
        (True, (), 1, 1, NOW - DAY, "triggered"),  # cooldown exactly elapsed
        (True, (), 1, 1, NOW - 2 * DAY, "triggered"),
        (False, (), 1, 1, NOW - timedelta(hours=1), "not_needed"),
    ],
)
def test_decide_retraining(drifted_now, recent, needed, count, last, expected):
    decision = decide_retraining(
        drifted_now=drifted_now,
        recent=recent,
        windows_needed=needed,
        window_count=count,
        last_triggered_at=last,
        now=NOW,
        cooldown=DAY,
    )
    assert decision.action == expected


def test_reason_gives_the_counts():
    decision = decide_retraining(
        drifted_now=True, recent=[True, False], windows_needed=2, window_count=3,
        last_triggered_at=None, now=NOW, cooldown=DAY,
    )
    assert decision.reason == (
        "Retraining triggered: drift in 2 of the last 3 checks (needed 2 of 3); never triggered before."
    )


def test_cooldown_reason_says_when_it_ends():
    decision = decide_retraining(
        drifted_now=True, last_triggered_at=NOW - timedelta(hours=6), now=NOW, cooldown=DAY
    )
    assert decision.action == "cooldown"
    assert "24 h cooldown ends at 2026-11-23T06:00:00+00:00" in decision.reason


def test_short_cooldowns_are_given_in_minutes():
    decision = decide_retraining(
        drifted_now=True, last_triggered_at=NOW - timedelta(minutes=10), now=NOW,
        cooldown=timedelta(minutes=30),
    )
    assert "the 30 min cooldown ends at 2026-11-22T12:20:00+00:00" in decision.reason


def test_not_needed_reason_gives_the_counts():
    decision = decide_retraining(drifted_now=False, last_triggered_at=None, now=NOW, cooldown=DAY)
    assert decision.reason == "No retraining: drift in 0 of the last 1 checks (needed 1 of 1)."


@pytest.mark.parametrize(("needed", "count"), [(0, 1), (2, 1), (4, 3), (-1, 3)])
def test_window_arguments_are_checked(needed, count):
    with pytest.raises(ValueError, match="windows_needed <= window_count"):
        decide_retraining(
            drifted_now=True, windows_needed=needed, window_count=count,
            last_triggered_at=None, now=NOW, cooldown=DAY,
        )


@pytest.mark.parametrize(
    ("now", "last"),
    [(datetime(2026, 11, 22, 12, 0), None), (NOW, datetime(2026, 11, 21, 12, 0))],
)
def test_naive_datetimes_are_refused(now, last):
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_retraining(drifted_now=True, last_triggered_at=last, now=now, cooldown=DAY)


def test_other_time_zones_compare_by_instant():
    # 13:00 in UTC+2 is 11:00 UTC: one hour before NOW, so still within the cooldown.
    last = datetime(2026, 11, 22, 13, 0, tzinfo=timezone(timedelta(hours=2)))
    decision = decide_retraining(
        drifted_now=True, last_triggered_at=last, now=NOW, cooldown=timedelta(hours=2)
    )
    assert decision.action == "cooldown"
