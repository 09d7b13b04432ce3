"""Drift between a reference and a current frame, through Evidently, reduced to a DriftSummary."""

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import (
    CATEGORICAL_METHOD,
    CATEGORICAL_THRESHOLD,
    NUMERIC_METHOD,
    NUMERIC_THRESHOLD,
    compute_drift,
    drift_threshold,
)

NUMERIC = ["age", "income", "score"]
CATEGORICAL = ["colour", "plan"]
COLOURS = ["red", "green", "blue", "grey"]
MIX = [0.4, 0.3, 0.2, 0.1]


def frame(
    n: int, seed: int, *, shift: tuple[str, ...] = (), mix=MIX, target_shift: float = 0.0
) -> pd.DataFrame:
    """Numeric and categorical columns with missing values; `shift` moves columns by 1 SD."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({
        "age": rng.normal(40, 10, n),
        "income": rng.lognormal(10, 0.5, n),
        "score": rng.uniform(0, 1, n),
        "colour": rng.choice(COLOURS, n, p=mix).astype(object),
        "plan": rng.choice(["free", "pro"], n, p=[0.7, 0.3]).astype(object),
        "label": rng.normal(0, 1, n) + target_shift,
    })
    for column in shift:
        data[column] += data[column].std()
    data.loc[rng.choice(n, n // 10, replace=False), "colour"] = np.nan
    data.loc[rng.choice(n, n // 20, replace=False), "income"] = np.nan
    return data


def drift(reference, current, **kwargs):
    return compute_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, **kwargs)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(3000, seed=1)


def test_same_distribution_is_not_drifted(reference):
    summary = drift(reference, frame(1000, seed=2))
    assert summary.drifted_columns == ()
    assert summary.drift_share == 0.0
    assert [c.column for c in summary.columns] == NUMERIC + CATEGORICAL
    assert (summary.reference_rows, summary.current_rows, summary.sampled) == (3000, 1000, False)


def test_shifted_numeric_columns_are_named(reference):
    summary = drift(reference, frame(1000, seed=3, shift=("age", "income")))
    assert summary.drifted_columns == ("age", "income")
    assert summary.drift_share == pytest.approx(2 / 5)


def test_changed_category_mix_drifts_that_column(reference):
    summary = drift(reference, frame(1000, seed=4, mix=MIX[::-1]))
    assert summary.drifted_columns == ("colour",)


def test_small_windows_are_judged_against_their_noise(reference):
    # 200 rows: the threshold rises above the 0.1 floor, yet a 1 SD shift is still found.
    summary = drift(reference, frame(200, seed=5, shift=("score",)))
    assert summary.drifted_columns == ("score",)
    score = next(c for c in summary.columns if c.column == "score")
    assert NUMERIC_THRESHOLD < score.threshold < score.score


def test_methods_and_thresholds_are_recorded(reference):
    summary = drift(reference, frame(1000, seed=2))
    by_name = {c.column: c for c in summary.columns}
    for column in NUMERIC:
        assert (by_name[column].kind, by_name[column].method) == ("numeric", NUMERIC_METHOD)
    for column in CATEGORICAL:
        assert (by_name[column].kind, by_name[column].method) == ("categorical", CATEGORICAL_METHOD)
    assert by_name["age"].threshold == pytest.approx(drift_threshold("numeric", 3000, 1000))
    # income has missing values: its noise is judged on the rows that hold a value
    assert by_name["income"].threshold == pytest.approx(drift_threshold("numeric", 2850, 950))
    assert by_name["plan"].threshold == CATEGORICAL_THRESHOLD  # 2 categories: noise below the floor


@pytest.mark.parametrize(
    ("kind", "reference_n", "current_n", "categories", "expected"),
    [
        ("numeric", 20_000, 5_000, 2, NUMERIC_THRESHOLD),  # large samples: the floor
        ("numeric", 300, 200, 2, 3.5 * (1 / 300 + 1 / 200) ** 0.5),
        ("categorical", 20_000, 5_000, 20, CATEGORICAL_THRESHOLD),
        ("categorical", 300, 200, 5, 0.1176),  # sqrt(chi2_0.99(4) / 8 * (1/300 + 1/200))
    ],
)
def test_drift_threshold(kind, reference_n, current_n, categories, expected):
    assert drift_threshold(kind, reference_n, current_n, categories) == pytest.approx(expected, abs=1e-4)


def test_large_inputs_are_sampled_deterministically():
    reference, current = frame(1500, seed=6), frame(1200, seed=7)
    first = drift(reference, current, max_rows=1000, seed=3)
    again = drift(reference, current, max_rows=1000, seed=3)
    other = drift(reference, current, max_rows=1000, seed=4)
    assert (first.reference_rows, first.current_rows, first.sampled) == (1000, 1000, True)
    assert first.max_rows == 1000
    assert first == again
    assert [c.score for c in first.columns] != [c.score for c in other.columns]


@pytest.mark.parametrize("side", ["reference", "current"])
def test_missing_column_is_refused(reference, side):
    frames = {"reference": reference, "current": frame(300, seed=8)}
    frames[side] = frames[side].drop(columns="plan")
    with pytest.raises(ValueError, match=f"columns missing from the {side} data: plan"):
        drift(frames["reference"], frames["current"])


def test_empty_frame_is_refused(reference):
    with pytest.raises(ValueError, match="the current data is empty"):
        drift(reference, reference.iloc[:0])


def test_text_in_a_numeric_column_is_refused(reference):
    current = frame(300, seed=9).astype({"age": str})
    with pytest.raises(ValueError, match="non-numeric values in the current data: age"):
        drift(reference, current)


def test_html_report_is_written_and_changes_nothing(reference, tmp_path):
    path = tmp_path / "drift.html"
    current = frame(300, seed=10, shift=("age",))
    with_html = drift(reference, current, html_path=path)
    assert path.stat().st_size > 1000
    assert "<html" in path.read_text(encoding="utf-8")[:1000].lower()
    assert with_html == drift(reference, current)


def test_target_drift_is_reported_apart(reference):
    summary = drift(reference, frame(1000, seed=11, target_shift=1.0), target="label")
    assert summary.target is not None
    assert (summary.target.column, summary.target.kind, summary.target.drifted) == ("label", "numeric", True)
    assert summary.drift_share == 0.0
    assert "label" not in [c.column for c in summary.columns]


def test_class_labels_stored_as_numbers_can_be_categorical():
    reference, current = frame(1000, seed=13), frame(1000, seed=14)
    reference["label"] = (reference["label"] > 0).astype(int)
    current["label"] = (current["label"] > 1).astype(int)  # far fewer positives
    summary = drift(reference, current, target="label", target_kind="categorical")
    assert summary.target is not None
    assert (summary.target.method, summary.target.drifted) == (CATEGORICAL_METHOD, True)


def test_integer_codes_match_when_missing_values_make_them_float():
    rng = np.random.default_rng(15)
    reference = pd.DataFrame({"x": rng.normal(size=800), "code": rng.integers(1, 4, 800)})
    current = pd.DataFrame({"x": rng.normal(size=800), "code": rng.integers(1, 4, 800).astype(float)})
    current.loc[:5, "code"] = np.nan
    summary = compute_drift(reference, current, numeric=["x"], categorical=["code"])
    assert summary.drifted_columns == ()


def test_target_absent_from_current_is_skipped(reference):
    summary = drift(reference, frame(300, seed=12).drop(columns="label"), target="label")
    assert summary.target is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reference_rows", "window_rows"), [(300, 200), (300, 5_000), (50_000, 200), (50_000, 5_000)]
)
def test_stationary_windows_are_not_drifted(reference_rows, window_rows):
    # The acceptance for the chosen thresholds: fresh samples of the training distribution
    # are called drifted (drift_share >= 0.3) in at most 1 of 10 windows.
    reference = frame(reference_rows, seed=100)
    shares = [drift(reference, frame(window_rows, seed=200 + i)).drift_share for i in range(10)]
    assert sum(share >= 0.3 for share in shares) <= 1
