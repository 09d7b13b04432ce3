"""Retraining data: feedback labels, kept as text, join the original data as its own labels."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flows.retrain import _like

CASES = {
    # id: (original labels, added labels, labels once added, their dtype)
    "int-labels-as-text": ([0, 1, 1], ["1", "0"], [1, 0], "int64"),
    "bool-labels-as-text": ([True, False], ["False", "True"], [False, True], "bool"),
    "text-labels-stay": (["adelie", "gentoo"], ["gentoo"], ["gentoo"], "object"),
    "unknown-label-kept-as-given": ([0, 1], ["1", "7"], [1, "7"], "object"),
}


@pytest.mark.parametrize(
    ("original", "added", "expected", "dtype"), list(CASES.values()), ids=list(CASES)
)
def test_added_labels_take_the_original_form(original, added, expected, dtype):
    """Given labelled rows whose labels came back as text, when made like the original data,
    then each label the original holds is that label again, so no class appears twice."""
    rows = pd.DataFrame({"x": range(len(added)), "y": added})

    like = _like(rows, pd.DataFrame({"y": original}), "y")

    assert like["y"].tolist() == expected
    assert str(like["y"].dtype) == dtype
    assert like["x"].tolist() == list(range(len(added)))


@pytest.mark.parametrize(
    ("rows", "original"),
    [
        (pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [0, 1]})),
        (pd.DataFrame({"y": ["1"]}), pd.DataFrame({"x": [1.0]})),
    ],
    ids=["rows-without-target", "original-without-target"],
)
def test_rows_without_a_shared_target_are_left_alone(rows, original):
    """Given one side has no target column, when made like the original, then nothing changes."""
    assert _like(rows, original, "y").equals(rows)


def test_retraining_reads_only_the_feedback_of_its_window(tmp_path):
    """Given feedback received 40 days ago and an hour ago, a 30-day window adds only the
    recent request's rows (and reads no older part)."""
    from flows.retrain import labelled_live_rows
    from monitoring.traffic import FEEDBACK, TRAFFIC, LocalFiles, TrafficWriter, hour_of

    now = datetime.now(UTC)
    writer = TrafficWriter(LocalFiles(tmp_path), "m")
    for request_id, age in (("old", timedelta(days=40)), ("new", timedelta(hours=1))):
        moment = now - age
        writer.add(TRAFFIC, hour_of(moment), _served(request_id, moment))
        writer.add(FEEDBACK, hour_of(moment), _labels(request_id, moment))
    writer.close()

    rows = labelled_live_rows(LocalFiles(tmp_path), "m", "species", days=30, now=now)

    assert rows["request_id"].tolist() == ["new", "new"]
    assert rows["species"].tolist() == ["yes", "no"]


def _served(request_id: str, moment: datetime) -> dict:
    return {"x": np.array([1.0, 2.0]), "request_id": np.array([request_id] * 2, dtype=object),
            "record_index": np.arange(2),
            "served_at": np.full(2, np.datetime64(moment.replace(tzinfo=None), "us"))}


def _labels(request_id: str, moment: datetime) -> dict:
    from monitoring.traffic import LABEL, hour_of

    return {"request_id": np.array([request_id] * 2, dtype=object), "record_index": np.arange(2),
            LABEL: np.array(["yes", "no"], dtype=object),
            "served_hour": np.array([hour_of(moment)] * 2, dtype=object),
            "received_at": np.full(2, np.datetime64(moment.replace(tzinfo=None), "us"))}


@pytest.mark.parametrize(
    ("trigger", "retrain_on_feedback", "adds"),
    [("drift", False, False), ("drift", True, True), ("quality", False, True), ("quality", True, True)],
)
def test_a_quality_retraining_always_learns_from_the_live_labels(trigger, retrain_on_feedback, adds):
    from flows.retrain import adds_feedback

    assert adds_feedback(trigger, retrain_on_feedback) is adds


@pytest.mark.parametrize(("given", "expected"), [("", "drift"), (None, "drift"), ("quality", "quality")])
def test_an_event_without_a_trigger_is_a_drift_retraining(given, expected):
    from flows.retrain import RetrainParameters

    assert RetrainParameters(model="m", trigger=given).trigger == expected


def test_an_unknown_trigger_is_refused():
    from pydantic import ValidationError

    from flows.retrain import RetrainParameters

    with pytest.raises(ValidationError, match="trigger must be one of drift, quality"):
        RetrainParameters(model="m", trigger="whim")
