"""Feature engineering in the search: the steps themselves, the space that chooses them, the
pipelines they go into, and a search that uses them against one that does not."""

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats
from synthetic import log_target_frame

from experiments.contract import infer_contract
from experiments.data import split_holdout
from experiments.features import DropCorrelated, SkewCorrection, signed_log
from experiments.metrics import score
from experiments.objective import Problem, cv_folds, make_objective
from experiments.pipelines import build_pipeline, feature_frame
from experiments.search import best_trial, journal_storage, open_study, run_search
from experiments.spaces import MAX_INTERACTION_COLUMNS, split_params, suggest_features
from experiments.spec import parse_spec
from experiments.training import problem_of


def skewed_and_normal(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.lognormal(0, 1.5, n), rng.normal(10, 2, n)])


# --- the steps ----------------------------------------------------------------------------------


def test_log_correction_transforms_only_the_skewed_column():
    """Given a heavy-tailed column and a symmetric one, when the log correction is fitted, then
    the first is log-transformed (and no longer skewed) and the second passes unchanged."""
    x = skewed_and_normal()

    out = SkewCorrection("log").fit(x).transform(x)

    assert np.allclose(out[:, 0], np.log1p(x[:, 0]))
    assert abs(stats.skew(out[:, 0])) < abs(stats.skew(x[:, 0])) / 4
    assert np.array_equal(out[:, 1], x[:, 1])


def test_signed_log_keeps_the_sign_of_negative_values():
    """Given negative values (where log1p is undefined below -1), then the magnitude is logged."""
    assert np.allclose(signed_log(np.array([-9.0, 0.0, 9.0])), [-np.log(10), 0, np.log(10)])


def test_power_correction_applies_the_lambda_it_fitted_to_new_rows():
    """Given a power correction fitted on some rows, when other rows are transformed, then they
    get the Yeo-Johnson transform with the fitted lambda (nothing is refitted on them)."""
    x = skewed_and_normal()
    fitted = SkewCorrection("power").fit(x[:300])

    out = fitted.transform(x[300:])

    assert fitted.skewed_.tolist() == [True, False]
    assert np.allclose(out[:, 0], stats.yeojohnson(x[300:, 0], fitted.lambdas_[0]))
    assert abs(stats.skew(fitted.transform(x)[:, 0])) < 0.5
    assert np.array_equal(out[:, 1], x[300:, 1])


def test_power_correction_finds_scipys_most_likely_lambda():
    """Given skewed columns of either sign, then each fitted lambda is within the grid's step
    of the one scipy's own search finds."""
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.lognormal(0, 1.5, 400), rng.exponential(2, 400),
                         -rng.lognormal(0, 1, 400)])

    fitted = SkewCorrection("power").fit(x)

    expected = [stats.yeojohnson_normmax(x[:, i]) for i in range(3)]
    assert np.allclose(fitted.lambdas_, expected, atol=0.05)


def test_which_columns_are_skewed_is_decided_by_the_rows_fitted():
    """Given rows where a column is symmetric, when fitted on them, then that column is left
    alone even for later rows that are skewed: no row outside the fit decides anything."""
    rng = np.random.default_rng(1)
    symmetric = rng.normal(5, 1, size=(200, 1))
    skewed = rng.lognormal(0, 2, size=(200, 1))

    out = SkewCorrection("log").fit(symmetric).transform(skewed)

    assert np.array_equal(out, skewed)


def test_unknown_skew_method_is_rejected():
    with pytest.raises(ValueError, match="unknown skew correction 'sqrt'"):
        SkewCorrection("sqrt").fit(skewed_and_normal())


def test_drop_correlated_keeps_the_first_of_near_copies():
    """Given a column, a near copy of it (negated), an independent one and a constant one, then
    only the copy is dropped, and the names that remain say which."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=300)
    x = pd.DataFrame({"a": a, "copy": -2 * a + rng.normal(0, 0.01, 300),
                      "other": rng.normal(size=300), "constant": np.ones(300)})

    pruned = DropCorrelated().fit(x)

    assert pruned.get_feature_names_out().tolist() == ["a", "other", "constant"]
    assert np.array_equal(pruned.transform(x), x[["a", "other", "constant"]].to_numpy())


# --- the space ----------------------------------------------------------------------------------


def suggested(family: str, n_numeric: int) -> dict:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    return suggest_features(trial, family, n_numeric)


@pytest.mark.parametrize(("family", "n_numeric", "expected"), [
    ("ridge", 3, {"fe.transform", "fe.interactions", "fe.selection"}),
    ("logistic_regression", 3, {"fe.transform", "fe.interactions", "fe.selection"}),
    ("ridge", 1, {"fe.transform", "fe.selection"}),  # one column: no pairs
    ("ridge", MAX_INTERACTION_COLUMNS + 1, {"fe.transform", "fe.selection"}),  # too many pairs
    ("ridge", 0, {"fe.selection"}),  # no numeric column to transform
    ("random_forest", 3, {"fe.selection"}),  # trees: rank-based, find interactions themselves
    ("hist_gradient_boosting", 3, {"fe.selection"}),
])
def test_each_family_gets_the_choices_that_make_sense_for_it(family, n_numeric, expected):
    assert set(suggested(family, n_numeric)) == expected


def test_split_params_keeps_the_feature_choices_for_the_pipeline():
    """Given a trial's flat params with fe.* choices, then split_params hands them on."""
    flat = {"model": "ridge", "ridge__alpha": 2.0, "fe.transform": "log", "random_forest__max_depth": 3}

    assert split_params(flat) == ("ridge", {"alpha": 2.0, "fe.transform": "log"})


