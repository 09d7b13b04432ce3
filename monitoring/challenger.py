"""The challenger against the champion on live labels: the gate's paired bootstrap
(registry/promotion.py), on the live records both scored.

The rows are those the champion answered and the challenger shadowed (the versions as they
are now), whose true labels came back. Both models are re-scored on the rows' features, as
the live quality check does (monitoring/live.py): roc_auc and log_loss need probabilities,
which the store does not keep.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.contract import DataContract
from experiments.metrics import model_output
from experiments.pipelines import feature_frame
from experiments.spec import ExperimentSpec
from monitoring.live import as_classes
from monitoring.traffic import CHALLENGER_VERSION
from registry.promotion import HoldoutMetric, decide_promotion


class Incomparable(ValueError):
    """The two versions' outputs cannot be scored against each other."""


@dataclass(frozen=True)
class Contender:
    """One side of the comparison: a version, its pipeline and its data contract."""

    version: str
    pipeline: object
    contract: DataContract


@dataclass(frozen=True)
class LiveComparison:
    metric: str
    champion_version: str
    challenger_version: str
    n: int
    champion_score: float | None
    challenger_score: float | None
    delta: float | None  # positive: the challenger is better (as the gate's delta)
    p_value: float | None
    wins: bool  # better by more than noise, on at least `min_labelled` rows
    reason: str

    def as_json(self, model_name: str) -> dict:
        return {"model_name": model_name, "metric": self.metric,
                "champion_version": self.champion_version,
                "challenger_version": self.challenger_version, "n": self.n,
                "champion_score": self.champion_score, "challenger_score": self.challenger_score,
                "delta": self.delta, "p_value": self.p_value, "wins": self.wins,
                "reason": self.reason}


def paired_rows(labelled: pd.DataFrame, champion: str, challenger: str) -> pd.DataFrame:
    """The labelled live rows CHAMPION answered and CHALLENGER shadowed."""
    if labelled.empty or CHALLENGER_VERSION not in labelled.columns:
        return labelled.iloc[0:0]
    both = ((labelled["model_version"].astype(str) == champion)
            & (labelled[CHALLENGER_VERSION].astype(str) == challenger))
    return labelled[both].reset_index(drop=True)


def compare_live(rows: pd.DataFrame, champion: Contender, challenger: Contender,
                 spec: ExperimentSpec) -> LiveComparison:
    """Both versions on the paired rows: scores, delta, p-value, and whether the challenger
    wins (as the gate decides, and on at least monitoring.min_labelled rows)."""
    n, needed = len(rows), spec.monitoring.min_labelled

    def verdict(reason: str, decision=None) -> LiveComparison:
        values = (None,) * 4 if decision is None else (
            decision.champion_score, decision.candidate_score, decision.delta, decision.p_value)
        wins = decision is not None and decision.promote and n >= needed
        return LiveComparison(spec.metric, champion.version, challenger.version, n,
                              *map(_number, values), wins, reason)

    if n == 0:
        return verdict("no labelled live records that both versions scored")
    truth, classes = _truth(rows, champion)
    outputs = [_output(side, rows, classes) for side in (champion, challenger)]
    metric = HoldoutMetric.named(spec.metric, spec.greater_is_better, classes)
    decision = decide_promotion(truth, outputs[1], outputs[0], metric, seed=spec.tuning.seed)
    reason = f"on {n} labelled live records: {decision.reason}"
    if n < needed:
        reason += f"; at least {needed} are needed to promote (monitoring.min_labelled)"
    return verdict(reason, decision)


def _truth(rows: pd.DataFrame, champion: Contender) -> tuple[np.ndarray, tuple | None]:
    """The true labels as the champion's classes (and those classes), or as numbers."""
    truth = rows[champion.contract.target]
    if champion.contract.task != "classification":
        return truth.astype(float).to_numpy(), None
    classes = tuple(champion.pipeline.classes_)
    return as_classes(truth, classes).to_numpy(), classes


def _output(side: Contender, rows: pd.DataFrame, classes: tuple | None) -> np.ndarray:
    """A version's output on the rows; a classifier's probabilities in the champion's class order."""
    contract = side.contract
    features = feature_frame(rows, contract.numeric, contract.categorical)
    output = model_output(side.pipeline, features, contract.task)
    if classes is None:
        return np.asarray(output, dtype=float)
    own = [str(c) for c in side.pipeline.classes_]
    wanted = [str(c) for c in classes]
    if sorted(own) != sorted(wanted):
        raise Incomparable(f"version {side.version} predicts the classes {own}, the champion "
                         f"{wanted}: the two cannot be compared")
    return output[:, [own.index(c) for c in wanted]]


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
