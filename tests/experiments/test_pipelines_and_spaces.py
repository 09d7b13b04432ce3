"""Search spaces per model family, and the pipelines they parameterise."""

import numpy as np
import optuna
import pandas as pd
import pytest

from experiments.pipelines import ESTIMATORS, build_pipeline, feature_frame
from experiments.spaces import SEPARATOR, split_params, suggest_params
from experiments.spec import MODELS

NUMERIC = ["length", "depth"]
CATEGORICAL = ["island"]
TASK_FAMILIES = [(task, family) for task, families in MODELS.items() for family in families]


@pytest.fixture
def raw() -> pd.DataFrame:
    """60 rows with numbers, text (as a category) and NaN in both kinds of column."""
    rng = np.random.default_rng(0)
    n = 60
    length = rng.normal(40, 5, n)
    frame = pd.DataFrame(
        {
            "length": length,
            "depth": rng.normal(17, 2, n),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n).astype(object),
            "species": np.where(length > 40, "Gentoo", "Adelie"),
            "mass": length * 90 + rng.normal(0, 50, n),
        }
    )
    frame.loc[[1, 5, 9], "length"] = np.nan
    frame.loc[[2, 6], "island"] = None
    return frame


def trial_params(family: str) -> tuple[dict, dict]:
    """(estimator kwargs, the trial's flat params) from one trial of a real in-memory study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    trial.suggest_categorical("model", [family])
    params = suggest_params(trial, family)
    return params, dict(trial.params)


@pytest.mark.parametrize(("task", "family"), TASK_FAMILIES)
def test_suggested_params_build_a_pipeline_that_fits_and_predicts(raw, task, family):
    """Given a trial's params for each task and family, when the pipeline is fitted on data with
    a categorical column and NaN, then it predicts one output per row."""
    params, _ = trial_params(family)
    target = "species" if task == "classification" else "mass"
    features = feature_frame(raw, NUMERIC, CATEGORICAL)
    pipeline = build_pipeline(task, family, params, NUMERIC, CATEGORICAL, seed=0)

    pipeline.fit(features, raw[target])
    predicted = pipeline.predict(features)

    assert predicted.shape == (len(raw),)
    if task == "classification":
        assert set(predicted) <= {"Adelie", "Gentoo"}
        # What the champion is scored against before the refit (experiments.training.expected_classes).
        assert tuple(pipeline.classes_) == tuple(np.unique(raw[target]))
        assert pipeline.predict_proba(features).shape == (len(raw), 2)
    else:
        assert np.isfinite(predicted).all()


@pytest.mark.parametrize("family", sorted({f for fs in MODELS.values() for f in fs}))
def test_trial_params_are_named_family_separator_param(family):
    """Given a trial for a family, then every drawn parameter is named '<family>__<param>'."""
    params, flat = trial_params(family)

    assert {k for k in flat if k != "model"} == {f"{family}{SEPARATOR}{p}" for p in params}


@pytest.mark.parametrize("family", sorted({f for fs in MODELS.values() for f in fs}))
def test_split_params_round_trips_a_trials_flat_params(family):
    """Given a trial's flat params, when split, then the family and its kwargs come back."""
    params, flat = trial_params(family)

    assert split_params(flat) == (family, params)


def test_split_params_ignores_other_families_params():
    """Given flat params holding another family's keys too, then only the chosen ones are kept."""
    flat = {"model": "ridge", "ridge__alpha": 2.0, "random_forest__max_depth": 3}

    assert split_params(flat) == ("ridge", {"alpha": 2.0})


def test_unknown_family_is_rejected():
    """Given an unknown family, when params are suggested, then ValueError names it."""
    trial = optuna.create_study().ask()

    with pytest.raises(ValueError, match="unknown model family 'svm'"):
        suggest_params(trial, "svm")


@pytest.mark.parametrize(("task", "family"), TASK_FAMILIES)
def test_seeded_families_get_the_seed(task, family):
    """Given a seed, then estimators that take random_state get it (ridge is deterministic)."""
    pipeline = build_pipeline(task, family, {}, NUMERIC, CATEGORICAL, seed=123)

    expected = None if family == "ridge" else 123
    assert pipeline.named_steps["model"].get_params()["random_state"] == expected


def test_unseen_category_at_predict_time_is_ignored(raw):
    """Given a fitted pipeline, when a row has an island never seen, then it still predicts."""
    features = feature_frame(raw, NUMERIC, CATEGORICAL)
    pipeline = build_pipeline("classification", "logistic_regression", {}, NUMERIC, CATEGORICAL, 0)
    pipeline.fit(features, raw["species"])
    new = features.head(2).assign(island=["Atlantis", "Dream"])

    assert pipeline.predict_proba(new).shape == (2, 2)


def test_feature_frame_makes_numbers_float_and_categories_text():
    """Given mixed raw columns, then numeric ones become float (bad text -> NaN) and categorical
    ones become text with missing values kept as NaN."""
    raw = pd.DataFrame({"n": ["1", "x", None], "c": [1, None, 3], "unused": [0, 0, 0]})

    features = feature_frame(raw, ["n"], ["c"])

    assert list(features.columns) == ["n", "c"]
    assert features["n"].dtype == "float64"
    assert features["n"].tolist()[0] == 1.0
    assert features["n"].isna().tolist() == [False, True, True]
    assert features["c"].tolist()[0] == "1.0"
    assert features["c"].isna().tolist() == [False, True, False]


FEATURE_CHOICES = [
    {},
    {"fe.transform": "log", "fe.interactions": "pairs", "fe.selection": "correlated"},
    {"fe.transform": "power", "fe.selection": "importance"},
]


@pytest.mark.parametrize("choices", FEATURE_CHOICES, ids=["plain", "log-pairs-correlated",
                                                          "power-importance"])
@pytest.mark.parametrize(("task", "family"), sorted(ESTIMATORS))
def test_skops_trusted_types_table_matches_what_skops_finds(task, family, choices):
    """Given a fitted pipeline of each family, with and without each feature-engineering step,
    the trusted-types tables list exactly the types skops reports as untrusted in its
    serialised form (so loading it needs nothing else)."""
    import skops.io

    from experiments.pipelines import skops_trusted_types

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.lognormal(0, 2, size=60),
                          "c": rng.choice(["x", "y", None], size=60)})
    features = feature_frame(frame, ["a", "b"], ["c"])
    y = rng.choice(["p", "q", "r"], size=60) if task == "classification" else rng.normal(size=60)
    small = {"random_forest": {"n_estimators": 3}, "hist_gradient_boosting": {"max_iter": 3}}
    params = {**small.get(family, {}), **choices}
    pipeline = build_pipeline(task, family, params, ["a", "b"], ["c"], 0).fit(features, y)

    found = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))

    assert sorted(skops_trusted_types(pipeline)) == sorted(found)
