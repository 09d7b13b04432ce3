"""The Optuna study (persisted, resumable, run to N finished trials) and the CV objective."""

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from experiments.objective import Problem, cv_folds, make_objective
from experiments.pipelines import feature_frame
from experiments.search import (
    best_trial,
    finished_trials,
    journal_storage,
    open_study,
    run_search,
)


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    return x * x


def every_third_pruned(trial: optuna.Trial) -> float:
    value = quadratic(trial)
    if trial.number % 3 == 2:
        raise optuna.TrialPruned()
    return value


def every_fourth_fails(trial: optuna.Trial) -> float:
    value = quadratic(trial)
    if trial.number % 4 == 1:
        raise ValueError("this model cannot fit these data")
    return value


def always_fails(trial: optuna.Trial) -> float:
    quadratic(trial)
    raise ValueError("this model cannot fit these data")


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def in_memory_study() -> optuna.Study:
    return open_study(optuna.storages.InMemoryStorage(), "s", greater_is_better=False, seed=0)


# --- open_study / run_search ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("greater_is_better", "direction"),
    [(True, StudyDirection.MAXIMIZE), (False, StudyDirection.MINIMIZE)],
    ids=["maximize", "minimize"],
)
def test_open_study_direction_follows_the_metric(tmp_path, greater_is_better, direction):
    """Given a metric's orientation, when the study is opened, then its direction matches."""
    study = open_study(journal_storage(tmp_path / "j.log"), "s", greater_is_better, seed=0)

    assert study.direction == direction


@pytest.mark.parametrize(
    "objective", [quadratic, every_third_pruned], ids=["complete", "complete+pruned"]
)
def test_run_search_reaches_exactly_the_requested_finished_trials(objective):
    """Given an empty study, when searched to 7 trials, then exactly 7 are finished."""
    study = in_memory_study()

    run_search(study, objective, n_trials=7, timeout_s=60)

    assert finished_trials(study) == 7
    assert len(study.trials) == 7


def test_pruned_trials_count_as_finished():
    """Given an objective pruning every third trial, then COMPLETE + PRUNED make up the count."""
    study = in_memory_study()

    run_search(study, every_third_pruned, n_trials=6, timeout_s=60)

    assert states(study).count(TrialState.PRUNED) == 2
    assert states(study).count(TrialState.COMPLETE) == 4


def test_failed_trials_do_not_count():
    """Given an objective failing every fourth trial, then the search runs on to 6 finished."""
    study = in_memory_study()

    run_search(study, every_fourth_fails, n_trials=6, timeout_s=60)

    assert finished_trials(study) == 6
    assert states(study).count(TrialState.FAIL) == 2


def test_run_search_on_a_finished_study_runs_nothing():
    """Given a study already holding N finished trials, when searched to N, then none are added."""
    study = in_memory_study()
    run_search(study, quadratic, n_trials=4, timeout_s=60)

    run_search(study, quadratic, n_trials=4, timeout_s=60)

    assert len(study.trials) == 4


def test_warm_start_params_are_tried_first():
    """Given warm-start params, when searching, then the first trial uses them."""
    study = in_memory_study()

    run_search(study, quadratic, n_trials=3, timeout_s=60, warm_start=[{"x": 0.25}])

    assert study.trials[0].params == {"x": 0.25}


def test_interrupted_search_resumes_to_exactly_n(tmp_path):
    """Given a search interrupted after 3 trials, when the journal is reopened and searched to 8,
    then 8 trials are finished in total and none is left RUNNING."""
    path = tmp_path / "j.log"

    def interrupt_after_three(study, trial):
        if finished_trials(study) >= 3:
            raise KeyboardInterrupt

    first = open_study(journal_storage(path), "s", greater_is_better=False, seed=0)
    with pytest.raises(KeyboardInterrupt):
        run_search(first, quadratic, n_trials=8, timeout_s=60, callbacks=[interrupt_after_three])
    assert finished_trials(first) == 3

    resumed = open_study(journal_storage(path), "s", greater_is_better=False, seed=0)
    run_search(resumed, quadratic, n_trials=8, timeout_s=60)

    assert finished_trials(resumed) == 8
    assert TrialState.RUNNING not in states(resumed)


