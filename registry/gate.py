"""The champion/challenger gate: score the champion on the new holdout, decide, record."""

from collections.abc import Callable
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from registry.champion import apply_decision, get_champion, register
from registry.promotion import PromotionDecision, ScoreFn, decide_promotion


@dataclass(frozen=True)
class GateResult:
    version: str
    promoted: bool
    champion_version: str | None
    decision: PromotionDecision


def run_gate(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str,
    y_holdout: np.ndarray,
    candidate_output: np.ndarray,
    champion_output_fn: Callable[[object], np.ndarray],
    score_fn: ScoreFn,
    *,
    metric: str,
    greater_is_better: bool,
    tags: dict[str, str],
    seed: int = 0,
) -> GateResult:
    """Register the new version; it takes `champion` only if it beats the current one.

    champion_output_fn(model) gives the champion's output on this run's holdout; it raises
    ValueError or KeyError when the champion cannot score these data (other columns or
    classes), and then the new version stays a challenger for a person to judge.
    """
    previous = get_champion(client, name)
    champion_output = None
    decision = None
    if previous is not None:
        try:
            champion = mlflow.sklearn.load_model(f"models:/{name}/{previous.version}")
            champion_output = champion_output_fn(champion)
        except (ValueError, KeyError) as error:
            decision = PromotionDecision(
                False,
                f"champion v{previous.version} cannot score this holdout ({error}); "
                "compare by hand and move the alias if the new version should serve",
                score_fn(y_holdout, candidate_output),
            )
    if decision is None:
        decision = decide_promotion(
            y_holdout, candidate_output, champion_output, score_fn,
            metric=metric, greater_is_better=greater_is_better, seed=seed,
        )
    version = register(client, name, model_uri, run_id, tags)
    apply_decision(client, name, version.version, decision, previous)
    champion_version = version.version if decision.promote else (
        previous.version if previous else None
    )
    return GateResult(
        version=version.version,
        promoted=decision.promote,
        champion_version=champion_version,
        decision=decision,
    )
