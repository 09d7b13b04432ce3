"""Whether a new version beats the champion by more than noise: a paired bootstrap.

Both models are scored on the same bootstrap resamples of the same holdout; the new
version is promoted when it is better on the full holdout and the share of resamples in
which it is not better (a one-sided p-value) is below alpha.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from experiments.metrics import ScoreFn, defined_score, resampled_scores, score

# scores(y, output, rows): the score of each resample (a row of indices), NaN where it has
# none; or None where it cannot say (then each resample is scored by `score`).
ResampledFn = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class HoldoutMetric:
    """The metric both versions are compared on: its name, its direction, score(y, output),
    and optionally the same score of many resamples at once."""

    name: str
    greater_is_better: bool
    score: ScoreFn
    resampled: ResampledFn | None = None

    @classmethod
    def named(cls, name: str, greater_is_better: bool, classes) -> "HoldoutMetric":
        """The platform's metric `name` (experiments/metrics.py), `classes` ordering the
        output's columns (None for regression)."""
        return cls(name, greater_is_better, lambda y, output: score(name, y, output, classes),
                   lambda y, output, rows: resampled_scores(name, y, output, classes, rows))

    def of_resamples(self, y_true: np.ndarray, output: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The score of each resample, NaN where it has none."""
        scores = None if self.resampled is None else self.resampled(y_true, output, rows)
        if scores is not None:
            return scores
        found = (defined_score(self.score, y_true[row], output[row]) for row in rows)
        return np.array([np.nan if value is None else value for value in found])


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    candidate_score: float
    champion_score: float | None = None
    delta: float | None = None
    p_value: float | None = None
    awaiting_approval: bool = False  # won, but waits for a person (promotion.mode: approve)


def decide_promotion(
    y_true: np.ndarray,
    candidate_output: np.ndarray,
    champion_output: np.ndarray | None,
    metric: HoldoutMetric,
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PromotionDecision:
    """`delta` is oriented so that positive means better."""
    y_true = np.asarray(y_true)
    score_fn = metric.score
    candidate = score_fn(y_true, candidate_output)
    if champion_output is None:
        return PromotionDecision(True, "no champion yet", candidate)
    champion = score_fn(y_true, champion_output)
    sign = 1.0 if metric.greater_is_better else -1.0
    delta = sign * (candidate - champion)
    if not (np.isfinite(candidate) and np.isfinite(champion)):
        return PromotionDecision(
            False, f"{metric.name} is undefined on this holdout (candidate {candidate}, "
            f"champion {champion}): the two versions cannot be compared", candidate,
            champion, None, None,
        )
    rows = np.random.default_rng(seed).integers(0, len(y_true), (n_resamples, len(y_true)))
    new = metric.of_resamples(y_true, np.asarray(candidate_output), rows)
    old = metric.of_resamples(y_true, np.asarray(champion_output), rows)
    # A resample without every class has no score for some metrics (roc_auc): it is left
    # out, never counted for either side.
    both = np.isfinite(new) & np.isfinite(old)
    deltas = sign * (new[both] - old[both])
    if not deltas.size:
        return PromotionDecision(
            False, "the holdout is too small to compare the two versions", candidate,
            champion, delta, None,
        )
    p_value = float(np.mean(deltas <= 0))
    comparison = (
        f"{metric.name} {candidate:.4f} vs champion {champion:.4f} "
        f"(delta {delta:+.4f}, p={p_value:.3f}, paired bootstrap n={len(deltas)}, alpha={alpha})"
    )
    if delta > 0 and p_value < alpha:
        return PromotionDecision(True, f"wins: {comparison}", candidate, champion, delta, p_value)
    verdict = "not better" if delta <= 0 else "not better by more than noise"
    return PromotionDecision(False, f"{verdict}: {comparison}", candidate, champion, delta, p_value)
