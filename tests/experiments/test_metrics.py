"""Metrics on hand-computable examples, for both tasks, and the holdout metric sets."""

import math

import numpy as np
import pytest

from experiments.metrics import (
    binary_roc_auc,
    defined_score,
    holdout_metrics,
    model_output,
    resampled_scores,
    score,
)


def probabilities(positive: list[float]) -> np.ndarray:
    """Two-column class probabilities from the probability of the second class."""
    p = np.asarray(positive)
    return np.column_stack([1 - p, p])


# Binary: positives score 0.35 and 0.8, negatives 0.1 and 0.4 -> 3 of 4 pairs ranked right.
BINARY_Y = np.array(["no", "no", "yes", "yes"])
BINARY_OUT = probabilities([0.1, 0.4, 0.35, 0.8])
BINARY_CLASSES = ["no", "yes"]

# Three classes, one-hot-ish rows; row 3 (true 'b') is predicted 'c'.
MULTI_Y = np.array(["a", "b", "c", "b"])
MULTI_OUT = np.array(
    [[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7], [0.2, 0.3, 0.5]]
)
MULTI_CLASSES = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("metric", "y", "output", "classes", "expected"),
    [
        ("roc_auc", BINARY_Y, BINARY_OUT, BINARY_CLASSES, 0.75),
        ("accuracy", BINARY_Y, BINARY_OUT, BINARY_CLASSES, 0.75),
        # predicted no,no,no,yes: the positive class is 'yes' -> tp=1, fn=1, fp=0 -> f1 = 2/3
        ("f1", BINARY_Y, BINARY_OUT, BINARY_CLASSES, 2 / 3),
        ("balanced_accuracy", BINARY_Y, BINARY_OUT, BINARY_CLASSES, 0.75),
        ("log_loss", BINARY_Y, BINARY_OUT, BINARY_CLASSES,
         -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4),
        ("accuracy", MULTI_Y, MULTI_OUT, MULTI_CLASSES, 0.75),
        # per-class f1: a 1, b 2/3 (tp 1, fn 1), c 2/3 (tp 1, fp 1) -> macro 7/9
        ("f1", MULTI_Y, MULTI_OUT, MULTI_CLASSES, 7 / 9),
        # per-class recall: a 1, b 1/2, c 1 -> 5/6
        ("balanced_accuracy", MULTI_Y, MULTI_OUT, MULTI_CLASSES, 5 / 6),
        ("log_loss", MULTI_Y, MULTI_OUT, MULTI_CLASSES,
         -(math.log(0.8) + math.log(0.7) + math.log(0.7) + math.log(0.3)) / 4),
        ("roc_auc", MULTI_Y, np.eye(3)[[0, 1, 2, 1]], MULTI_CLASSES, 1.0),
        ("roc_auc", MULTI_Y, np.full((4, 3), 1 / 3), MULTI_CLASSES, 0.5),
        # every class's column ranks its own rows first (b: 0.7, 0.3 over 0.1, 0.2), though
        # row 4 is misclassified by argmax -> 1
        ("roc_auc", MULTI_Y, MULTI_OUT, MULTI_CLASSES, 1.0),
    ],
    ids=[
        "binary-roc_auc", "binary-accuracy", "binary-f1", "binary-balanced_accuracy",
        "binary-log_loss", "multi-accuracy", "multi-f1", "multi-balanced_accuracy",
        "multi-log_loss", "multi-roc_auc-perfect", "multi-roc_auc-uniform", "multi-roc_auc",
    ],
)
def test_classification_score_matches_the_hand_computed_value(metric, y, output, classes, expected):
    """Given probabilities and labels, when scored, then the metric equals the hand value."""
    assert score(metric, y, output, classes) == pytest.approx(expected)


def test_binary_roc_auc_uses_the_second_class_as_positive():
    """Given classes and columns in the other order, then classes[1] ('no') is the positive
    class scored by column 1, so the AUC is unchanged (0.25 if the classes were mixed up)."""
    swapped = score("roc_auc", BINARY_Y, BINARY_OUT[:, ::-1], ["yes", "no"])

    assert swapped == pytest.approx(0.75)


# y = 1, 2, 3 and predictions 1, 2, 4: one error of 1.
@pytest.mark.parametrize(
    ("metric", "expected"),
    [("rmse", math.sqrt(1 / 3)), ("mae", 1 / 3), ("r2", 0.5)],
)
def test_regression_score_matches_the_hand_computed_value(metric, expected):
    """Given predictions with one error of 1 over 3 rows, then rmse/mae/r2 equal the hand value."""
    y = np.array([1.0, 2.0, 3.0])
    predicted = np.array([1.0, 2.0, 4.0])

    assert score(metric, y, predicted, None) == pytest.approx(expected)


def test_unknown_metric_raises_value_error():
    """Given an unknown metric name, then ValueError names it."""
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        score("auc", BINARY_Y, BINARY_OUT, BINARY_CLASSES)


@pytest.mark.parametrize(
    ("y", "output", "classes"),
    [(BINARY_Y, BINARY_OUT, BINARY_CLASSES), (MULTI_Y, MULTI_OUT, MULTI_CLASSES)],
    ids=["binary", "multiclass"],
)
def test_classification_holdout_metrics_key_set(y, output, classes):
    """Given a classification holdout, then the six classification metrics are returned."""
    result = holdout_metrics("classification", y, output, classes)

    assert set(result) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert all(isinstance(v, float) for v in result.values())


