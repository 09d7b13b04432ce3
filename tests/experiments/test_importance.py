"""Permutation importance predicted in batches gives sklearn's numbers, and fits run on one
native thread on small data or when the machine is busy (no servers)."""

import numpy as np
import optuna
import pytest
from sklearn.inspection import permutation_importance
from synthetic import binary_frame, multiclass_frame, regression_frame
from threadpoolctl import threadpool_info, threadpool_limits

from experiments import evaluation
from experiments.evaluation import importance_scorer, permutation_importances
from experiments.pipelines import build_pipeline
from experiments.threads import SMALL_DATA_ROWS, fit_threads, threads_per_trial

# All copies in one call (50_000 rows), or a few per call (150).
CASES = [
    ("classification", "hist_gradient_boosting", "roc_auc", True, binary_frame, "label", 50_000),
    ("classification", "logistic_regression", "log_loss", False, multiclass_frame, "kind", 150),
    ("regression", "ridge", "rmse", False, regression_frame, "y", 150),
]


@pytest.mark.parametrize(("task", "family", "metric", "higher", "make", "target", "batch_rows"),
                         CASES)
def test_batched_permutation_importance_is_sklearns(monkeypatch, task, family, metric, higher,
                                                    make, target, batch_rows):
    frame = make()
    features, y = frame.drop(columns=[target]), frame[target]
    numeric = [c for c in features if features[c].dtype.kind == "f"]
    categorical = [c for c in features if c not in numeric]
    model = build_pipeline(task, family, {}, numeric, categorical, 0).fit(features[:160], y[:160])
    holdout_x, holdout_y = features[160:].reset_index(drop=True), y[160:].reset_index(drop=True)
    classes = tuple(model.classes_) if task == "classification" else None
    scorer = importance_scorer(task, metric, higher, classes)
    monkeypatch.setattr(evaluation, "IMPORTANCE_BATCH_ROWS", batch_rows)

    ours = permutation_importances(model, holdout_x, holdout_y, scorer, n_repeats=5, seed=7)
    theirs = permutation_importance(model, holdout_x, holdout_y, scoring=scorer, n_repeats=5,
                                    random_state=7, n_jobs=1)

    assert ours.shape == (features.shape[1], 5)
    np.testing.assert_allclose(ours, theirs.importances, rtol=1e-9, atol=1e-12)
    assert np.abs(ours).sum() > 0  # the shuffles changed something: not a vacuous equality


def _threads() -> set:
    return {pool["num_threads"] for pool in threadpool_info()}


BIG, SMALL = SMALL_DATA_ROWS, SMALL_DATA_ROWS - 1


@pytest.mark.parametrize(("rows", "busy", "one_thread"), [
    (BIG, True, True), (BIG, False, False), (SMALL, False, True), (SMALL, True, True)])
def test_a_trial_runs_on_one_native_thread_on_small_data_or_a_busy_machine(rows, busy, one_thread):
    seen = {}

    def objective(trial):
        seen[trial.number] = _threads()
        return 0.0

    with threadpool_limits(2):  # as a quiet machine's default would be
        study = optuna.create_study()
        study.optimize(threads_per_trial(objective, rows, busy=lambda: busy), n_trials=1)
        assert study.trials[0].user_attrs["one_thread"] is one_thread
        assert seen[0] == ({1} if one_thread else {2})
        assert _threads() == {2}  # the limit ends with the trial


def test_fit_threads_limits_on_small_data_or_a_busy_machine():
    with threadpool_limits(2):
        with fit_threads(BIG, busy=lambda: True):
            assert _threads() == {1}
        with fit_threads(BIG, busy=lambda: False):
            assert _threads() == {2}
        with fit_threads(SMALL, busy=lambda: False):
            assert _threads() == {1}


def test_the_importance_and_holdout_figures_travel_as_data_and_come_back_as_pngs():
    """The figures a spare process draws (flows/spare.py) take plain data and give PNG bytes:
    the importance's mean and spread by feature, the holdout's plots of either task."""
    frame = binary_frame()
    features, y = frame.drop(columns=["label"]), frame["label"]
    model = build_pipeline("classification", "logistic_regression", {}, ["x1", "x2", "noise"],
                           ["colour"], 0).fit(features, y)
    scorer = importance_scorer("classification", "roc_auc", True, tuple(model.classes_))
    mean, spread = evaluation.feature_importance(model, features, y, scorer, seed=0)
    assert list(mean) == list(spread) == list(features.columns)
    assert all(s >= 0 for s in spread.values())

    png = b"\x89PNG\r\n\x1a\n"
    assert evaluation.importance_png(mean, spread, "roc_auc").startswith(png)
    output = model.predict_proba(features)
    drawn = evaluation.holdout_pngs("classification", y, output, tuple(model.classes_))
    assert set(drawn) == {"confusion_matrix", "roc_curve"}
    fit = regression_frame()
    drawn = evaluation.holdout_pngs("regression", fit["y"], fit["y"].to_numpy() * 0.9, None)
    assert set(drawn) == {"residuals", "predicted_vs_actual"}
    assert all(p.startswith(png) for p in drawn.values())
