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