def test_binary_holdout_precision_and_recall_use_the_positive_class():
    """Given the binary example (tp 1, fp 0, fn 1), then precision 1 and recall 1/2."""
    result = holdout_metrics("classification", BINARY_Y, BINARY_OUT, BINARY_CLASSES)

    assert (result["precision"], result["recall"]) == (pytest.approx(1.0), pytest.approx(0.5))


def test_regression_holdout_metrics_key_set():
    """Given a regression holdout, then rmse, mae and r2 are returned."""
    result = holdout_metrics("regression", [1.0, 2.0, 3.0], np.array([1.0, 2.0, 4.0]), None)

    assert result == pytest.approx({"rmse": math.sqrt(1 / 3), "mae": 1 / 3, "r2": 0.5})


class _Model:
    def predict_proba(self, features):
        return np.full((len(features), 2), 0.5)

    def predict(self, features):
        return np.zeros(len(features))


@pytest.mark.parametrize(("task", "shape"), [("classification", (3, 2)), ("regression", (3,))])
def test_model_output_is_probabilities_or_predictions(task, shape):
    """Given a model, then classification uses predict_proba and regression predict."""
    assert model_output(_Model(), np.zeros((3, 1)), task).shape == shape


def test_defined_score_is_none_where_the_metric_has_no_value():
    """Given a sample with one class only, then roc_auc (NaN with a warning) and a metric that
    raises both give None; a defined score comes back as it is."""
    import warnings

    from sklearn.metrics import roc_auc_score

    from experiments.metrics import defined_score

    def raises(y, output):
        raise ValueError("only one class")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing is warned on the way
        assert defined_score(roc_auc_score, np.zeros(5), np.linspace(0, 1, 5)) is None
    assert defined_score(raises, np.zeros(5), np.zeros(5)) is None
    assert defined_score(roc_auc_score, np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9])) == 1.0


def test_binary_roc_auc_is_sklearns_value_with_and_without_ties():
    """The promotion gate's fast AUC gives what sklearn gives, ties (rounded scores) included."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    for size in (2, 7, 80, 301):
        positive = np.arange(size) % 2 == 0
        rng.shuffle(positive)
        for scores in (rng.random(size), np.round(rng.random(size), 1), np.zeros(size)):
            assert binary_roc_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores),
                                                                     abs=1e-12)


@pytest.mark.parametrize(("positive", "scores"), [
    ([True, True, True], [0.1, 0.5, 0.9]),
    ([False, False], [0.1, 0.5]),
    ([True, False, True], [0.1, np.nan, 0.9]),
], ids=["only positives", "only negatives", "a NaN score"])
def test_binary_roc_auc_refuses_what_sklearn_refuses(positive, scores):
    """ValueError, as sklearn raises: the bootstrap skips such a resample."""
    with pytest.raises(ValueError):
        binary_roc_auc(np.array(positive), np.array(scores))


def _one_at_a_time(metric, y, output, classes, rows):
    scores = [defined_score(lambda t, o: score(metric, t, o, classes), y[r], output[r]) for r in rows]
    return np.array([np.nan if s is None else s for s in scores])


def _classification_case(n_classes: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    classes = np.array(["ant", "bee", "cat", "dog"][:n_classes])
    y = classes[rng.integers(0, n_classes, n)]
    output = rng.dirichlet(np.ones(n_classes), n)
    output[rng.random(n) < 0.5, 0] = 0.0  # some certain answers (log_loss's clipping), ties
    output /= output.sum(axis=1, keepdims=True)
    return y, output, classes, rng.integers(0, n, (300, n))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # sklearn's, per resample
@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1", "log_loss", "roc_auc"])
@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("n", [6, 60])  # 6 rows: many resamples miss a class
def test_resampled_scores_are_the_scores_of_each_resample(metric, n_classes, n):
    """Every resample's score, computed at once, is the one `score` gives that resample (NaN
    where `defined_score` says it has none), for binary and multiclass, small and large."""
    y, output, classes, rows = _classification_case(n_classes, n, seed=n_classes * 100 + n)

    at_once = resampled_scores(metric, y, output, classes, rows)

    np.testing.assert_allclose(at_once, _one_at_a_time(metric, y, output, classes, rows),
                               rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_resampled_regression_scores_are_the_scores_of_each_resample(metric):
    rng = np.random.default_rng(7)
    y = np.round(rng.normal(size=8), 1)
    y[:4] = 1.0  # resamples of one repeated value: r2's flat case
    predicted = y + rng.normal(0, 0.2, 8)
    predicted[:2] = y[:2]
    rows = np.vstack([rng.integers(0, 8, (300, 8)), np.zeros((2, 8), int), np.ones((2, 8), int) * 5])

    np.testing.assert_allclose(resampled_scores(metric, y, predicted, None, rows),
                               _one_at_a_time(metric, y, predicted, None, rows),
                               rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_resampled_roc_auc_with_a_score_that_is_not_finite_has_none(n_classes):
    y, output, classes, rows = _classification_case(n_classes, 20, seed=3)
    output[3] = np.nan
    holding_it = (rows == 3).any(axis=1)

    at_once = resampled_scores("roc_auc", y, output, classes, rows)

    assert np.isnan(at_once[holding_it]).all() and not np.isnan(at_once[~holding_it]).all()
    np.testing.assert_allclose(at_once, _one_at_a_time("roc_auc", y, output, classes, rows),
                               rtol=1e-12, atol=1e-12, equal_nan=True)


def test_resampled_scores_leave_a_label_outside_the_classes_to_the_caller():
    y, output, classes, rows = _classification_case(2, 20, seed=1)
    y[0] = "eel"

    assert resampled_scores("f1", y, output, classes, rows) is None
