"""The model card: one Markdown page per version, built from what the training already has.

What the model predicts, from which data, the pipeline the search chose and why, its scores
with their spread across folds, where it should not be trusted (the data contract's ranges),
known limitations and the promotion decision. `build_card` is pure: the flow logs the page.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.contract import DataContract
from experiments.diagnostics import FitScores, gap_sentence
from experiments.spec import ExperimentSpec

CARD_ARTIFACT = "model_card.md"
FEW_CLASS_ROWS = 30  # a class with fewer rows is scored on a handful of holdout rows
IMBALANCE_RATIO = 3.0  # the largest class this many times the smallest: accuracy misleads
SMALL_DATA_ROWS = 500  # below, the holdout is small and its score varies by points
MAX_CATEGORIES_SHOWN = 12


@dataclass(frozen=True)
class CardData:
    """Facts about the data: where it came from, how much, its fingerprint, when it was read."""

    source: str
    rows: int
    digest: str
    trained_at: str  # ISO time of the training
    target_counts: dict[str, int]  # classification: rows per class; regression: empty


@dataclass(frozen=True)
class CardSearch:
    """The search's choice: the family and params, and how it compared."""

    family: str
    params: dict
    trials: int
    cv_folds: int
    fold_scores: tuple[float, ...]  # the chosen trial's score on each fold
    family_best: dict[str, float]  # the best cross-validated score each family reached


@dataclass(frozen=True)
class CardDecision:
    version: str
    promoted: bool
    reason: str
    champion_version: str | None


@dataclass(frozen=True)
class CardFacts:
    spec: ExperimentSpec
    contract: DataContract
    data: CardData
    search: CardSearch
    fit: FitScores
    holdout: dict[str, float]
    warnings: tuple[str, ...]  # the data profile's
    decision: CardDecision


def target_counts(frame: pd.DataFrame, target: str, task: str) -> dict[str, int]:
    """Rows per class, most first (classification only)."""
    if task != "classification":
        return {}
    return {str(k): int(v) for k, v in frame[target].value_counts().items()}


def build_card(facts: CardFacts) -> str:
    """The card as Markdown."""
    spec, decision = facts.spec, facts.decision
    sections = [
        f"# Model card: {spec.name}, version {decision.version}",
        _purpose(facts),
        _data(facts),
        _pipeline(facts),
        _scores(facts),
        _ranges(facts.contract),
        _limitations(facts),
        _decision(decision),
    ]
    return "\n\n".join(sections) + "\n"


def _purpose(facts: CardFacts) -> str:
    spec, contract = facts.spec, facts.contract
    what = (f"which of {len(contract.classes)} classes `{spec.data.target}` is "
            f"({', '.join(f'`{c}`' for c in contract.classes)})"
            if spec.task == "classification" and contract.classes
            else f"the value of `{spec.data.target}` (regression)")
    return (f"## What it predicts\n\nGiven {len(contract.columns)} features "
            f"({', '.join(f'`{c}`' for c in contract.feature_names)}), it predicts {what}.")


def _data(facts: CardFacts) -> str:
    data = facts.data
    profile = "" if facts.spec.profile else "\n- Profile: none made (`profile: false` in the spec)"
    return (f"## Data\n\n- Source: `{data.source}`\n- Rows: {data.rows} (a holdout of "
            f"{facts.spec.tuning.holdout_fraction:.0%} kept apart for scoring)\n"
            f"- Digest: `{data.digest}` (tag `mlops.data_digest`)\n- Trained: {data.trained_at}"
            f"{profile}")


def _pipeline(facts: CardFacts) -> str:
    search, spec = facts.search, facts.spec
    direction = "higher" if spec.greater_is_better else "lower"
    others = sorted(((f, s) for f, s in search.family_best.items() if f != search.family),
                    key=lambda fs: -fs[1] if spec.greater_is_better else fs[1])
    compared = ("; the best of the other families: "
                + ", ".join(f"`{f}` {s:.4f}" for f, s in others)) if others else ""
    params = ", ".join(f"{k}={v}" for k, v in sorted(search.params.items())) or "defaults"
    return (f"## Pipeline and why\n\n`{search.family}` ({params}). Chosen by an Optuna search of "
            f"{search.trials} trials over {', '.join(f'`{m}`' for m in spec.models)}, by "
            f"{spec.metric} in {search.cv_folds}-fold cross-validation on the training rows "
            f"({direction} is better): it scored {facts.fit.cv:.4f}{compared}.")


def _scores(facts: CardFacts) -> str:
    fit, folds = facts.fit, facts.search.fold_scores
    spread = (f" Across the {len(folds)} folds: mean {np.mean(folds):.4f}, standard deviation "
              f"{np.std(folds):.4f}, from {min(folds):.4f} to {max(folds):.4f}." if folds else "")
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in facts.holdout.items())
    gap = gap_sentence(fit)
    return (f"## Scores\n\n{fit.line()}{spread}{f' {gap}' if gap else ''}\n\n"
            f"| holdout metric | value |\n|---|---|\n{rows}")


def _ranges(contract: DataContract) -> str:
    lines = []
    for column in contract.columns:
        gaps = "; missing values seen" if column.nullable else "; never missing in training"
        if column.kind == "numeric":
            span = ("no values" if column.minimum is None
                    else f"{column.minimum:g} to {column.maximum:g}")
            lines.append(f"- `{column.name}` (numeric): {span}{gaps}")
        elif column.categories is None:
            lines.append(f"- `{column.name}` (categorical): too many categories to list{gaps}")
        else:
            shown = ", ".join(f"`{c}`" for c in column.categories[:MAX_CATEGORIES_SHOWN])
            more = (f" and {len(column.categories) - MAX_CATEGORIES_SHOWN} more"
                    if len(column.categories) > MAX_CATEGORIES_SHOWN else "")
            lines.append(f"- `{column.name}` (categorical): {shown}{more}{gaps}")
    return ("## Where not to trust it\n\nThe ranges and categories seen in training (the data "
            "contract). Outside them the model extrapolates: serving still answers, and counts "
            "unseen categories and values out of range for monitoring:\n\n" + "\n".join(lines))


def _limitations(facts: CardFacts) -> str:
    found = []
    counts = facts.data.target_counts
    few = {c: n for c, n in counts.items() if n < FEW_CLASS_ROWS}
    if few:
        found.append("Classes with few rows (scores on them rest on a handful of holdout rows): "
                     + ", ".join(f"`{c}` {n}" for c, n in few.items()) + ".")
    if counts and max(counts.values()) >= IMBALANCE_RATIO * min(counts.values()):
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        found.append(f"Imbalanced classes: `{big}` has {counts[big]} rows, `{small}` "
                     f"{counts[small]} ({counts[big] / counts[small]:.1f} to 1); accuracy "
                     "flatters the model, per-class scores tell more.")
    if facts.data.rows < SMALL_DATA_ROWS:
        found.append(f"A small data set ({facts.data.rows} rows): the holdout score can move by "
                     "points with another split.")
    found += [f"Data profile: {w}." for w in facts.warnings]
    body = "\n".join(f"- {f}" for f in found) if found else "None found by the checks above."
    return f"## Known limitations\n\n{body}"


def _decision(decision: CardDecision) -> str:
    if decision.promoted:
        what = f"Promoted: version {decision.version} is the `champion` (serving)."
    elif decision.champion_version is not None:
        what = (f"Not promoted: version {decision.version} waits as `challenger`; version "
                f"{decision.champion_version} stays `champion`.")
    else:
        what = f"Not promoted: version {decision.version} is not serving."
    return f"## Promotion decision\n\n{what} Reason: {decision.reason}"
