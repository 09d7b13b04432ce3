"""Promotion: the candidate replaces the champion only when it is better by more than noise."""

import numpy as np
import pytest

from registry.promotion import HoldoutMetric, decide_promotion

N = 300
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 2, N)
VALUES = RNG.normal(100.0, 20.0, N)


def accuracy(y, predicted) -> float:
    return float(np.mean(y == predicted))


def rmse(y, predicted) -> float:
    return float(np.sqrt(np.mean((y - predicted) ** 2)))


ACCURACY = HoldoutMetric("accuracy", True, accuracy)
RMSE = HoldoutMetric("rmse", False, rmse)


def labels_with_errors(n_wrong: int, seed: int) -> np.ndarray:
    """LABELS with n_wrong of them flipped, at positions drawn with a seed."""
    wrong = np.random.default_rng(seed).choice(N, size=n_wrong, replace=False)
    predicted = LABELS.copy()
    predicted[wrong] = 1 - predicted[wrong]
    return predicted


def values_with_noise(scale: float, seed: int) -> np.ndarray:
    return VALUES + np.random.default_rng(seed).normal(0.0, scale, N)


def one_more_right() -> tuple[np.ndarray, np.ndarray]:
    """A champion wrong on 90 rows and a candidate that fixes exactly one of them."""
    champion = labels_with_errors(90, seed=1)
    candidate = champion.copy()
    first_wrong = int(np.flatnonzero(champion != LABELS)[0])
    candidate[first_wrong] = LABELS[first_wrong]
    return candidate, champion


def only_the_full_holdout(y, predicted) -> float:
    """A metric that cannot score a resample: any repeated row makes it raise ValueError."""
    if len(np.unique(y)) < len(y):
        raise ValueError("cannot score a resample")
    return float(np.mean(y))


CASES = {
    # id: (y, candidate, champion, score_fn, greater_is_better, promote, reason starts with)
    "no-champion": (LABELS, labels_with_errors(150, 1), None, accuracy, True,
                    True, "no champion yet"),
    "clearly-better": (LABELS, labels_with_errors(30, 1), labels_with_errors(120, 2), accuracy,
                       True, True, "wins: accuracy"),
    "identical": (LABELS, labels_with_errors(60, 1), labels_with_errors(60, 1), accuracy, True,
                  False, "not better: "),
    "worse": (LABELS, labels_with_errors(120, 2), labels_with_errors(30, 1), accuracy, True,
              False, "not better: "),
    "within-noise": (LABELS, *one_more_right(), accuracy, True,
                     False, "not better by more than noise: "),
    "minimize-better": (VALUES, values_with_noise(1.0, 1), values_with_noise(10.0, 2), rmse,
                        False, True, "wins: rmse"),
    "minimize-worse": (VALUES, values_with_noise(10.0, 2), values_with_noise(1.0, 1), rmse,
                       False, False, "not better: "),
    "lower-rmse-read-as-maximize": (VALUES, values_with_noise(1.0, 1),
                                    values_with_noise(10.0, 2), rmse, True,
                                    False, "not better: "),
    "no-resample-scores": (np.arange(30), np.zeros(30), np.ones(30), only_the_full_holdout, True,
                           False, "the holdout is too small"),
}


