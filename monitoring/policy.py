"""Whether to retrain: drift confirmed in N of the last M checks, and not within a cooldown."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Action = Literal["triggered", "not_needed", "cooldown"]


@dataclass(frozen=True)
class RetrainDecision:
    action: Action
    reason: str  # one sentence a person can read, with the numbers


def is_drift(drift_share: float, threshold: float) -> bool:
    """A check finds drift when the share of drifted columns reaches the threshold."""
    return drift_share >= threshold


def decide_retraining(
    *,
    drifted_now: bool,
    recent: Sequence[bool] = (),
    windows_needed: int = 1,
    window_count: int = 1,
    last_triggered_at: datetime | None,
    now: datetime,
    cooldown: timedelta,
) -> RetrainDecision:
    """`recent` holds earlier checks' drift flags, oldest first; the current check is appended to them."""
    if not 1 <= windows_needed <= window_count:
        raise ValueError(
            f"need 1 <= windows_needed <= window_count, got {windows_needed} of {window_count}"
        )
    for name, moment in (("now", now), ("last_triggered_at", last_triggered_at)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    flags = [*recent, drifted_now][-window_count:]
    drifted = sum(flags)
    # Fewer checks than window_count so far: the missing ones count as not drifted.
    counted = (
        f"drift in {drifted} of the last {len(flags)} checks (needed {windows_needed} of {window_count})"
    )
    if drifted < windows_needed:
        return RetrainDecision("not_needed", f"No retraining: {counted}.")
    if last_triggered_at is None:
        return RetrainDecision("triggered", f"Retraining triggered: {counted}; never triggered before.")
    ends = last_triggered_at + cooldown
    if now < ends:
        return RetrainDecision(
            "cooldown",
            f"Drift confirmed ({counted}), but retraining was last triggered at "
            f"{last_triggered_at.isoformat()} and the {_duration(cooldown)} cooldown ends at "
            f"{ends.isoformat()}.",
        )
    return RetrainDecision(
        "triggered",
        f"Retraining triggered: {counted}; the {_duration(cooldown)} cooldown since "
        f"{last_triggered_at.isoformat()} ended at {ends.isoformat()}.",
    )


def _duration(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"
