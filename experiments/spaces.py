"""Search spaces per model family; trial parameters are named `<family>__<param>`, and the
feature engineering a trial chose `fe.<choice>`."""

from typing import Any

import optuna

from experiments import features as fe

SEPARATOR = "__"
LINEAR = ("logistic_regression", "ridge")
# Pairwise products of n numeric columns make n(n-1)/2 more: past this many, too many to try.
MAX_INTERACTION_COLUMNS = 20


def suggest_params(trial: optuna.Trial, family: str) -> dict[str, Any]:
    """The estimator's keyword arguments for this trial, drawn from the family's space."""
    def name(param: str) -> str:
        return f"{family}{SEPARATOR}{param}"

    if family == "logistic_regression":
        return {
            "C": trial.suggest_float(name("C"), 1e-3, 1e2, log=True),
            "class_weight": trial.suggest_categorical(name("class_weight"), [None, "balanced"]),
        }
    if family == "ridge":
        return {"alpha": trial.suggest_float(name("alpha"), 1e-3, 1e3, log=True)}
    if family == "random_forest":
        return {
            "n_estimators": trial.suggest_int(name("n_estimators"), 50, 300, step=50),
            "max_depth": trial.suggest_int(name("max_depth"), 2, 24, log=True),
            "min_samples_leaf": trial.suggest_int(name("min_samples_leaf"), 1, 20, log=True),
            "max_features": trial.suggest_categorical(name("max_features"), ["sqrt", "log2", 1.0]),
        }
    if family == "hist_gradient_boosting":
        return {
            "learning_rate": trial.suggest_float(name("learning_rate"), 0.01, 0.3, log=True),
            "max_iter": trial.suggest_int(name("max_iter"), 50, 400, step=50),
            "max_leaf_nodes": trial.suggest_int(name("max_leaf_nodes"), 8, 64, log=True),
            "min_samples_leaf": trial.suggest_int(name("min_samples_leaf"), 5, 50, log=True),
            "l2_regularization": trial.suggest_float(name("l2_regularization"), 1e-6, 10, log=True),
        }
    raise ValueError(f"unknown model family '{family}'")


def suggest_features(trial: optuna.Trial, family: str, n_numeric: int) -> dict[str, str]:
    """The trial's feature-engineering choices, as `fe.*` params, where they make sense.

    Skew transforms and interactions are for linear models only: trees split on ranks, which a
    monotone transform leaves as they are, and find interactions themselves. Every family may
    prune columns. Each name keeps the same choices everywhere, as Optuna requires."""
    def name(choice: str) -> str:
        return f"{fe.PREFIX}{choice}"

    chosen = {}
    if family in LINEAR and n_numeric:
        chosen[name("transform")] = trial.suggest_categorical(name("transform"), fe.TRANSFORMS)
    if family in LINEAR and 2 <= n_numeric <= MAX_INTERACTION_COLUMNS:
        chosen[name("interactions")] = trial.suggest_categorical(name("interactions"), fe.INTERACTIONS)
    chosen[name("selection")] = trial.suggest_categorical(name("selection"), fe.SELECTIONS)
    return chosen


def split_params(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(family, the pipeline's params) from a trial's flat parameters: the estimator's kwargs
    and the `fe.*` choices, which build_pipeline takes apart."""
    family = params["model"]
    prefix = f"{family}{SEPARATOR}"
    kwargs = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    return family, {**kwargs, **{k: v for k, v in params.items() if k.startswith(fe.PREFIX)}}
