"""Whether the champion does worse on live labels than on its holdout: a one-sided bootstrap.

The reference is the champion's holdout score, recorded when it was trained. The live score
is the same metric on the labelled live rows, from the champion's own output on them. The
shortfall is how much worse the live score is (reference - live for a metric where greater
is better, live - reference otherwise).

Quality is degraded when the shortfall exceeds `tolerance` beyond the sampling noise of the
live sample: the live rows are resampled with replacement, and the share of resamples whose
shortfall is at most `tolerance` (a one-sided p-value for "no more than `tolerance` worse")
must be below `alpha`. Below `min_labelled` rows there is no verdict at all: a bootstrap of
a few dozen rows says more about the rows than about the model.

The holdout score is taken as fixed; its own noise (and the optimism of a version chosen for
beating its predecessor on that holdout) is what `tolerance` absorbs. On stationary labels a
check is therefore flagged less often than `alpha`, the more so the larger the tolerance.
"""

from dataclasses import dataclass

import numpy as np

from experiments.metrics import ScoreFn, defined_score


@dataclass(frozen=True)
class QualityRule:
    """What the live score is judged against, and how strictly."""

    metric: str
    greater_is_better: bool
    reference: float  # the champion's holdout score
    tolerance: float = 0.02
    min_labelled: int = 100
    alpha: float = 0.05
    n_resamples: int = 1000


@dataclass(frozen=True)
class QualityVerdict:
    metric: str
    value: float  # the live score
    reference: float
    labelled_rows: int
    degraded: bool
    p_value: float | None  # None when no resample could be scored
    reason: str

    def as_json(self) -> dict:
        return {"metric": self.metric, "value": self.value, "reference": self.reference,
                "labelled_rows": self.labelled_rows, "degraded": self.degraded}


def judge_quality(y_true, output: np.ndarray, score: ScoreFn, rule: QualityRule,
                  seed: int = 0) -> QualityVerdict | None:
    """The verdict on live labels, or None with fewer than `rule.min_labelled` rows (or when
    the rows cannot be scored at all, e.g. only one class for roc_auc)."""
    y_true, output = np.asarray(y_true), np.asarray(output)
    n = len(y_true)
    if n < rule.min_labelled:
        return None
    live = defined_score(score, y_true, output)
    if live is None:
        return None
    sign = 1.0 if rule.greater_is_better else -1.0
    shortfall = sign * (rule.reference - live)
    resampled = _resampled_shortfalls(y_true, output, score, rule, seed)
    p_value = float(np.mean(resampled <= rule.tolerance)) if len(resampled) else None
    degraded = shortfall > rule.tolerance and p_value is not None and p_value < rule.alpha
    word = "degraded" if degraded else "not degraded"
    reason = (f"live {rule.metric} {live:.4f} vs holdout {rule.reference:.4f} on {n} labelled "
              f"rows: {word} (shortfall {shortfall:+.4f}, tolerance {rule.tolerance:g}, "
              f"p={_shown(p_value)}, bootstrap n={len(resampled)}, alpha={rule.alpha:g})")
    return QualityVerdict(rule.metric, float(live), rule.reference, n, degraded, p_value, reason)


def _resampled_shortfalls(y_true, output, score: ScoreFn, rule: QualityRule,
                          seed: int) -> np.ndarray:
    sign = 1.0 if rule.greater_is_better else -1.0
    rng = np.random.default_rng(seed)
    n = len(y_true)
    found = []
    for _ in range(rule.n_resamples):
        rows = rng.integers(0, n, n)
        value = defined_score(score, y_true[rows], output[rows])
        if value is not None:
            found.append(sign * (rule.reference - value))
    return np.asarray(found)


def _shown(p_value: float | None) -> str:
    return "n/a" if p_value is None else f"{p_value:.3f}"


def trigger_reason(action: str, drifted: bool, degraded: bool) -> str | None:
    """Why a check triggered retraining: `quality` only when the labels alone asked for it;
    drifted data is the older, label-free signal and keeps its name when both speak (a drift
    retraining on a labelled `--current` file adds its rows all the same)."""
    if action != "triggered":
        return None
    return "quality" if degraded and not drifted else "drift"
