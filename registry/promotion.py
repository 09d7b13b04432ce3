"""Whether a new version beats the champion by more than noise: a paired bootstrap.

Both models are scored on the same bootstrap resamples of the same holdout; the new
version is promoted when it is better on the full holdout and the share of resamples in
which it is not better (a one-sided p-value) is below alpha.
"""

from dataclasses import dataclass

import numpy as np

from experiments.metrics import ScoreFn, defined_score


@dataclass(frozen=True)
class HoldoutMetric:
    """The metric both versions are compared on: its name, its direction, score(y, output)."""

    name: str
    greater_is_better: bool
    score: ScoreFn


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
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(y_true), len(y_true))
        # A resample without every class has no score for some metrics (roc_auc): it is
        # left out, never counted for either side.
        new = defined_score(score_fn, y_true[idx], candidate_output[idx])
        old = defined_score(score_fn, y_true[idx], champion_output[idx])
        if new is not None and old is not None:
            deltas.append(sign * (new - old))
    if not deltas:
        return PromotionDecision(
            False, "the holdout is too small to compare the two versions", candidate,
            champion, delta, None,
        )
    p_value = float(np.mean(np.asarray(deltas) <= 0))
    comparison = (
        f"{metric.name} {candidate:.4f} vs champion {champion:.4f} "
        f"(delta {delta:+.4f}, p={p_value:.3f}, paired bootstrap n={len(deltas)}, alpha={alpha})"
    )
    if delta > 0 and p_value < alpha:
        return PromotionDecision(True, f"wins: {comparison}", candidate, champion, delta, p_value)
    verdict = "not better" if delta <= 0 else "not better by more than noise"
    return PromotionDecision(False, f"{verdict}: {comparison}", candidate, champion, delta, p_value)
