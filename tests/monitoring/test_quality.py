"""Live quality: the champion's score on live labels against its holdout score.

Samples are simulated from a process whose true score is known by construction, so the
reference below is the score the model really has, not something computed by the rule.
"""

import numpy as np
import pytest

from experiments.metrics import score
from monitoring.quality import QualityRule, judge_quality, trigger_reason

CLASSES = ("no", "yes")


def _accuracy_sample(n: int, right: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels and two-class probabilities of a model that is right with probability `right`."""
    truth = rng.integers(0, 2, n)
    correct = rng.random(n) < right
    predicted = np.where(correct, truth, 1 - truth)
    proba = np.where(predicted == 1, 0.7, 0.3)
    return np.asarray(CLASSES)[truth], np.column_stack([1 - proba, proba])


def _regression_sample(n: int, sigma: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Targets around the predictions with spread `sigma`: the model's true rmse is sigma."""
    predicted = rng.normal(size=n) * 3
    return predicted + rng.normal(scale=sigma, size=n), predicted


def _ranked_sample(n: int, rng, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A model that ranks well (true roc_auc ~0.92); with `flip`, the world's answers reversed."""
    signal = rng.normal(size=n)
    truth = (signal + rng.normal(scale=0.6, size=n)) > 0
    if flip:
        truth = ~truth
    proba = 1 / (1 + np.exp(-2 * signal))
    return np.asarray(CLASSES)[truth.astype(int)], np.column_stack([1 - proba, proba])


def _scorer(metric: str):
    return lambda y, output: score(metric, y, output, CLASSES)


# The rates below take tens of thousands of scores: plain numpy versions of the two metrics
# keep them at a second (scikit-learn's input checks cost ~1 ms a call).
FAST = {
    "accuracy": lambda y, output: float(np.mean(np.asarray(CLASSES)[output.argmax(axis=1)] == y)),
    "rmse": lambda y, output: float(np.sqrt(np.mean((y - output) ** 2))),
}


def _flag_rate(sample, metric: str, reference: float, greater: bool, repeats: int = 100) -> float:
    rng = np.random.default_rng(7)
    rule = QualityRule(metric, greater, reference, n_resamples=200)
    verdicts = [judge_quality(*sample(rng), FAST[metric], rule, seed=i) for i in range(repeats)]
    return sum(v.degraded for v in verdicts) / repeats


@pytest.mark.parametrize(
    ("case", "sample", "metric", "reference", "greater"),
    [
        ("accuracy, 100 rows", lambda rng: _accuracy_sample(100, 0.8, rng), "accuracy", 0.8, True),
        ("accuracy, 400 rows", lambda rng: _accuracy_sample(400, 0.8, rng), "accuracy", 0.8, True),
        ("rmse, 100 rows", lambda rng: _regression_sample(100, 1.0, rng), "rmse", 1.0, False),
        ("rmse, 1000 rows", lambda rng: _regression_sample(1000, 1.0, rng), "rmse", 1.0, False),
    ],
)
def test_stationary_labels_are_rarely_flagged(case, sample, metric, reference, greater):
    """Given live labels from the process the holdout measured, at most 5% of checks flag it."""
    assert _flag_rate(sample, metric, reference, greater) <= 0.05, case


@pytest.mark.parametrize(
    ("case", "sample", "metric", "reference", "greater"),
    [
        ("accuracy 0.8 -> 0.6, 100 rows", lambda rng: _accuracy_sample(100, 0.6, rng),
         "accuracy", 0.8, True),
        ("rmse 1.0 -> 1.5, 100 rows", lambda rng: _regression_sample(100, 1.5, rng),
         "rmse", 1.0, False),
    ],
)
def test_a_clear_drop_is_flagged(case, sample, metric, reference, greater):
    """Given a model that really got worse by far more than the tolerance, checks flag it."""
    assert _flag_rate(sample, metric, reference, greater, repeats=20) >= 0.95, case


def test_flipped_labels_are_always_flagged():
    """Given inputs as before but every answer reversed, roc_auc checks of 100 rows all flag it."""
    rng = np.random.default_rng(3)
    rule = QualityRule("roc_auc", True, reference=0.92, n_resamples=100)

    verdicts = [judge_quality(*_ranked_sample(100, rng, flip=True), _scorer("roc_auc"), rule, seed=i)
                for i in range(5)]

    assert all(v.degraded for v in verdicts)
    assert all(v.value < 0.5 and v.labelled_rows == 100 for v in verdicts)


def test_a_drop_within_the_tolerance_is_not_flagged():
    """Given a large sample whose true accuracy is 0.01 below the holdout's, a 0.02 tolerance holds."""
    rng = np.random.default_rng(5)
    rule = QualityRule("accuracy", True, reference=0.8, tolerance=0.02, n_resamples=300)

    verdict = judge_quality(*_accuracy_sample(20_000, 0.79, rng), FAST["accuracy"], rule)

    assert verdict.degraded is False


@pytest.mark.parametrize(
    ("rows", "min_labelled", "judged"),
    [(99, 100, False), (100, 100, True), (0, 1, False), (5, 5, True)],
)
def test_fewer_than_min_labelled_rows_give_no_verdict(rows, min_labelled, judged):
    """Given fewer labelled rows than min_labelled, there is no verdict, even on flipped labels."""
    rng = np.random.default_rng(1)
    rule = QualityRule("roc_auc", True, reference=0.92, min_labelled=min_labelled, n_resamples=50)

    verdict = judge_quality(*_ranked_sample(rows, rng, flip=True), _scorer("roc_auc"), rule)


    assert (verdict is not None) is judged


def test_rows_that_cannot_be_scored_give_no_verdict():
    """Given labels of one class only, roc_auc has no value: no verdict rather than a guess."""
    labels, output = _ranked_sample(200, np.random.default_rng(2))
    labels[:] = "yes"
    rule = QualityRule("roc_auc", True, 0.9, n_resamples=20)

    assert judge_quality(labels, output, _scorer("roc_auc"), rule) is None


@pytest.mark.parametrize(
    ("action", "drifted", "degraded", "expected"),
    [
        ("triggered", True, False, "drift"),
        ("triggered", False, True, "quality"),
        ("triggered", True, True, "drift"),  # drift would have triggered without the labels
        ("triggered", False, False, "drift"),  # confirmed by earlier checks (N of M)
        ("cooldown", False, True, None),
        ("not_needed", False, False, None),
    ],
)
def test_trigger_reason(action, drifted, degraded, expected):
    assert trigger_reason(action, drifted, degraded) == expected
