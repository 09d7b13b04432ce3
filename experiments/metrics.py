"""Scores computed the same way in the search, on the holdout and in promotion."""

import math
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

ScoreFn = Callable[[np.ndarray, np.ndarray], float]


def model_output(model, features: pd.DataFrame, task: str) -> np.ndarray:
    """Class probabilities for classification, predictions for regression."""
    if task == "classification":
        return model.predict_proba(features)
    return model.predict(features)


def score(metric: str, y_true, output: np.ndarray, classes) -> float:
    """One metric from model output; `classes` orders the probability columns."""
    y_true = np.asarray(y_true)
    if metric in ("rmse", "mae", "r2"):
        return _regression_score(metric, y_true, output)
    classes = np.asarray(classes)
    binary = len(classes) == 2
    if metric == "roc_auc":
        if binary:
            return binary_roc_auc(y_true == classes[1], output[:, 1])
        return float(skm.roc_auc_score(y_true, output, multi_class="ovr", labels=classes))
    if metric == "log_loss":
        return float(skm.log_loss(y_true, output, labels=classes))
    predicted = classes[np.argmax(output, axis=1)]
    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, predicted))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y_true, predicted))
    if metric == "f1":
        return float(_f1(y_true, predicted, classes))
    raise ValueError(f"unknown metric '{metric}'")


def defined_score(score_fn: ScoreFn, y_true, output) -> float | None:
    """The score, or None where it has no value (a sample without every class: scikit-learn
    raises for some metrics and answers NaN with a warning for roc_auc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        try:
            value = float(score_fn(y_true, output))
        except ValueError:
            return None
    return value if math.isfinite(value) else None


def binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve from ranks (Mann-Whitney U, a tie counted as half): the
    value skm.roc_auc_score gives, without its input checks, which took ~5-10 ms a call; the
    promotion gate scores 2,000 bootstrap resamples per training. ValueError when a class
    is missing or a score is not finite, as sklearn raises."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError("only one class is present in y_true: ROC AUC is not defined")
    if not np.isfinite(scores).all():
        raise ValueError("the scores hold NaN or infinity")
    _, slot, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    ranks = ((last - counts + 1 + last) / 2)[slot]  # tied scores share their mean rank
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def _f1(y_true, predicted, classes) -> float:
    if len(classes) == 2:
        return skm.f1_score(y_true, predicted, pos_label=classes[1], labels=classes)
    return skm.f1_score(y_true, predicted, average="macro", labels=classes)


def _regression_score(metric: str, y_true, predicted) -> float:
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, predicted)))
    if metric == "mae":
        return float(skm.mean_absolute_error(y_true, predicted))
    return float(skm.r2_score(y_true, predicted))


def holdout_metrics(task: str, y_true, output: np.ndarray, classes) -> dict[str, float]:
    """The full set of holdout metrics for the task."""
    if task == "regression":
        return {m: score(m, y_true, output, classes) for m in ("rmse", "mae", "r2")}
    y_true = np.asarray(y_true)
    classes = np.asarray(classes)
    predicted = classes[np.argmax(output, axis=1)]
    average = {"pos_label": classes[1]} if len(classes) == 2 else {"average": "macro"}
    return {
        "accuracy": score("accuracy", y_true, output, classes),
        "precision": float(
            skm.precision_score(y_true, predicted, labels=classes, zero_division=0, **average)
        ),
        "recall": float(
            skm.recall_score(y_true, predicted, labels=classes, zero_division=0, **average)
        ),
        "f1": score("f1", y_true, output, classes),
        "roc_auc": score("roc_auc", y_true, output, classes),
        "log_loss": score("log_loss", y_true, output, classes),
    }


def resampled_scores(metric: str, y_true, output: np.ndarray, classes,
                     rows: np.ndarray) -> np.ndarray | None:
    """score(metric, y_true[r], output[r], classes) for each row r of the index matrix `rows`,
    NaN where a resample has no score, computed for all resamples at once: the promotion
    gate's paired bootstrap scores 1,000 resamples a side, and through `score` that took
    2-5 s for f1, log_loss or a multiclass roc_auc (sklearn's checks, ~1-3 ms a call).
    None for what is not computed this way (a label of y_true outside `classes`): the caller
    scores those one resample at a time."""
    y_true = np.asarray(y_true)
    if metric in ("rmse", "mae", "r2"):
        return _resampled_regression(metric, y_true.astype(float), np.asarray(output, float), rows)
    classes = np.asarray(classes)
    if not np.isin(y_true, classes).all():
        return None
    truth = np.searchsorted(classes, y_true, sorter=np.argsort(classes))
    truth = np.argsort(classes)[truth]  # each row's column in `output`
    if metric == "roc_auc":
        return _resampled_roc_auc(truth, np.asarray(output, float), rows)
    if metric == "log_loss":
        eps = np.finfo(float).eps
        losses = -np.log(np.clip(np.asarray(output, float), eps, 1 - eps)[np.arange(len(truth)), truth])
        return losses[rows].mean(axis=1)
    predicted = np.argmax(output, axis=1)
    if metric == "accuracy":
        return (predicted == truth)[rows].mean(axis=1)
    if metric == "f1":
        return _resampled_f1(truth, predicted, len(classes), rows)
    if metric == "balanced_accuracy":
        return _resampled_balanced_accuracy(truth, predicted, len(classes), rows)
    raise ValueError(f"unknown metric '{metric}'")


def _resampled_balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, n_classes: int,
                                 rows: np.ndarray) -> np.ndarray:
    """The mean recall over the classes a resample holds (sklearn leaves out a class only
    predicted, with a warning)."""
    recalls, present = np.zeros(len(rows)), np.zeros(len(rows))
    for k in range(n_classes):
        real = (truth == k)[rows].sum(axis=1)
        hit = ((truth == k) & (predicted == k))[rows].sum(axis=1)
        recalls += np.where(real > 0, hit / np.maximum(real, 1), 0.0)
        present += real > 0
    return recalls / present


def _resampled_roc_auc(truth: np.ndarray, output: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Binary: the positive column's AUC; more classes: the mean of each class against the
    rest (sklearn's multi_class='ovr', macro), undefined unless every class is in the resample."""
    columns = [1] if output.shape[1] == 2 else range(output.shape[1])
    per_class = [_rows_roc_auc(truth[rows] == k, output[rows, k]) for k in columns]
    return np.mean(per_class, axis=0)


def _rows_roc_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """binary_roc_auc of each row of two (resamples, rows) matrices at once; NaN for a row
    without both classes or with a score that is not finite."""
    order = np.argsort(scores, axis=1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=1)
    width = ordered.shape[1]
    at = np.broadcast_to(np.arange(width), ordered.shape)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(ordered.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, at, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, at, width)[:, ::-1], axis=1)[:, ::-1]
    ranks = (first + last) / 2 + 1  # tied scores share their mean rank
    hits = np.take_along_axis(positive, order, axis=1)
    n_positive = hits.sum(axis=1)
    n_negative = width - n_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * hits).sum(axis=1) - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
    defined = (n_positive > 0) & (n_negative > 0) & np.isfinite(scores).all(axis=1)
    return np.where(defined, auc, np.nan)


