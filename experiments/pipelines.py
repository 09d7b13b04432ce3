"""scikit-learn pipelines: imputation, scaling and one-hot encoding, the feature engineering a
trial chose (params `fe.*`), then the estimator."""

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_selection import SelectFromModel
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

from experiments import features as fe
from experiments.spaces import LINEAR

ESTIMATORS = {
    ("classification", "logistic_regression"): LogisticRegression,
    ("regression", "ridge"): Ridge,
    ("classification", "random_forest"): RandomForestClassifier,
    ("regression", "random_forest"): RandomForestRegressor,
    ("classification", "hist_gradient_boosting"): HistGradientBoostingClassifier,
    ("regression", "hist_gradient_boosting"): HistGradientBoostingRegressor,
}
_FIXED = {
    "logistic_regression": {"max_iter": 2000},
    "random_forest": {"n_jobs": 1},
}
# The types skops must be told to trust to load each family's fitted pipeline (the rest are
# trusted by default). Kept as a table because working them out means serialising the whole
# model once more (~0.25 s for a 100-tree forest); a unit test recomputes and compares.
SKOPS_TRUSTED_TYPES = {
    "logistic_regression": ("numpy.dtype",),
    "ridge": ("numpy.dtype",),
    "random_forest": ("numpy.dtype", "sklearn.tree._tree.Tree"),
    "hist_gradient_boosting": (
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    ),
}
# What each feature-engineering step adds to the family's types (same unit test).
FEATURE_SKOPS_TYPES = {
    fe.SkewCorrection: ("experiments.features.SkewCorrection",),
    fe.DropCorrelated: ("experiments.features.DropCorrelated",),
    SelectFromModel: ("sklearn.tree._tree.Tree",),  # the extra trees that rank the columns
}
_SEEDED = {"logistic_regression", "random_forest", "hist_gradient_boosting"}
# Importance selection: a small forest of extra trees ranks the prepared columns; those under
# half the mean importance go. Small, so a trial that selects costs little more than one that
# does not (the bench's feature_engineering figure).
_RANKER = {"n_estimators": 16, "max_depth": 6, "max_features": "sqrt", "n_jobs": 1}
_RANKERS = {"classification": ExtraTreesClassifier, "regression": ExtraTreesRegressor}


def build_pipeline(
    task: str,
    family: str,
    params: dict[str, Any],
    numeric: list[str],
    categorical: list[str],
    seed: int,
) -> Pipeline:
    """The pipeline for a trial's params: the estimator's kwargs and its `fe.*` choices."""
    choices = {k.removeprefix(fe.PREFIX): v for k, v in params.items() if k.startswith(fe.PREFIX)}
    params = {k: v for k, v in params.items() if not k.startswith(fe.PREFIX)}
    numeric_steps: list = [("impute", SimpleImputer(strategy="median"))]
    transform = choices.get("transform", "none")
    if transform != "none":
        numeric_steps.append(("skew", fe.SkewCorrection(method=transform)))
    if choices.get("interactions", "none") == "pairs":
        numeric_steps.append(("interact", PolynomialFeatures(
            degree=2, interaction_only=True, include_bias=False)))
    if family in LINEAR:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps = [
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ]
    prepare = ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), numeric),
            ("categorical", Pipeline(categorical_steps), categorical),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    kwargs = {**_FIXED.get(family, {}), **params}
    if family in _SEEDED:
        kwargs["random_state"] = seed
    estimator = ESTIMATORS[(task, family)](**kwargs)
    steps: list = [("prepare", prepare)]
    selection = choices.get("selection", "none")
    if selection == "correlated":
        steps.append(("select", fe.DropCorrelated()))
    elif selection == "importance":
        ranker = _RANKERS[task](**_RANKER, random_state=seed)
        steps.append(("select", SelectFromModel(ranker, threshold="0.5*mean")))
    return Pipeline([*steps, ("model", estimator)])


def feature_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input: numeric columns as float, categorical ones as text (NaN kept)."""
    columns = {}
    for column in numeric:
        columns[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        values = frame[column]
        columns[column] = values.astype(str).astype(object).where(values.notna(), np.nan)
    # One construction: inserting the columns one by one took longer than converting them.
    return pd.DataFrame(columns, index=frame.index)


def skops_trusted_types(pipeline: Pipeline) -> list[str] | None:
    """The skops types to trust for one of our pipelines, or None if it is not one of ours."""
    estimator = type(pipeline.named_steps.get("model"))
    family = next((f for (_, f), cls in ESTIMATORS.items() if cls is estimator), None)
    if family is None:
        return None
    trusted = set(SKOPS_TRUSTED_TYPES[family])
    for step in _steps(pipeline):
        trusted.update(FEATURE_SKOPS_TYPES.get(type(step), ()))
    return sorted(trusted)


def _steps(pipeline: Pipeline) -> list:
    """The pipeline's steps and those of the column transformer's pipelines."""
    found = [step for _, step in pipeline.steps]
    prepare = pipeline.named_steps.get("prepare")
    for _, part, _ in getattr(prepare, "transformers", ()):
        found += [step for _, step in getattr(part, "steps", ())]
    return found
