"""Overfitting diagnostics: the chosen pipeline's score on its own training data, next to its
cross-validated and holdout scores, and whether the gap between training and holdout is large."""

from dataclasses import dataclass

# A gap is large beyond these. Scores that are better higher (roc_auc, accuracy, f1, r2) sit
# on a 0-1 scale: 0.05 is five points lost between training data and unseen data. Errors
# (rmse, mae, log_loss) have no scale of their own: the holdout error 25 % above the
# training error is large.
MAX_SCORE_GAP = 0.05
MAX_ERROR_RATIO = 1.25


@dataclass(frozen=True)
class FitScores:
    metric: str
    greater_is_better: bool
    train: float
    cv: float
    holdout: float

    def line(self) -> str:
        return (f"Fit: {self.metric} {self.train:.4f} on the training data, {self.cv:.4f} in "
                f"cross-validation, {self.holdout:.4f} on the holdout.")


def gap_sentence(scores: FitScores) -> str | None:
    """A sentence for the run's description when the holdout score trails the training score
    by a large gap; None when it does not."""
    train, holdout, metric = scores.train, scores.holdout, scores.metric
    if scores.greater_is_better:
        gap = train - holdout
        if gap <= MAX_SCORE_GAP:
            return None
        size = f"a gap of {gap:.3f} (large above {MAX_SCORE_GAP})"
    else:
        if holdout <= train * MAX_ERROR_RATIO or holdout <= train:
            return None
        size = (f"{holdout / train - 1:.0%} higher on the holdout (large above "
                f"{MAX_ERROR_RATIO - 1:.0%})" if train > 0 else "no error at all on the training rows")
    return (f"**Overfitting:** {metric} is {train:.4f} on the training data but "
            f"{holdout:.4f} on the holdout: {size}. The model fits its training rows better than "
            "it generalises; `plots/learning_curve.png` shows whether more data would close the gap.")
