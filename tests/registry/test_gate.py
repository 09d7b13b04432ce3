"""The gate on a real registry (MLflow in SQLite, no server): who holds `champion`, and why."""

import numpy as np
import pandas as pd
import pytest
from planted import log_planted, plant

from experiments.metrics import score
from experiments.pipelines import build_pipeline, feature_frame
from experiments.tracking import log_sklearn_model
from experiments.training import holdout_output_fn
from registry.champion import point_to_card, register
from registry.gate import ChampionOutput, apply_gate, champion_now, decide_gate, score_champion
from registry.history import champion_history
from registry.promotion import HoldoutMetric

NAME = "gate-test"


def labelled(n: int, classes: tuple[str, ...], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Two features; the label is the class whose band x1 falls in (x2 is noise)."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, len(classes), n)
    features = feature_frame(pd.DataFrame({"x1": x1, "x2": rng.normal(size=n)}), ["x1", "x2"], [])
    return features, np.asarray(classes)[x1.astype(int)]


HOLDOUT_X, HOLDOUT_Y = labelled(200, ("no", "yes"), seed=1)


def fitted(classes=("no", "yes"), shuffled=False):
    """A small logistic regression pipeline; with shuffled labels it learns nothing."""
    features, y = labelled(200, classes, seed=0)
    if shuffled:
        y = np.random.default_rng(0).permutation(y)
    return build_pipeline("classification", "logistic_regression", {}, ["x1", "x2"], [], 0).fit(features, y)


@pytest.fixture
def gate(sqlite_mlflow, tmp_path):
    """Log a model in a run of its own and put it through the gate, wired as the flow does."""
    client = sqlite_mlflow
    experiment = client.create_experiment(NAME, artifact_location=(tmp_path / "artifacts").as_uri())

    def run(model, holdout=(HOLDOUT_X, HOLDOUT_Y)):
        features, y = holdout
        run_id = client.create_run(experiment).info.run_id
        logged = log_sklearn_model(run_id, model, features.head(5), metadata={})
        classes = tuple(model.classes_)
        metric = HoldoutMetric("roc_auc", True, lambda y, output: score("roc_auc", y, output, classes))
        champion = score_champion(client, NAME, holdout_output_fn(features, "classification", classes))
        decision = decide_gate(y, model.predict_proba(features), champion, metric)
        return apply_gate(client, NAME, logged, run_id, {"mlops.trigger": "manual"}, decision,
                          None if champion is None else champion.version)

    return run


def version(client, number: str):
    return client.get_model_version(NAME, number)


def holding(client, alias: str) -> str:
    # The SQLite store numbers versions with ints where the REST client gives text.
    return str(client.get_model_version_by_alias(NAME, alias).version)


def test_first_version_becomes_champion(gate, sqlite_mlflow):
    """Given no registered model, when a version passes the gate, then it is champion since now."""
    result = gate(fitted())

    assert result.promoted and str(result.champion_version) == str(result.version) == "1"
    assert holding(sqlite_mlflow, "champion") == "1"
    assert version(sqlite_mlflow, "1").tags["mlops.champion_from"]
    assert version(sqlite_mlflow, "1").tags["mlops.promotion"] == "no champion yet"


def test_the_champion_scored_before_the_gate_is_scored_again_only_once_it_moved(gate, sqlite_mlflow):
    """Given the champion's output taken while there was none (a training's scoring beside its
    diagnosis), when a version took `champion` meanwhile, then the gate's look scores that one;
    while `champion` stays where it was scored, the output taken before is used as it is."""
    output_fn = holdout_output_fn(HOLDOUT_X, "classification", ("no", "yes"))
    gate(fitted())

    now = champion_now(sqlite_mlflow, NAME, None, output_fn)

    assert str(now.version) == "1" and now.output.shape == (len(HOLDOUT_X), 2)
    assert champion_now(sqlite_mlflow, NAME, now, output_fn) is now
    gate(fitted(shuffled=True))  # a challenger: `champion` does not move
    assert champion_now(sqlite_mlflow, NAME, now, output_fn) is now


def test_worse_version_becomes_challenger_with_the_reason(gate, sqlite_mlflow):
    """Given a good champion, when a model that learnt nothing arrives, then it waits as
    challenger, tagged with why, and the champion keeps serving."""
    gate(fitted())

    result = gate(fitted(shuffled=True))

    assert not result.promoted and str(result.champion_version) == "1"
    assert holding(sqlite_mlflow, "champion") == "1"
    assert holding(sqlite_mlflow, "challenger") == "2"
    assert version(sqlite_mlflow, "2").tags["mlops.promotion"].startswith("not better: roc_auc")
    assert "mlops.champion_until" not in version(sqlite_mlflow, "1").tags
    assert version(sqlite_mlflow, "2").description.startswith("Challenger, not serving: not better: roc_auc")
    assert version(sqlite_mlflow, "1").description.startswith("Champion since ")


def test_better_version_takes_champion_and_closes_the_old_reign(gate, sqlite_mlflow):
    """Given a champion that learnt nothing, when a good model arrives, then it takes
    `champion`, the old one records until when it served, and the history has both, moved
    by the gate for the reasons it gave."""
    gate(fitted(shuffled=True))

    result = gate(fitted())

    assert result.promoted and result.decision.reason.startswith("wins: roc_auc")
    assert holding(sqlite_mlflow, "champion") == "2"
    assert version(sqlite_mlflow, "2").tags["mlops.champion_from"]
    assert version(sqlite_mlflow, "2").tags["mlops.promoted_by"] == "gate"
    assert version(sqlite_mlflow, "1").tags["mlops.champion_until"]
    until = version(sqlite_mlflow, "1").tags["mlops.champion_until"]
    assert version(sqlite_mlflow, "2").description == (
        f"Champion since {until}, moved by gate: {result.decision.reason}")
    assert version(sqlite_mlflow, "1").description == (
        f"Champion until {until}, when version 2 took over (moved by gate: {result.decision.reason})")
    assert [(h["version"], h["by"], h["reason"]) for h in champion_history(sqlite_mlflow, NAME)] == [
        ("1", "gate", "no champion yet"), ("2", "gate", result.decision.reason)]


def test_champion_that_cannot_score_the_holdout_keeps_serving(gate, sqlite_mlflow):
    """Given a champion that knows three classes, when a two-class version arrives, then the
    new version waits as challenger with the reason, for a person to compare."""
    gate(fitted(classes=("maybe", "no", "yes")), holdout=labelled(200, ("maybe", "no", "yes"), seed=1))

    result = gate(fitted())

    assert not result.promoted and str(result.champion_version) == "1"
    assert holding(sqlite_mlflow, "champion") == "1"
    reason = version(sqlite_mlflow, "2").tags["mlops.promotion"]
    assert reason.startswith("champion v1 cannot score this holdout (its classes")
    assert holding(sqlite_mlflow, "challenger") == "2"


def test_champion_that_ships_code_is_not_run_and_the_new_version_waits(gate, sqlite_mlflow, tmp_path):
    """Given a champion logged with a `skops` package in its code paths, when a new version
    passes the gate, then the champion's code never runs and the new version is challenger,
    tagged with why the champion was refused."""
    client, marker = sqlite_mlflow, tmp_path / "marker"
    run_id = client.create_run(client.get_experiment_by_name(NAME).experiment_id).info.run_id  # the gate's
    uri = log_planted(run_id, fitted(), {}, plant(tmp_path / "planted", marker))
    client.set_registered_model_alias(NAME, "champion", register(client, NAME, uri, run_id, {}).version)

    result = gate(fitted())

    assert not result.promoted and str(result.champion_version) == "1"
    assert holding(sqlite_mlflow, "champion") == "1"
    assert holding(sqlite_mlflow, "challenger") == "2"
    reason = version(sqlite_mlflow, "2").tags["mlops.promotion"]
    assert reason.startswith(f"champion v1 was not loaded (refused {NAME} version 1: it ships code")
    assert not marker.exists()


def test_decision_without_a_champion_output_names_the_error():
    """Given a champion that failed to score, when deciding, then no promotion, and the
    reason carries the champion's version and its error."""
    metric = HoldoutMetric("accuracy", True, lambda y, output: float(np.mean(y == output)))

    decision = decide_gate(np.array([1, 0]), np.array([1, 0]), ChampionOutput("4", error="boom"), metric)

    assert not decision.promote
    assert decision.reason.startswith("champion v4 cannot score this holdout (boom)")
    assert decision.candidate_score == 1.0


def test_the_model_card_line_stays_through_every_move(gate, sqlite_mlflow):
    """Given a champion whose description links its model card, when another version takes
    over, then its description says until when it served and still links the card."""
    gate(fitted(shuffled=True))
    point_to_card(sqlite_mlflow, NAME, "1", "http://mlflow/runs/r1/artifacts/model_card.md")
    point_to_card(sqlite_mlflow, NAME, "1", "http://mlflow/runs/r1/artifacts/model_card.md")

    gate(fitted())

    card = "Model card: [model_card.md](http://mlflow/runs/r1/artifacts/model_card.md)"
    description = version(sqlite_mlflow, "1").description
    assert description.startswith("Champion until ") and description.endswith(f"\n\n{card}")
    assert description.count("Model card:") == 1
