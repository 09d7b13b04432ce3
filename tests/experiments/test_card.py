"""The model card's content, built from a training's facts (no servers)."""

import dataclasses
import textwrap

from synthetic import multiclass_frame

from experiments.card import (
    CardData,
    CardDecision,
    CardFacts,
    CardSearch,
    build_card,
    target_counts,
)
from experiments.contract import infer_contract
from experiments.diagnostics import FitScores
from experiments.spec import parse_spec

SPEC = parse_spec(textwrap.dedent("""\
    name: sizes
    task: classification
    data:
      source: data/sizes.csv
      target: kind
    tuning:
      trials: 12
      cv_folds: 3
      models: [logistic_regression, random_forest]
    """), "sizes.yaml")


def facts(frame, *, promoted=True, warnings=(), fit=None, champion="4") -> CardFacts:
    contract = infer_contract(frame, "kind", "classification")
    data = CardData("data/sizes.csv", len(frame), "0123456789abcdef", "2026-12-04T23:00:00+00:00",
                    target_counts(frame, "kind", "classification"))
    search = CardSearch("random_forest", {"n_estimators": 120, "max_depth": 6}, 12, 3,
                        (0.91, 0.95, 0.93), {"random_forest": 0.93, "logistic_regression": 0.88})
    fit = fit or FitScores("roc_auc", True, 0.96, 0.93, 0.94)
    decision = CardDecision("5", promoted, "better than version 4: roc_auc 0.9400 vs 0.9000",
                            "5" if promoted else champion)
    return CardFacts(SPEC, contract, data, search, fit, {"roc_auc": 0.94, "accuracy": 0.88},
                     tuple(warnings), decision)


def test_the_card_says_what_from_which_data_which_pipeline_and_the_decision():
    frame = multiclass_frame()

    card = build_card(facts(frame))

    assert card.startswith("# Model card: sizes, version 5\n")
    assert ("it predicts which of 3 classes `kind` is (`large`, `medium`, `small`)") in card
    assert "`size`, `shape`, `other`" in card
    assert f"- Rows: {len(frame)} (a holdout of 20% kept apart" in card
    assert "- Digest: `0123456789abcdef`" in card and "- Source: `data/sizes.csv`" in card
    assert "- Trained: 2026-12-04T23:00:00+00:00" in card
    assert ("`random_forest` (max_depth=6, n_estimators=120). Chosen by an Optuna search of 12 "
            "trials over `logistic_regression`, `random_forest`, by roc_auc in 3-fold") in card
    assert "the best of the other families: `logistic_regression` 0.8800" in card
    # The spread of the chosen trial across its folds, beside the three scores.
    assert ("Across the 3 folds: mean 0.9300, standard deviation 0.0163, from 0.9100 to "
            "0.9500.") in card
    assert "| roc_auc | 0.9400 |" in card
    assert "Promoted: version 5 is the `champion` (serving)." in card


def test_the_card_lists_the_contract_ranges_as_where_not_to_trust_it():
    frame = multiclass_frame()

    card = build_card(facts(frame))

    size = frame["size"]
    assert f"- `size` (numeric): {size.min():g} to {size.max():g}; never missing in training" in card
    assert "- `shape` (categorical): `round`, `square`; never missing in training" in card
    other = frame["other"]
    assert f"- `other` (numeric): {other.min():g} to {other.max():g}; missing values seen" in card


def test_limitations_name_thin_classes_imbalance_and_the_profile_warnings():
    frame = multiclass_frame()
    frame = frame[(frame["kind"] != "small") | (frame.index % 5 == 0)]  # few `small` rows
    counts = frame["kind"].value_counts()
    leak = "feature `verdict` alone predicts the target suspiciously well"

    card = build_card(facts(frame, warnings=(leak,)))

    limits = card.split("## Known limitations")[1].split("## Promotion decision")[0]
    assert f"Classes with few rows (scores on them rest on a handful of holdout rows): `small` " \
           f"{counts['small']}." in limits
    assert (f"Imbalanced classes: `{counts.index[0]}` has {counts.iloc[0]} rows, `small` "
            f"{counts['small']}") in limits
    assert f"Data profile: {leak}." in limits
    assert f"A small data set ({len(frame)} rows)" in limits


def test_a_challenger_card_names_the_champion_that_stays_and_overfitting():
    card = build_card(facts(multiclass_frame(), promoted=False,
                            fit=FitScores("roc_auc", True, 1.0, 0.85, 0.84)))

    assert ("Not promoted: version 5 waits as `challenger`; version 4 stays `champion`. Reason: "
            "better than version 4") in card
    assert "**Overfitting:** roc_auc is 1.0000 on the training data but 0.8400" in card


def test_a_balanced_large_data_set_has_no_limitations_to_report():
    frame = multiclass_frame(n=900)
    frame["kind"] = ["a", "b", "c"] * 300

    card = build_card(facts(frame))

    assert "## Known limitations\n\nNone found by the checks above." in card


def test_a_card_says_when_no_data_profile_was_made():
    frame = multiclass_frame()
    off = SPEC.model_copy(update={"profile": False})

    assert "Profile: none made" not in build_card(facts(frame))
    card = build_card(dataclasses.replace(facts(frame), spec=off))
    assert "- Profile: none made (`profile: false` in the spec)" in card