def test_open_study_fails_trials_left_running_by_a_dead_process(tmp_path):
    """Given a journal holding a RUNNING trial (its process died), when the study is opened
    again, then that trial is FAIL and the finished ones are kept."""
    path = tmp_path / "j.log"
    study = open_study(journal_storage(path), "s", greater_is_better=False, seed=0)
    run_search(study, quadratic, n_trials=2, timeout_s=60)
    study.ask()  # started, never told: what a killed worker leaves behind

    reopened = open_study(journal_storage(path), "s", greater_is_better=False, seed=0)

    assert states(reopened) == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]


def test_search_stops_after_max_failures_in_a_row():
    """Given an objective that always raises ValueError, when searched to 10, then it stops
    after 3 failures in a row."""
    study = in_memory_study()

    run_search(study, always_fails, n_trials=10, timeout_s=60, max_failures_in_a_row=3)

    assert states(study) == [TrialState.FAIL] * 3


def test_best_trial_without_a_completed_trial_raises():
    """Given a study where every trial failed, then best_trial says no trial completed."""
    study = in_memory_study()
    run_search(study, always_fails, n_trials=10, timeout_s=60, max_failures_in_a_row=2)

    with pytest.raises(RuntimeError, match="no trial completed"):
        best_trial(study)


def test_best_trial_error_gives_the_failure_reason():
    """Given trials that failed with 'cannot fit these data', then best_trial's error says why."""
    study = in_memory_study()
    run_search(study, always_fails, n_trials=10, timeout_s=60, max_failures_in_a_row=2)

    with pytest.raises(RuntimeError, match="cannot fit these data"):
        best_trial(study)


def test_best_trial_is_the_best_completed_trial():
    """Given a minimising study, then best_trial has the lowest value."""
    study = in_memory_study()
    run_search(study, quadratic, n_trials=5, timeout_s=60)

    assert best_trial(study).value == min(t.value for t in study.trials)


# --- cv_folds / make_objective ----------------------------------------------------------------


@pytest.fixture
def classification_data() -> tuple[pd.DataFrame, pd.Series]:
    """60 rows: two numeric features (one with NaN), a categorical one, a 2:1 binary target."""
    rng = np.random.default_rng(0)
    n = 60
    signal = rng.normal(size=n)
    raw = pd.DataFrame(
        {
            "a": signal + rng.normal(scale=0.5, size=n),
            "b": rng.normal(size=n),
            "site": rng.choice(["north", "south"], n).astype(object),
        }
    )
    raw.loc[[3, 17], "b"] = np.nan
    raw.loc[[4], "site"] = None
    y = pd.Series(np.where(signal > np.quantile(signal, 2 / 3), "yes", "no"))
    return feature_frame(raw, ["a", "b"], ["site"]), y


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_cv_folds_cover_every_row_once(task):
    """Given 30 rows and 3 folds, then each row is in exactly one validation fold."""
    y = pd.Series(["x", "y", "z"] * 10)

    folds = cv_folds(y, task, n_folds=3, seed=0)

    assert len(folds) == 3
    assert sorted(np.concatenate([valid for _, valid in folds])) == list(range(30))
    for train, valid in folds:
        assert set(train).isdisjoint(valid)


def test_cv_folds_are_stratified_for_classification():
    """Given a 2:1 target and 4 folds, then every validation fold keeps the 2:1 proportion."""
    y = pd.Series(["no"] * 40 + ["yes"] * 20)

    folds = cv_folds(y, "classification", n_folds=4, seed=0)

    for _, valid in folds:
        assert y.iloc[valid].value_counts().to_dict() == {"no": 10, "yes": 5}


def test_cv_folds_are_deterministic_for_a_seed():
    """Given the same seed twice, then the folds are the same."""
    y = pd.Series(range(20), dtype=float)

    first, second = cv_folds(y, "regression", 4, seed=3), cv_folds(y, "regression", 4, seed=3)

    assert all((a[1] == b[1]).all() for a, b in zip(first, second, strict=True))


