"""Who served when: every period a version held `champion`, kept in the registry.

Each move of `champion` adds one registered-model tag `mlops.champion_period.<seq>` holding
the period's start as JSON ({"version", "from", "by", "reason"}). One tag per move, written
whole, so a move is recorded in one write and a version may hold `champion` many times; a
period ends where the next one begins. Moves are serialized by the caller (the model's
promotion lock), which is what makes the next sequence number safe to take.

Models promoted before this log existed have only the per-version tags (`mlops.champion_from`,
`mlops.champion_until`, `mlops.promotion`): their history is read from those, and written
into the log at their first move, so it carries on unbroken.
"""

import json
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from registry.search import pages

PERIOD_PREFIX = "mlops.champion_period."
FROM_TAG = "mlops.champion_from"
UNTIL_TAG = "mlops.champion_until"
REASON_TAG = "mlops.promotion"
BY_TAG = "mlops.promoted_by"
GATE = "gate"
# A registered model's tag holds 5000 characters in MLflow's SQL stores; the version's own
# `mlops.promotion` tag keeps the full reason.
MAX_LOGGED_REASON = 3000


@dataclass(frozen=True)
class Period:
    """One time a version took `champion`: when, who moved it (`gate` or a person), why."""

    version: str
    start: str
    by: str
    reason: str


def period_key(seq: int) -> str:
    return f"{PERIOD_PREFIX}{seq:06d}"


def encode(period: Period) -> str:
    return json.dumps({"version": period.version, "from": period.start, "by": period.by,
                       "reason": period.reason[:MAX_LOGGED_REASON]}, ensure_ascii=False)


def logged_periods(model_tags: dict[str, str]) -> list[Period]:
    """The periods in a registered model's tags, in the order they began."""
    found = []
    for key in sorted(k for k in model_tags if k.startswith(PERIOD_PREFIX)):
        record = json.loads(model_tags[key])
        found.append(Period(str(record["version"]), record["from"], record.get("by") or GATE,
                            record.get("reason") or ""))
    return found


def legacy_periods(version_tags: dict[str, dict[str, str]]) -> list[Period]:
    """The periods the per-version tags tell, by version: before the log, each version held
    `champion` at most once and only the gate moved it."""
    held = [Period(str(version), tags[FROM_TAG], tags.get(BY_TAG) or GATE, tags.get(REASON_TAG, ""))
            for version, tags in version_tags.items() if tags.get(FROM_TAG)]
    return sorted(held, key=lambda p: (p.start, int(p.version)))


def next_seq(model_tags: dict[str, str]) -> int:
    seqs = [int(k.removeprefix(PERIOD_PREFIX)) for k in model_tags if k.startswith(PERIOD_PREFIX)]
    return max(seqs, default=0) + 1


def as_history(periods: list[Period]) -> list[dict[str, str | None]]:
    """Oldest first, each period ending where the next begins; the last one is open."""
    ends = [p.start for p in periods[1:]] + [None] if periods else []
    return [{"version": p.version, "from": p.start, "until": until, "by": p.by, "reason": p.reason}
            for p, until in zip(periods, ends, strict=True)]


def rollback_target(periods: list[Period], current: str) -> str | None:
    """The version that held `champion` just before CURRENT's present period, or None.

    A champion set by hand (no period of its own) counts as having followed the last period."""
    i = len(periods)
    while i and periods[i - 1].version == current:
        i -= 1
    return periods[i - 1].version if i else None


def _version_tags(client: MlflowClient, name: str) -> dict[str, dict[str, str]]:
    return {str(v.version): dict(v.tags)
            for v in pages(client.search_model_versions, filter_string=f"name = '{name}'")}


def champion_periods(client: MlflowClient, name: str) -> list[Period]:
    """Every period of NAME's `champion`, oldest first (from the per-version tags for a model
    moved only before the log existed)."""
    logged = logged_periods(client.get_registered_model(name).tags)
    return logged or legacy_periods(_version_tags(client, name))


def champion_history(client: MlflowClient, name: str) -> list[dict[str, str | None]]:
    """Every version that held `champion`, oldest first: version, from, until, by, reason."""
    return as_history(champion_periods(client, name))


def log_period(client: MlflowClient, name: str, period: Period) -> None:
    """Add PERIOD to NAME's log (under the model's promotion lock), first writing in the
    history of a model moved before the log existed."""
    tags = client.get_registered_model(name).tags
    seq = next_seq(tags)
    if seq == 1:
        earlier = legacy_periods(_version_tags(client, name))
        for n, told in enumerate(earlier, start=1):
            client.set_registered_model_tag(name, period_key(n), encode(told))
        seq = len(earlier) + 1
    client.set_registered_model_tag(name, period_key(seq), encode(period))
