"""Retraining data: feedback labels, kept as text, join the original data as its own labels."""

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
