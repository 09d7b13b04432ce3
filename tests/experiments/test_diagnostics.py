"""The train-holdout gap sentence, and the learning curve's time budget (no servers)."""

import math

import numpy as np
import pytest
from synthetic import binary_frame

from experiments.diagnostics import FitScores, gap_sentence


@pytest.mark.parametrize(
    ("metric", "higher", "train", "holdout", "said"),
    [
        ("roc_auc", True, 1.000, 0.930, "a gap of 0.070 (large above 0.05)"),
        ("roc_auc", True, 0.960, 0.930, None),  # three points: within what a holdout varies by
        ("roc_auc", True, 0.930, 0.960, None),  # better on the holdout is no overfitting
        ("r2", True, 0.95, 0.60, "a gap of 0.350"),
        ("rmse", False, 2.0, 3.0, "50% higher on the holdout (large above 25%)"),
        ("rmse", False, 2.0, 2.4, None),
        ("log_loss", False, 0.0, 0.3, "no error at all on the training rows"),
        ("mae", False, 0.0, 0.0, None),
    ],
)
def test_a_large_gap_is_stated_and_a_small_one_is_not(metric, higher, train, holdout, said):
    sentence = gap_sentence(FitScores(metric, higher, train, 0.5, holdout))

    if said is None:
        assert sentence is None
    else:
        assert said in sentence
        assert sentence.startswith(f"**Overfitting:** {metric} is {train:.4f} on the training data "
                                   f"but {holdout:.4f} on the holdout")
        assert "plots/learning_curve.png" in sentence


def test_the_fit_line_names_all_three_scores():
    line = FitScores("rmse", False, 1.25, 1.5, 1.75).line()

    assert line == ("Fit: rmse 1.2500 on the training data, 1.5000 in cross-validation, "
                    "1.7500 on the holdout.")


@pytest.fixture(scope="module")
def fitted():
    from experiments.contract import infer_contract
    from experiments.objective import cv_folds
    from experiments.pipelines import build_pipeline, feature_frame

    frame = binary_frame(n=200, seed=4)
    contract = infer_contract(frame, "label", "classification")
    features = feature_frame(frame, contract.numeric, contract.categorical)
    y = frame["label"]
    pipeline = build_pipeline("classification", "random_forest", {"n_estimators": 10},
                              contract.numeric, contract.categorical, seed=0).fit(features, y)
    return pipeline, features, y, cv_folds(y, "classification", 3, 0)


def test_a_learning_curve_within_budget_has_every_point_and_memorises_its_rows(fitted):
    """A forest scores (nearly) perfectly on the rows it fitted and worse on the held-out fold,
    at every share of the data."""
    from experiments.evaluation import LEARNING_CURVE_SIZES, learning_curve_points, metric_scorer

    pipeline, features, y, folds = fitted

    curve = learning_curve_points(pipeline, features, y, folds, metric_scorer("classification", "roc_auc"),
                                  budget_s=math.inf, seed=0)

    assert curve.complete and len(curve.sizes) == len(LEARNING_CURVE_SIZES)
    assert curve.sizes == sorted(curve.sizes) and curve.sizes[-1] == len(folds[0][0])
    assert curve.train.shape == curve.valid.shape == (len(LEARNING_CURVE_SIZES), 3)
    assert (np.nanmean(curve.train, axis=1) > np.nanmean(curve.valid, axis=1)).all()


def test_without_budget_the_learning_curve_stops_after_its_smallest_point(fitted):
    from experiments.evaluation import learning_curve_figure, learning_curve_points, metric_scorer

    pipeline, features, y, folds = fitted

    curve = learning_curve_points(pipeline, features, y, folds, metric_scorer("classification", "roc_auc"),
                                  budget_s=0.0, seed=0)
    figure = learning_curve_figure(curve, "roc_auc")

    assert len(curve.sizes) == 1 and not curve.complete
    assert "over the time budget" in figure.axes[0].get_title()


PNG = b"\x89PNG\r\n\x1a\n"


def test_the_learning_curve_comes_as_a_png_from_what_pickles(fitted):
    """What the spare process receives pickles, and what it sends back is the figure's PNG."""
    import pickle

    from sklearn.base import clone

    from experiments.evaluation import learning_curve_png, metric_scorer, pyplot

    pipeline, features, y, folds = fitted
    scorer = metric_scorer("classification", "roc_auc")
    args = pickle.loads(pickle.dumps((clone(pipeline), features, y, folds, scorer)))
    open_before = pyplot().get_fignums()

    png = learning_curve_png(*args, budget_s=0.0, seed=0)

    assert png.startswith(PNG) and pyplot().get_fignums() == open_before


def _study(direction: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", -2, 2) ** 2 + t.suggest_int("n", 1, 5), n_trials=8)
    return study


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_search_plots_from_its_trials_are_the_studys_own(direction):
    """The plots drawn from the trials alone (in the spare process) are those of the study:
    the same history PNG, byte for byte, and the parameter importances beside it."""
    import pickle

    from experiments.evaluation import png_files, pyplot, search_plot_pngs, search_plots

    study = _study(direction)
    trials = pickle.loads(pickle.dumps(study.get_trials(deepcopy=False)))
    open_before = pyplot().get_fignums()

    pngs = search_plot_pngs(trials, greater_is_better=direction == "maximize")

    assert set(pngs) == {"optuna_history", "optuna_param_importances"}
    assert all(png.startswith(PNG) for png in pngs.values())
    assert pngs["optuna_history"] == png_files(search_plots(study))["optuna_history"]
    assert pyplot().get_fignums() == open_before


def test_run_now_keeps_the_result_or_the_error_for_result():
    from experiments.training import run_now

    assert run_now(divmod, 7, 2).result() == (3, 1)
    with pytest.raises(ZeroDivisionError):
        run_now(divmod, 1, 0).result()
