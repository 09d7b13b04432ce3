"""Holdout plots and feature importance as matplotlib figures (the caller logs them)."""

import warnings

import matplotlib

matplotlib.use("Agg")  # no display here or on servers; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from experiments.metrics import model_output, score  # noqa: E402

MAX_IMPORTANCE_ROWS = 2000


def classification_plots(y_true, output: np.ndarray, classes) -> dict[str, Figure]:
    classes = np.asarray(classes)
    predicted = classes[np.argmax(output, axis=1)]
    confusion, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_predictions(y_true, predicted, labels=classes, ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (holdout)")
    roc, ax = plt.subplots(figsize=(5, 4.5))
    y_true = np.asarray(y_true)
    positives = classes[1:] if len(classes) == 2 else classes
    for label in positives:
        column = int(np.flatnonzero(classes == label)[0])
        RocCurveDisplay.from_predictions(
            y_true == label, output[:, column], ax=ax, name=f"{label} vs rest"
        )
    ax.set_title("ROC (holdout)")
    return {"confusion_matrix": confusion, "roc_curve": roc}


def regression_plots(y_true, predicted: np.ndarray) -> dict[str, Figure]:
    y_true = np.asarray(y_true, dtype=float)
    residuals_fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(predicted, y_true - predicted, s=8, alpha=0.6)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (holdout)")
    fit_fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(y_true, predicted, s=8, alpha=0.6)
    low, high = float(min(y_true.min(), predicted.min())), float(max(y_true.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (holdout)")
    return {"residuals": residuals_fig, "predicted_vs_actual": fit_fig}


def importance_scorer(task: str, metric: str, greater_is_better: bool, classes):
    """scorer(estimator, x, y) in the search metric, oriented so that higher is better."""
    sign = 1.0 if greater_is_better else -1.0

    def scorer(estimator, x, y_true):
        return sign * score(metric, y_true, model_output(estimator, x, task), classes)

    return scorer


def feature_importance(
    model, features: pd.DataFrame, y, scorer, *, metric: str, seed: int,
) -> tuple[dict[str, float], Figure]:
    """Permutation importance on (a sample of) the holdout, in units of the search metric."""
    if len(features) > MAX_IMPORTANCE_ROWS:
        keep = np.random.default_rng(seed).choice(len(features), MAX_IMPORTANCE_ROWS, replace=False)
        features, y = features.iloc[keep], pd.Series(np.asarray(y)[keep])
    result = permutation_importance(
        model, features, y, scoring=scorer, n_repeats=5, random_state=seed, n_jobs=1
    )
    importances = dict(zip(features.columns, result.importances_mean.tolist(), strict=True))
    order = np.argsort(result.importances_mean)
    figure, ax = plt.subplots(figsize=(6, max(3, 0.3 * len(order) + 1)))
    ax.barh(np.asarray(features.columns)[order], result.importances_mean[order],
            xerr=result.importances_std[order])
    ax.set(xlabel=f"drop in {metric} when shuffled", title="Permutation importance (holdout)")
    figure.tight_layout()
    return importances, figure


def search_plots(study: optuna.Study) -> dict[str, Figure]:
    """Optuna's optimisation history and, when it can be computed, parameter importances."""
    from optuna.visualization import matplotlib as optuna_plots

    figures: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        figures["optuna_history"] = optuna_plots.plot_optimization_history(study).figure
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) >= 2:
            try:
                figures["optuna_param_importances"] = (
                    optuna_plots.plot_param_importances(study).figure
                )
            except (ValueError, RuntimeError):
                pass  # too little variety in finished trials to rank parameters
    for figure in figures.values():
        figure.tight_layout()
    return figures


def close_figures(figures) -> None:
    for figure in figures:
        plt.close(figure)
