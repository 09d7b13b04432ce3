"""scikit-learn pipelines: imputation, scaling and one-hot encoding, then the estimator."""

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ESTIMATORS = {
    ("classification", "logistic_regression"): LogisticRegression,
    ("regression", "ridge"): Ridge,
    ("classification", "random_forest"): RandomForestClassifier,
    ("regression", "random_forest"): RandomForestRegressor,
    ("classification", "hist_gradient_boosting"): HistGradientBoostingClassifier,
    ("regression", "hist_gradient_boosting"): HistGradientBoostingRegressor,
}
_LINEAR = {"logistic_regression", "ridge"}
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
_SEEDED = {"logistic_regression", "random_forest", "hist_gradient_boosting"}


def build_pipeline(
    task: str,
    family: str,
    params: dict[str, Any],
    numeric: list[str],
    categorical: list[str],
    seed: int,
) -> Pipeline:
    numeric_steps: list = [("impute", SimpleImputer(strategy="median"))]
    if family in _LINEAR:
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
    return Pipeline([("prepare", prepare), ("model", estimator)])


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
    for (_, family), cls in ESTIMATORS.items():
        if cls is estimator:
            return list(SKOPS_TRUSTED_TYPES[family])
    return None