def _problem(task: str, metric: str, *families: str) -> Problem:
    return Problem(task, metric, families, ("a", "b"), ("site",), seed=0)


def test_objective_returns_the_mean_fold_score_and_records_it(classification_data):
    """Given 3 folds and roc_auc, when a trial runs, then it returns a score in [0, 1] that is
    the mean of the 3 fold scores it records."""
    features, y = classification_data
    objective = make_objective(
        features, y, _problem("classification", "roc_auc", "logistic_regression"),
        cv_folds(y, "classification", 3, seed=0),
    )
    trial = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)).ask()

    value = objective(trial)

    assert isinstance(value, float)
    assert value > 0.75  # column a carries the signal: far better than chance (0.5)
    assert len(trial.user_attrs["fold_scores"]) == 3
    assert value == pytest.approx(np.mean(trial.user_attrs["fold_scores"]))
    assert trial.user_attrs["fit_seconds"] > 0


def test_objective_for_regression_scores_rmse(classification_data):
    """Given a target that is a linear function of a feature and rmse, when a lightly
    regularised ridge trial runs, then its error is a small part of the target's spread, with
    one score per fold."""
    features, _ = classification_data
    y = features["a"].fillna(0) * 3 + 1
    objective = make_objective(features, y, _problem("regression", "rmse", "ridge"),
                               cv_folds(y, "regression", 2, 0))
    trial = optuna.trial.FixedTrial({"model": "ridge", "ridge__alpha": 1e-3, "fe.transform": "none",
                                     "fe.interactions": "none", "fe.selection": "none"})

    value = objective(trial)

    assert value < 0.5 * y.std()
    assert len(trial.user_attrs["fold_scores"]) == 2


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_objective_prunes_between_folds(classification_data):
    """Given a pruner that always prunes, when a trial runs, then it stops after the first fold."""
    features, y = classification_data
    objective = make_objective(
        features, y, _problem("classification", "accuracy", "logistic_regression"),
        cv_folds(y, "classification", 3, seed=0),
    )
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())

    study.optimize(objective, n_trials=1)

    assert study.trials[0].state == TrialState.PRUNED
    assert len(study.trials[0].user_attrs["fold_scores"]) == 1


def test_a_trial_that_fails_at_a_later_fold_keeps_the_scores_of_the_folds_it_finished(
        classification_data, monkeypatch):
    """Given a metric that cannot score the third fold, the failed trial still records the
    first two folds' scores (a trial's attributes are written once, when it ends)."""
    import experiments.objective

    features, y = classification_data
    scored = []

    def score_two_folds(*args):
        if len(scored) == 2:
            raise ValueError("this fold cannot be scored")
        scored.append(0.5)
        return 0.5

    monkeypatch.setattr(experiments.objective, "score", score_two_folds)
    objective = make_objective(
        features, y, _problem("classification", "accuracy", "logistic_regression"),
        cv_folds(y, "classification", 3, seed=0),
    )
    study = optuna.create_study(direction="maximize")

    study.optimize(objective, n_trials=1, catch=(ValueError,))

    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fold_scores"] == [0.5, 0.5]


def test_search_with_the_cv_objective_records_every_trial(classification_data, tmp_path):
    """Given the CV objective over two families, when searched to 3 trials on a journal, then 3
    finished trials each record 2 fold scores."""
    features, y = classification_data
    objective = make_objective(
        features, y,
        _problem("classification", "roc_auc", "logistic_regression", "hist_gradient_boosting"),
        cv_folds(y, "classification", 2, seed=0),
    )
    study = open_study(journal_storage(tmp_path / "j.log"), "s", greater_is_better=True, seed=0)

    run_search(study, objective, n_trials=3, timeout_s=120)

    assert finished_trials(study) == 3
    assert all(len(t.user_attrs["fold_scores"]) == 2 for t in study.trials)
    assert best_trial(study).value == max(t.value for t in study.trials)