@pytest.mark.parametrize(
    ("y", "candidate", "champion", "score_fn", "greater_is_better", "promote", "reason"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_decide_promotion(y, candidate, champion, score_fn, greater_is_better, promote, reason):
    """Given a holdout, both models' outputs and the metric's orientation, when deciding, then
    the candidate is promoted only when it wins by more than noise, with the reason said."""
    decision = decide_promotion(
        y, candidate, champion, HoldoutMetric(score_fn.__name__, greater_is_better, score_fn),
        n_resamples=500,
    )

    assert decision.promote is promote
    assert decision.reason.startswith(reason), decision.reason


def test_win_reports_scores_positive_delta_and_small_p_value():
    """Given a clearly better candidate, then the scores, delta and p-value are recorded."""
    candidate, champion = labels_with_errors(30, 1), labels_with_errors(120, 2)

    decision = decide_promotion(LABELS, candidate, champion, ACCURACY)

    assert decision.candidate_score == pytest.approx(0.9)
    assert decision.champion_score == pytest.approx(0.6)
    assert decision.delta == pytest.approx(0.3)
    assert decision.p_value < 0.05


def test_delta_is_positive_when_a_minimised_metric_goes_down():
    """Given rmse falling from the champion's to the candidate's, then delta = champion - cand."""
    candidate, champion = values_with_noise(1.0, 1), values_with_noise(10.0, 2)

    decision = decide_promotion(VALUES, candidate, champion, RMSE)

    assert decision.delta == pytest.approx(rmse(VALUES, champion) - rmse(VALUES, candidate))
    assert decision.delta > 0


def test_within_noise_gain_has_a_large_p_value():
    """Given a candidate right on one more row of 300, then p is far above alpha."""
    candidate, champion = one_more_right()

    decision = decide_promotion(LABELS, candidate, champion, ACCURACY)

    assert decision.delta == pytest.approx(1 / N)
    assert decision.p_value > 0.2


def test_no_resample_scores_leaves_p_value_unset():
    """Given a metric that fails on every resample, then there is no p-value."""
    decision = decide_promotion(
        np.arange(30), np.zeros(30), np.ones(30), HoldoutMetric("m", True, only_the_full_holdout),
        n_resamples=50,
    )

    assert decision.p_value is None


def test_decision_is_deterministic_for_a_seed():
    """Given the same inputs and seed twice, then the decisions are equal."""
    candidate, champion = one_more_right()

    def decide():
        return decide_promotion(LABELS, candidate, champion, ACCURACY, n_resamples=200, seed=5)

    assert decide() == decide()


def _roc_auc(y, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


ROC_AUC = HoldoutMetric("roc_auc", True, _roc_auc)


def one_positive_among(n: int, candidate_mistakes: int, champion_mistakes: int,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A holdout with one positive: a third of its resamples hold no positive, and roc_auc
    has no value on them. The candidate ranks `candidate_mistakes` negatives above the
    positive, the champion `champion_mistakes` (more)."""
    y = np.array([1] + [0] * (n - 1))
    candidate = np.concatenate([[0.6], np.linspace(0.1, 0.5, n - 1)])
    candidate[1:1 + candidate_mistakes] = 0.7
    champion = candidate.copy()
    champion[1:1 + champion_mistakes] = 0.95
    return y, candidate, champion


def test_resamples_without_a_score_count_for_neither_side():
    """Given a holdout where roc_auc is undefined on a third of the resamples, then the
    p-value is the share of the scored resamples where the candidate is not better: those
    with no score do not count as wins (which would lower it by a third)."""
    y, candidate, champion = one_positive_among(30, candidate_mistakes=1, champion_mistakes=4)

    decision = decide_promotion(y, candidate, champion, ROC_AUC)

    scored = int(decision.reason.split("paired bootstrap n=")[1].split(",")[0])
    assert 550 < scored < 750  # about (1 - (29/30)**30) of 1000 resamples hold the positive
    assert decision.p_value == pytest.approx(0.0565, abs=0.0005)  # 0.037 when they counted as wins
    assert not decision.promote


def test_undefined_score_on_the_whole_holdout_never_promotes():
    """Given a holdout with one class only, then the versions cannot be compared: no promotion."""
    y = np.zeros(40, dtype=int)
    candidate, champion = np.linspace(0, 1, 40), np.linspace(1, 0, 40)

    decision = decide_promotion(y, candidate, champion, ROC_AUC)

    assert not decision.promote
    assert "undefined on this holdout" in decision.reason


@pytest.mark.parametrize("name, classes", [("f1", ("no", "yes")), ("log_loss", ("no", "yes")),
                                           ("roc_auc", ("a", "b", "c")), ("accuracy", ("a", "b", "c")),
                                           ("balanced_accuracy", ("a", "b", "c"))])
def test_a_named_metric_decides_as_scoring_each_resample_would(name, classes):
    """The platform's metrics score the bootstrap's resamples at once: the decision, p-value
    and the count of resamples used are those of scoring each resample through `score`."""
    from experiments.metrics import score

    rng = np.random.default_rng(3)
    y = np.asarray(classes)[rng.integers(0, len(classes), 40)]
    candidate, champion = rng.dirichlet(np.ones(len(classes)), (2, 40))
    candidate[np.arange(40), np.searchsorted(classes, y)] += 0.4
    candidate /= candidate.sum(axis=1, keepdims=True)
    greater = name != "log_loss"
    one_at_a_time = HoldoutMetric(name, greater, lambda t, o: score(name, t, o, classes))

    named = decide_promotion(y, candidate, champion, HoldoutMetric.named(name, greater, classes))
    each = decide_promotion(y, candidate, champion, one_at_a_time)

    assert (named.promote, named.p_value, named.reason) == (each.promote, each.p_value, each.reason)