def _resampled_f1(truth: np.ndarray, predicted: np.ndarray, n_classes: int,
                  rows: np.ndarray) -> np.ndarray:
    """Binary: F1 of the second class; more classes: the macro mean over all of them. A class
    with no true and no predicted rows scores 0, as sklearn's zero_division default does."""
    ks = [1] if n_classes == 2 else range(n_classes)
    per_class = []
    for k in ks:
        hit, said, real = ((predicted == k) & (truth == k)), predicted == k, truth == k
        tp = hit[rows].sum(axis=1)
        denominator = said[rows].sum(axis=1) + real[rows].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class.append(np.where(denominator > 0, 2 * tp / denominator, 0.0))
    return np.mean(per_class, axis=0)


def _resampled_regression(metric: str, y_true: np.ndarray, predicted: np.ndarray,
                          rows: np.ndarray) -> np.ndarray:
    errors = (y_true - predicted)[rows]
    if metric == "rmse":
        return np.sqrt((errors ** 2).mean(axis=1))
    if metric == "mae":
        return np.abs(errors).mean(axis=1)
    values = y_true[rows]
    residual = (errors ** 2).sum(axis=1)
    total = ((values - values.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # sklearn's force_finite for a flat y
        return np.where(total > 0, 1 - residual / total, np.where(residual == 0, 1.0, 0.0))
