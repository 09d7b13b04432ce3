"""The challenger against the champion on live labels (no servers): which rows count, and
the gate's verdict on them."""

import numpy as np
import pandas as pd
import pytest
from synthetic import binary_frame, regression_frame

from experiments.contract import infer_contract
from experiments.pipelines import build_pipeline, feature_frame
from experiments.spec import ExperimentSpec
from monitoring.challenger import Contender, Incomparable, compare_live, paired_rows
from monitoring.traffic import CHALLENGER_VERSION


def _spec(task: str, target: str, min_labelled: int = 100) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": "m", "task": task, "data": {"source": "x.csv", "target": target},
        "monitoring": {"min_labelled": min_labelled}})


def _contender(frame: pd.DataFrame, target: str, task: str, family: str, version: str) -> Contender:
    contract = infer_contract(frame, target, task)
    pipeline = build_pipeline(task, family, {}, contract.numeric, contract.categorical, seed=0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame[target])
    return Contender(version, pipeline, contract)


@pytest.fixture(scope="module")
def xor():
    """On XOR labels a forest is far better than a logistic regression (which cannot learn it)."""
    train = binary_frame(n=400, seed=1)
    return (_contender(train, "label", "classification", "logistic_regression", "1"),
            _contender(train, "label", "classification", "random_forest", "2"))


def test_a_clearly_better_challenger_wins(xor):
    linear, forest = xor
    live = binary_frame(n=200, seed=2)

    found = compare_live(live, linear, forest, _spec("classification", "label"))

    assert found.wins is True and found.n == 200 and found.metric == "roc_auc"
    assert found.challenger_score > 0.85 and found.champion_score < 0.65
    assert found.delta == pytest.approx(found.challenger_score - found.champion_score)
    assert found.p_value < 0.05 and "wins" in found.reason


def test_a_worse_challenger_does_not_win(xor):
    linear, forest = xor

    found = compare_live(binary_frame(n=200, seed=2), forest, linear, _spec("classification", "label"))

    assert found.wins is False and found.delta < 0 and found.p_value > 0.5
    assert found.champion_version == "2" and found.challenger_version == "1"


def test_the_same_model_does_not_win(xor):
    _, forest = xor
    twin = Contender("3", forest.pipeline, forest.contract)

    found = compare_live(binary_frame(n=200, seed=2), forest, twin, _spec("classification", "label"))

    assert found.wins is False and found.delta == 0


def test_too_few_labelled_rows_never_win(xor):
    """A clear win on 60 rows is reported, but does not count below min_labelled (100)."""
    linear, forest = xor

    found = compare_live(binary_frame(n=60, seed=2), linear, forest, _spec("classification", "label"))

    assert found.n == 60 and found.delta > 0 and found.wins is False
    assert "at least 100 are needed" in found.reason


def test_no_rows_give_no_scores(xor):
    linear, forest = xor

    found = compare_live(binary_frame(n=0, seed=2), linear, forest, _spec("classification", "label"))

    assert (found.n, found.champion_score, found.p_value, found.wins) == (0, None, None, False)


def test_regression_orients_delta_so_that_positive_is_better():
    """rmse is smaller when better: a forest beats a ridge on the non-linear target with a
    positive delta and a lower rmse."""
    train = regression_frame(n=400, seed=3)
    train["y"] = train["y"] ** 2  # a curve no ridge follows
    live = regression_frame(n=200, seed=4)
    live["y"] = live["y"] ** 2
    ridge = _contender(train, "y", "regression", "ridge", "1")
    forest = _contender(train, "y", "regression", "random_forest", "2")

    found = compare_live(live, ridge, forest, _spec("regression", "y"))

    assert found.metric == "rmse" and found.challenger_score < found.champion_score
    assert found.delta > 0 and found.wins is True


def test_classifiers_of_other_classes_cannot_be_compared(xor):
    linear, _ = xor
    other = binary_frame(n=200, seed=5)
    other["label"] = np.where(other["label"] == "yes", "up", "down")
    stranger = _contender(other, "label", "classification", "logistic_regression", "4")

    with pytest.raises(Incomparable, match="classes"):
        compare_live(binary_frame(n=200, seed=2), linear, stranger, _spec("classification", "label"))


def test_only_rows_the_two_versions_scored_are_paired():
    rows = pd.DataFrame({"model_version": ["1", "1", "2", "1"],
                         CHALLENGER_VERSION: ["2", "3", "2", "2"], "x": [0, 1, 2, 3]})

    assert paired_rows(rows, "1", "2")["x"].tolist() == [0, 3]
    assert paired_rows(rows.drop(columns=CHALLENGER_VERSION), "1", "2").empty