def test_spec_turns_feature_engineering_on_by_default_and_off_for_the_search():
    base = "name: x\ntask: regression\ndata: {source: d.csv, target: y}\n"

    off = parse_spec(base + "tuning: {feature_engineering: false}\n", "t")

    assert parse_spec(base, "t").tuning.feature_engineering is True
    assert off.tuning.feature_engineering is False
    contract = infer_contract(log_target_frame(n=50), "y", "regression")
    assert problem_of(off, contract).feature_engineering is False


# --- the pipelines ------------------------------------------------------------------------------


def numeric_steps(pipeline) -> list[str]:
    return [name for name, _ in pipeline.named_steps["prepare"].transformers[0][1].steps]


def test_pipeline_holds_the_chosen_steps_in_order():
    """Given every choice on, then the numeric columns are imputed, log-corrected, multiplied in
    pairs, scaled, and the prepared columns are selected by importance before the model."""
    params = {"alpha": 1.0, "fe.transform": "log", "fe.interactions": "pairs",
              "fe.selection": "importance"}

    pipeline = build_pipeline("regression", "ridge", params, ["a", "b"], ["c"], seed=0)

    assert numeric_steps(pipeline) == ["impute", "skew", "interact", "scale"]
    assert [name for name, _ in pipeline.steps] == ["prepare", "select", "model"]
    assert pipeline.named_steps["model"].alpha == 1.0


def test_choosing_none_builds_the_plain_pipeline():
    """Given every choice 'none', then the pipeline is the one built without any choice."""
    none = {"fe.transform": "none", "fe.interactions": "none", "fe.selection": "none"}

    chosen = build_pipeline("regression", "ridge", none, ["a", "b"], ["c"], seed=0)
    plain = build_pipeline("regression", "ridge", {}, ["a", "b"], ["c"], seed=0)

    assert numeric_steps(chosen) == numeric_steps(plain) == ["impute", "scale"]
    assert [n for n, _ in chosen.steps] == [n for n, _ in plain.steps] == ["prepare", "model"]


@pytest.mark.parametrize("selection", ["correlated", "importance"])
def test_selection_drops_columns_and_still_predicts(selection):
    """Given a copied column and pure-noise ones, when a pipeline that selects is fitted, then
    fewer columns reach the model than were prepared, and it predicts every row."""
    rng = np.random.default_rng(3)
    n = 300
    a = rng.normal(size=n)
    frame = pd.DataFrame({"a": a, "copy": a * 3, **{f"noise{i}": rng.normal(size=n) for i in range(6)}})
    y = 2 * a + rng.normal(0, 0.1, n)
    columns = list(frame.columns)

    pipeline = build_pipeline("regression", "random_forest",
                              {"n_estimators": 10, "fe.selection": selection}, columns, [], 0)
    pipeline.fit(feature_frame(frame, columns, []), y)

    assert pipeline.named_steps["model"].n_features_in_ < len(columns)
    assert pipeline.predict(feature_frame(frame, columns, [])).shape == (n,)


# --- the search ---------------------------------------------------------------------------------


def search(train: pd.DataFrame, feature_engineering: bool, storage) -> optuna.trial.FrozenTrial:
    """The platform's search (objective, study, runner) of ridge on the training rows."""
    features = feature_frame(train, ["x", "z"], ["site"])
    y = train["y"].reset_index(drop=True)
    problem = Problem("regression", "rmse", ("ridge",), ("x", "z"), ("site",), 0, feature_engineering)
    study = open_study(storage, f"fe-{feature_engineering}", greater_is_better=False, seed=0)
    run_search(study, make_objective(features, y, problem, cv_folds(y, "regression", 3, 0)),
               n_trials=8, timeout_s=120)
    return best_trial(study)


def holdout_rmse(best: optuna.trial.FrozenTrial, train: pd.DataFrame, holdout: pd.DataFrame) -> float:
    """The best trial's pipeline refitted on the training rows, scored on the holdout."""
    family, params = split_params(best.params)
    pipeline = build_pipeline("regression", family, params, ["x", "z"], ["site"], 0)
    pipeline.fit(feature_frame(train, ["x", "z"], ["site"]), train["y"])
    predicted = pipeline.predict(feature_frame(holdout, ["x", "z"], ["site"]))
    return score("rmse", holdout["y"], predicted, None)


def test_search_with_feature_engineering_beats_the_search_without(tmp_path):
    """Given a target that depends on log(x) of a heavy-tailed x, when the same seeded search
    of ridge runs with and without feature engineering, then the one with it finds a skew
    transform, and its best pipeline has the lower error in cross-validation and on a holdout
    neither search saw."""
    data = split_holdout(log_target_frame(), "y", "regression", 0.25, 0)
    storage = journal_storage(tmp_path / "journal.log")

    with_fe = search(data.train, True, storage)
    without = search(data.train, False, storage)

    assert with_fe.params["fe.transform"] in ("log", "power")
    assert not any(k.startswith("fe.") for k in without.params)
    assert with_fe.value < without.value
    assert holdout_rmse(with_fe, data.train, data.holdout) < holdout_rmse(without, data.train, data.holdout)
