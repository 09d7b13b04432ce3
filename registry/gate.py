"""The champion/challenger gate: score the champion on the new holdout, decide, record.

Three steps, so the decision can be tested without MLflow: `score_champion` loads the
champion and computes its output, `decide_gate` decides, `apply_gate` registers the new
version and moves the aliases.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from mlflow.tracking import MlflowClient

from registry.champion import apply_decision, get_champion, register
from registry.loading import UnsafeModel, load_registered
from registry.promotion import HoldoutMetric, PromotionDecision, decide_promotion

if TYPE_CHECKING:  # a training's logged model; the gate itself needs no tracking code
    from experiments.tracking import LoggedPipeline


@dataclass(frozen=True)
class ChampionOutput:
    """The champion's output on the new holdout, or why it could not produce one."""

    version: str
    output: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None
    refused: bool = False  # the loader would not load it: nothing of it ran


@dataclass(frozen=True)
class GateResult:
    version: str
    promoted: bool
    champion_version: str | None
    decision: PromotionDecision
    previous_champion: str | None = None  # the champion this version was compared with


def score_champion(
    client: MlflowClient, name: str, output_fn: Callable[[object], np.ndarray]
) -> ChampionOutput | None:
    """The champion's output_fn(model), or None when there is no champion.

    output_fn raises ValueError or KeyError when the champion cannot score these data (other
    columns or classes); the reason is kept for the decision, as is why a champion was refused.
    """
    current = get_champion(client, name)
    if current is None:
        return None
    try:
        model = load_registered(client, name, current.version).pipeline
    except UnsafeModel as error:
        return ChampionOutput(current.version, error=str(error), refused=True)
    try:
        return ChampionOutput(current.version, output=output_fn(model))
    except (ValueError, KeyError) as error:
        return ChampionOutput(current.version, error=str(error))


def champion_now(
    client: MlflowClient, name: str, scored: ChampionOutput | None,
    output_fn: Callable[[object], np.ndarray],
) -> ChampionOutput | None:
    """`scored` (the champion's output taken earlier, outside the promotion lock) while
    `champion` has not moved since; scored again when it has. Call under the lock: the
    champion compared with is then the one a promotion replaces."""
    current = get_champion(client, name)
    # str: the SQLite store gives versions as numbers where the REST client gives text.
    if (None if current is None else str(current.version)) == (scored and str(scored.version)):
        return scored
    return score_champion(client, name, output_fn)


def decide_gate(
    y_holdout: np.ndarray,
    candidate_output: np.ndarray,
    champion: ChampionOutput | None,
    metric: HoldoutMetric,
    seed: int = 0,
) -> PromotionDecision:
    """Promote only a version that beats the champion; one the champion cannot be compared
    with stays a challenger for a person to judge."""
    if champion is not None and champion.refused:
        return PromotionDecision(
            False,
            f"champion v{champion.version} was not loaded ({champion.error}); check it and move "
            "the alias if the new version should serve",
            metric.score(y_holdout, candidate_output),
        )
    if champion is not None and champion.output is None:
        return PromotionDecision(
            False,
            f"champion v{champion.version} cannot score this holdout ({champion.error}); "
            "compare by hand and move the alias if the new version should serve",
            metric.score(y_holdout, candidate_output),
        )
    return decide_promotion(
        y_holdout, candidate_output, None if champion is None else champion.output, metric,
        seed=seed,
    )


def apply_gate(
    client: MlflowClient,
    name: str,
    model: "LoggedPipeline",
    run_id: str,
    tags: dict[str, str],
    decision: PromotionDecision,
    champion_version: str | None,
) -> GateResult:
    """Register the new version, then give it `champion` or `challenger` as decided."""
    version = register(client, name, model.uri, run_id, tags, model.digest).version
    apply_decision(client, name, version, decision, champion_version)
    return GateResult(
        version=version,
        promoted=decision.promote,
        champion_version=version if decision.promote else champion_version,
        decision=decision,
        previous_champion=champion_version,
    )
