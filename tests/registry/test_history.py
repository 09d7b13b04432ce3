"""Who served when: the champion's periods, read from the log or from the per-version tags of
models promoted before the log, and where a rollback goes."""

import json

import pytest

from registry.champion import Move, move_champion
from registry.history import (
    Period,
    as_history,
    champion_history,
    legacy_periods,
    logged_periods,
    period_key,
    rollback_target,
)

NAME = "history-test"


def period(version: str, start: str, by: str = "gate", reason: str = "") -> Period:
    return Period(version, start, by, reason)


def test_logged_periods_are_read_in_sequence_order_not_tag_order():
    """Given periods whose tags come in any order (and one at the same second as another),
    they are read in the order they were logged."""
    tags = {period_key(n): json.dumps({"version": v, "from": at, "by": by, "reason": why})
            for n, v, at, by, why in [(10, "1", "t2", "ann", "undo"), (2, "2", "t2", "ann", "try"),
                                      (1, "1", "t1", "gate", "no champion yet")]}
    tags["mlops.something_else"] = "x"

    assert logged_periods(tags) == [period("1", "t1", "gate", "no champion yet"),
                                    period("2", "t2", "ann", "try"), period("1", "t2", "ann", "undo")]


def test_each_period_ends_where_the_next_begins_and_the_last_is_open():
    history = as_history([period("1", "t1"), period("2", "t2", "ann", "why"), period("1", "t3")])

    assert [(h["version"], h["from"], h["until"]) for h in history] == [
        ("1", "t1", "t2"), ("2", "t2", "t3"), ("1", "t3", None)]
    assert (history[1]["by"], history[1]["reason"]) == ("ann", "why")
    assert as_history([]) == []


def test_legacy_tags_make_one_period_per_version_that_held_champion():
    """Given versions tagged by the gate before the log existed (one never champion), the
    history is theirs, ordered by when each took champion, moved by the gate."""
    versions = {
        "3": {"mlops.champion_from": "2026-01-03T00:00:00+00:00", "mlops.promotion": "wins: b"},
        "1": {"mlops.champion_from": "2026-01-01T00:00:00+00:00",
              "mlops.champion_until": "2026-01-03T00:00:00+00:00", "mlops.promotion": "no champion yet"},
        "2": {"mlops.promotion": "not better: a"},
    }

    assert legacy_periods(versions) == [
        period("1", "2026-01-01T00:00:00+00:00", "gate", "no champion yet"),
        period("3", "2026-01-03T00:00:00+00:00", "gate", "wins: b")]


@pytest.mark.parametrize(
    ("held", "current", "target"),
    [(["1"], "1", None),
     (["1", "2"], "2", "1"),
     (["1", "2", "1"], "1", "2"),  # a rollback undone is a rollback too
     (["1", "2", "3", "2"], "2", "3"),
     (["1", "2"], "3", "2"),  # champion set by hand, with no period: the last period came before
     ([], "1", None)],
)
def test_rollback_goes_to_the_version_before_the_current_period(held, current, target):
    periods = [period(v, f"t{i}") for i, v in enumerate(held)]

    assert rollback_target(periods, current) == target


@pytest.fixture
def versions(sqlite_mlflow, tmp_path):
    """A registered model with three versions (no files needed: the registry is what is read)."""
    client = sqlite_mlflow
    client.create_registered_model(NAME)
    for _ in range(3):
        client.create_model_version(NAME, source=str(tmp_path / "model"))
    return client


def tags_of(client, version: str) -> dict:
    return client.get_model_version(NAME, version).tags


def test_a_version_that_serves_twice_has_two_periods_and_its_tags_tell_the_latest(versions):
    """Given the gate's champion v1, when a person promotes v2, rolls back to v1 and promotes
    v2 again, then the history has four periods in that order, and v2's tags hold its latest
    (open) period while v1's says until when it served last."""
    client = versions
    move_champion(client, NAME, "1", Move("gate", "no champion yet", None))
    move_champion(client, NAME, "2", Move("ann", "try v2", "1"))
    move_champion(client, NAME, "1", Move("bob", "v2 is slow", "2"))
    move_champion(client, NAME, "2", Move("ann", "fixed", "1"))

    history = champion_history(client, NAME)

    assert [(h["version"], h["by"], h["reason"]) for h in history] == [
        ("1", "gate", "no champion yet"), ("2", "ann", "try v2"), ("1", "bob", "v2 is slow"),
        ("2", "ann", "fixed")]
    assert [h["until"] for h in history[:-1]] == [h["from"] for h in history[1:]]
    assert history[-1]["until"] is None
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    v2, v1 = tags_of(client, "2"), tags_of(client, "1")
    assert (v2["mlops.champion_from"], v2["mlops.promoted_by"], v2["mlops.promotion"]) == (
        history[-1]["from"], "ann", "fixed")
    assert "mlops.champion_until" not in v2
    assert v1["mlops.champion_until"] == history[-1]["from"]
    assert v1["mlops.promoted_by"] == "bob"


def test_a_model_from_before_the_log_keeps_its_history_through_its_next_move(versions):
    """Given a model the gate promoted before the log existed (only per-version tags), its
    history reads from those; after a person's move the log starts with them, then the move."""
    client = versions
    for version, tags in {"1": {"mlops.champion_from": "2026-01-01T00:00:00+00:00",
                                "mlops.champion_until": "2026-01-02T00:00:00+00:00",
                                "mlops.promotion": "no champion yet"},
                          "2": {"mlops.champion_from": "2026-01-02T00:00:00+00:00",
                                "mlops.promotion": "wins: x"}}.items():
        for key, value in tags.items():
            client.set_model_version_tag(NAME, version, key, value)
    client.set_registered_model_alias(NAME, "champion", "2")
    before = champion_history(client, NAME)

    move_champion(client, NAME, "3", Move("ann", "hand-tuned", "2"))

    assert [(h["version"], h["from"], h["until"], h["by"]) for h in before] == [
        ("1", "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00", "gate"),
        ("2", "2026-01-02T00:00:00+00:00", None, "gate")]
    after = champion_history(client, NAME)
    assert after[:2] == [{**before[0]}, {**before[1], "until": after[2]["from"]}]
    assert (after[2]["version"], after[2]["by"], after[2]["until"]) == ("3", "ann", None)
    assert len(after) == 3


def test_promoting_the_challenger_takes_its_challenger_alias_away(versions):
    client = versions
    move_champion(client, NAME, "1", Move("gate", "no champion yet", None))
    client.set_registered_model_alias(NAME, "challenger", "2")

    move_champion(client, NAME, "2", Move("ann", "looks better live", "1"))

    assert "challenger" not in client.get_registered_model(NAME).aliases
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"


def test_a_reason_too_long_for_a_model_tag_is_shortened_in_the_log_only(versions):
    client = versions
    reason = "r" * 4000

    move_champion(client, NAME, "1", Move("ann", reason, None))

    assert len(champion_history(client, NAME)[0]["reason"]) < len(reason)
    assert tags_of(client, "1")["mlops.promotion"] == reason
