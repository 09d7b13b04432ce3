"""Holdout plots, feature importance and the learning curve as matplotlib figures (the caller
logs them)."""

from __future__ import annotations

import functools
import io
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay
from sklearn.model_selection import learning_curve
from threadpoolctl import threadpool_limits

from experiments.metrics import model_output, score

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@functools.cache  # the backend is chosen once, at the first figure, not at each
def pyplot():
    """matplotlib's pyplot on the Agg backend (no display here or on servers), imported at
    the first figure: `mlops train` would otherwise spend 0.3 s on it before its flow starts
    (experiments.tracking's preload thread imports it beside the search)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

MAX_IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 5
# Shuffled copies of the holdout predicted per call: one call per copy cost more in the
# pipeline's per-call overhead than in predicting (150 calls on 114 rows).
IMPORTANCE_BATCH_ROWS = 50_000
# Few points on few folds, in one process, within 5 % of the search's fitting time (at least
# half a second; a tiny search gets its smallest point or two): a few percent of a training.
LEARNING_CURVE_SIZES = (0.25, 0.5, 0.75, 1.0)
LEARNING_CURVE_FOLDS = 3
LEARNING_CURVE_SHARE = 0.05
LEARNING_CURVE_MIN_S = 0.5


def classification_plots(y_true, output: np.ndarray, classes) -> dict[str, Figure]:
    plt = pyplot()
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
    plt = pyplot()
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


@dataclass(frozen=True)
class ImportanceScorer:
    """Scores in the search metric, oriented so that higher is better: of an estimator on
    rows (as sklearn's scorers), or of outputs already predicted for them."""

    task: str
    metric: str
    sign: float
    classes: tuple | None

    def output(self, estimator, x) -> np.ndarray:
        return model_output(estimator, x, self.task)

    def score_output(self, y_true, output: np.ndarray) -> float:
        return self.sign * score(self.metric, y_true, output, self.classes)

    def __call__(self, estimator, x, y_true) -> float:
        return self.score_output(y_true, self.output(estimator, x))


def importance_scorer(task: str, metric: str, greater_is_better: bool, classes) -> ImportanceScorer:
    """scorer(estimator, x, y) in the search metric, oriented so that higher is better."""
    return ImportanceScorer(task, metric, 1.0 if greater_is_better else -1.0, classes)


def _shuffled_positions(rows: int, n_repeats: int, seed: int) -> list[np.ndarray]:
    """The rows a column holds after each of its n_repeats shuffles, as sklearn's
    permutation_importance shuffles every column (a RandomState from the same seed for each,
    each shuffle applied to the last)."""
    rng = np.random.RandomState(seed)
    order, position, positions = np.arange(rows), np.arange(rows), []
    for _ in range(n_repeats):
        rng.shuffle(order)
        position = position[order]
        positions.append(position)
    return positions


def _copies(features: pd.DataFrame, positions: list[np.ndarray], start: int, stop: int) -> pd.DataFrame:
    """Copies start..stop-1 of the holdout, one under the other: copy 0 is the holdout, copy
    1 + i * n_repeats + k has column i in its k-th shuffle. Each column is taken once, by
    row numbers (its dtype kept), not built copy by copy."""
    rows, repeats = len(features), len(positions)
    unshuffled = np.tile(np.arange(rows), stop - start)
    columns = {}
    for i, column in enumerate(features.columns):
        taken = unshuffled
        for copy in range(max(start, 1 + i * repeats), min(stop, 1 + (i + 1) * repeats)):
            taken = taken.copy() if taken is unshuffled else taken
            at = (copy - start) * rows
            taken[at:at + rows] = positions[(copy - 1) % repeats]
        columns[column] = features[column].array.take(taken)
    return pd.DataFrame(columns)


def permutation_importances(model, features: pd.DataFrame, y, scorer: ImportanceScorer, *,
                            n_repeats: int, seed: int) -> np.ndarray:
    """sklearn's permutation_importance (n_jobs=1), same shuffles and same scores, with the
    shuffled copies predicted together in a few large batches instead of one call each:
    (n_features, n_repeats) drops in score."""
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    positions = _shuffled_positions(len(features), n_repeats, column_seed)
    copies = 1 + len(features.columns) * n_repeats
    per_batch = max(1, IMPORTANCE_BATCH_ROWS // max(1, len(features)))
    outputs = []
    for start in range(0, copies, per_batch):
        stop = min(copies, start + per_batch)
        batch = _copies(features, positions, start, stop)
        outputs.extend(np.array_split(scorer.output(model, batch), stop - start))
    scores = np.array([scorer.score_output(y, output) for output in outputs])
    return scores[0] - scores[1:].reshape(len(features.columns), n_repeats)


def feature_importance(model, features: pd.DataFrame, y, scorer, *, seed: int
                       ) -> tuple[dict[str, float], dict[str, float]]:
    """Permutation importance on (a sample of) the holdout, in units of the search metric:
    each feature's mean drop in score when shuffled, and its spread over the repeats."""
    if len(features) > MAX_IMPORTANCE_ROWS:
        keep = np.random.default_rng(seed).choice(len(features), MAX_IMPORTANCE_ROWS, replace=False)
        features, y = features.iloc[keep], pd.Series(np.asarray(y)[keep])
    drops = permutation_importances(model, features, y, scorer, n_repeats=IMPORTANCE_REPEATS,
                                    seed=seed)
    columns = [str(c) for c in features.columns]
    return (dict(zip(columns, drops.mean(axis=1).tolist(), strict=True)),
            dict(zip(columns, drops.std(axis=1).tolist(), strict=True)))


def importance_png(mean: dict[str, float], spread: dict[str, float], metric: str) -> bytes:
    """The permutation importance's bar chart as a PNG (~0.2 s of drawing; the training
    draws it while its spare process draws the other plots)."""
    plt = pyplot()
    order = sorted(mean, key=mean.get)
    figure, ax = plt.subplots(figsize=(6, max(3, 0.3 * len(order) + 1)))
    ax.barh(order, [mean[c] for c in order], xerr=[spread[c] for c in order])
    ax.set(xlabel=f"drop in {metric} when shuffled", title="Permutation importance (holdout)")
    figure.tight_layout()
    return png_files({"feature_importance": figure})["feature_importance"]


def holdout_pngs(task: str, y_true, output: np.ndarray, classes) -> dict[str, bytes]:
    """The task's holdout plots as PNGs (~0.1 s: a job for the spare process)."""
    figures = (classification_plots(y_true, output, classes) if task == "classification"
               else regression_plots(y_true, output))
    return png_files(figures)


@dataclass(frozen=True)
class MetricScorer:
    """scorer(estimator, x, y) in the metric as it is (higher is not always better), with the
    estimator's own classes: one fitted on few rows may have seen fewer. It pickles."""

    task: str
    metric: str

    def __call__(self, estimator, x, y_true) -> float:
        classes = getattr(estimator, "classes_", None) if self.task == "classification" else None
        return score(self.metric, y_true, model_output(estimator, x, self.task), classes)


def metric_scorer(task: str, metric: str) -> MetricScorer:
    return MetricScorer(task, metric)


@dataclass(frozen=True)
class LearningCurve:
    sizes: list[int]  # training rows at each point
    train: np.ndarray  # scores on the rows fitted, one row per point, one column per fold
    valid: np.ndarray  # scores on the held-out fold, alike

    @property
    def complete(self) -> bool:
        return len(self.sizes) == len(LEARNING_CURVE_SIZES)


def learning_curve_points(pipeline, features: pd.DataFrame, y, folds, scorer, *,
                          budget_s: float, seed: int) -> LearningCurve:
    """Training and validation scores of the pipeline's settings (unfitted copies) on growing
    shares of the data, over `folds`. The smallest share always; each larger one only while
    its expected time (the last point's, scaled by rows) fits within `budget_s` in all.
    A point a share's fit cannot score (a class missing from it) is NaN."""
    sizes: list[int] = []
    train, valid = [], []
    spent = last = 0.0
    for i, share in enumerate(LEARNING_CURVE_SIZES):
        if i and spent + last * share / LEARNING_CURVE_SIZES[i - 1] > budget_s:
            break
        started = time.perf_counter()
        # One thread: on a few hundred rows OpenMP's start-up and spinning cost more than the
        # fit (a boosting fit 10x slower on a busy 2-core machine), and other work shares it.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)  # sklearn's note on each failed fit
            n, train_scores, valid_scores = learning_curve(
                clone(pipeline), features, y, train_sizes=[share], cv=folds, scoring=scorer,
                n_jobs=1, shuffle=True, random_state=seed, error_score=np.nan)
        last = time.perf_counter() - started
        spent += last
        sizes.append(int(n[0]))
        train.append(train_scores[0])
        valid.append(valid_scores[0])
    return LearningCurve(sizes, np.array(train), np.array(valid))


def learning_curve_png(pipeline, features: pd.DataFrame, y, folds, scorer: MetricScorer, *,
                       budget_s: float, seed: int) -> bytes:
    """The learning curve's figure as a PNG, from what pickles (for a process of its own)."""
    curve = learning_curve_points(pipeline, features, y, folds, scorer, budget_s=budget_s, seed=seed)
    return png_files({"learning_curve": learning_curve_figure(curve, scorer.metric)})["learning_curve"]


def learning_curve_figure(curve: LearningCurve, metric: str) -> Figure:
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(5, 4.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point with no score: a gap in the line
        for scores, label in ((curve.train, "training rows"), (curve.valid, "validation fold")):
            mean, spread = np.nanmean(scores, axis=1), np.nanstd(scores, axis=1)
            ax.plot(curve.sizes, mean, marker="o", label=label)
            ax.fill_between(curve.sizes, mean - spread, mean + spread, alpha=0.2)
    cut = "" if curve.complete else " (larger shares over the time budget)"
    ax.set(xlabel="training rows", ylabel=metric, title=f"Learning curve{cut}")
    ax.legend()
    figure.tight_layout()
    return figure


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


def search_plot_pngs(trials: list[optuna.trial.FrozenTrial], greater_is_better: bool
                     ) -> dict[str, bytes]:
    """search_plots of a study of these trials, as PNGs."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "a new study created in memory"
    try:
        study = optuna.create_study(direction="maximize" if greater_is_better else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(trials)
    return png_files(search_plots(study))


def png_files(figures: dict[str, Figure]) -> dict[str, bytes]:
    """Each figure as the PNG MLflow's log_figure saves of it; the figures are closed after."""
    files = {}
    try:
        for name, figure in figures.items():
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            files[name] = buffer.getvalue()
    finally:
        close_figures(figures.values())
    return files


def close_figures(figures) -> None:
    plt = pyplot()
    for figure in figures:
        plt.close(figure)
