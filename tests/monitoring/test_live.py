"""The champion on checked rows: live quality from labels, and the drift of its predictions."""

import numpy as np
import pandas as pd
import pytest

from experiments.contract import infer_contract
from experiments.metrics import model_output, score
from experiments.pipelines import build_pipeline
from experiments.spec import ExperimentSpec
from monitoring.live import (
    LiveCheck,
    check_prediction_drift,
    judge_live_quality,
    labelled_since,
    write_quality_report,
)


def _rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Label 1 when x1 + x2 > 0 (mostly), numbers as classes, as a model may hold them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n) + shift, rng.normal(size=n) + shift
    label = ((x1 + x2 + rng.normal(scale=0.5, size=n)) > 0).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "label": label})


@pytest.fixture(scope="module")
def champion():
    """A fitted pipeline, its contract, spec, and its holdout roc_auc (as training records it)."""
    train, holdout = _rows(400, 1), _rows(300, 2)
    contract = infer_contract(train, "label", "classification")
    pipeline = build_pipeline("classification", "logistic_regression", {}, ["x1", "x2"], [], 0)
    pipeline.fit(train[["x1", "x2"]], train["label"])
    reference = score("roc_auc", holdout["label"], model_output(
        pipeline, holdout[["x1", "x2"]], "classification"), pipeline.classes_)
    spec = ExperimentSpec.model_validate({
        "name": "live", "task": "classification", "data": {"source": "x.csv", "target": "label"},
        "monitoring": {"min_labelled": 100}})
    return pipeline, contract, spec, reference, train


def _as_feedback(rows: pd.DataFrame) -> pd.DataFrame:
    # /feedback keeps class labels as text
    return rows.assign(label=rows["label"].astype(str))


@pytest.mark.parametrize(("flip", "degraded"), [(False, False), (True, True)])
def test_live_quality_flags_flipped_labels_only(champion, flip, degraded):
    """Given 300 labelled live rows from the training process, their labels as text, the
    champion is judged not degraded; with every label reversed, degraded."""
    pipeline, contract, spec, reference, _ = champion
    live = _rows(300, 3)
    if flip:
        live["label"] = 1 - live["label"]

    quality = judge_live_quality(pipeline, _as_feedback(live), contract, spec, reference)

    assert quality.verdict is not None and quality.verdict.degraded is degraded
    assert quality.verdict.labelled_rows == 300 and quality.verdict.reference == reference
    assert (quality.verdict.value < 0.5) is flip


def test_too_few_labels_give_no_verdict(champion):
    """Given fewer labelled rows than monitoring.min_labelled, quality is null and says why."""
    pipeline, contract, spec, reference, _ = champion
    live = _rows(99, 4)
    live["label"] = 1 - live["label"]

    check = LiveCheck(judge_live_quality(pipeline, _as_feedback(live), contract, spec, reference),
                      None)

    assert check.as_json() == {"quality": None, "prediction_drift": None}
    assert check.degraded is False
    assert "min_labelled" in check.quality.note and check.metrics() == {"quality.labelled_rows": 99}


@pytest.mark.parametrize(("shift", "drifted"), [(0.0, False), (2.0, True)])
def test_prediction_drift(champion, shift, drifted):
    """Given rows like the training data, the champion's predictions keep their mix; shifted
    so that nearly every row is predicted 1, they drift."""
    pipeline, contract, _, _, train = champion

    found = check_prediction_drift(pipeline, train, _rows(300, 5, shift), contract)

    assert found.drifted is drifted
    assert found.kind == "categorical" and found.method == "jensenshannon"


def test_the_record_names_each_figure(champion, tmp_path):
    """Given a judged check, the run gets quality.<metric>, quality.reference,
    quality.labelled_rows and the verdicts as tags; the HTML report is written."""
    pipeline, contract, spec, reference, train = champion
    live = _as_feedback(_rows(200, 6))
    check = LiveCheck(judge_live_quality(pipeline, live, contract, spec, reference),
                      check_prediction_drift(pipeline, train, live, contract))

    write_quality_report(pipeline, live, contract, tmp_path / "quality.html")

    assert set(check.metrics()) >= {"quality.roc_auc", "quality.reference", "quality.labelled_rows",
                                    "prediction_drift_score"}
    assert check.tags()["mlops.quality_degraded"] == "false"
    assert check.as_json()["quality"]["metric"] == "roc_auc"
    assert (tmp_path / "quality.html").stat().st_size > 10_000


def test_only_rows_served_in_the_window_count():
    served = pd.to_datetime(["2026-12-01T10:00", "2026-12-01T11:30"], utc=True)
    rows = pd.DataFrame({"served_at": served, "label": ["1", "0"]})

    kept = labelled_since(rows, pd.Timestamp("2026-12-01T11:00", tz="UTC").to_pydatetime())

    assert kept["label"].tolist() == ["0"]
