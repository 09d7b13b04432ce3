"""The served model: the forest shortcut, the warm-up record, and swapping on a moved alias."""

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from synthetic import binary_frame, multiclass_frame

from experiments.contract import infer_contract
from experiments.pipelines import build_pipeline, feature_frame
from serving.model import (
    ChampionWatcher,
    ModelLoadError,
    ServedModel,
    example_features,
    forest_average,
    predict,
    predict_with_proba,
)


@pytest.mark.parametrize(("task", "target"), [("classification", "label"), ("regression", "x1"),
                                            ("classification", "multiclass")])
def test_forest_predict_is_the_forests_own(task, target):
    """The loop over trees gives bit-for-bit the forest's own predict (n_jobs=1)."""
    frame = binary_frame(n=300, seed=8)
    if target == "multiclass":
        frame, target = multiclass_frame(n=300, seed=8), "kind"
    if task == "regression":
        frame = frame.drop(columns="label")
    contract = infer_contract(frame, target, task)
    pipeline = build_pipeline(task, "random_forest", {"n_estimators": 30},
                              contract.numeric, contract.categorical, seed=1)
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline.fit(x, frame[target])

    assert (predict(pipeline, x) == pipeline.predict(x)).all()
    prepared = pipeline.named_steps["prepare"].transform(x)
    own = pipeline.predict_proba(x) if task == "classification" else pipeline.predict(x)
    assert (forest_average(pipeline.named_steps["model"], prepared) == own).all()


@pytest.mark.parametrize("family", ["random_forest", "logistic_regression", "hist_gradient_boosting"])
def test_predictions_with_probabilities_are_the_pipelines_own(family):
    """Predictions, classes and probabilities are bit-for-bit predict, classes_ and
    predict_proba, the forest's from one pass over its trees."""
    frame = binary_frame(n=300, seed=6)
    contract = infer_contract(frame, "label", "classification")
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline = build_pipeline("classification", family, {}, contract.numeric, contract.categorical, 2)
    pipeline.fit(x, frame["label"])

    predictions, classes, probabilities = predict_with_proba(pipeline, x)

    assert (predictions == pipeline.predict(x)).all()
    assert classes == list(pipeline.classes_)
    assert (probabilities == pipeline.predict_proba(x)).all()


@pytest.mark.parametrize("family", ["logistic_regression", "hist_gradient_boosting"])
def test_other_families_predict_as_themselves(family):
    frame = binary_frame(n=200, seed=4)
    contract = infer_contract(frame, "label", "classification")
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline = build_pipeline("classification", family, {}, contract.numeric, contract.categorical, 0)
    pipeline.fit(x, frame["label"])

    assert (predict(pipeline, x) == pipeline.predict(x)).all()
    assert len(pipeline.predict(example_features(contract))) == 1


@dataclass
class Version:
    name: str
    version: str
    run_id: str = "run"


class Registry:
    """Stands in for MlflowClient: only the alias lookup the watcher makes."""

    def __init__(self, champion: str | None):
        self.champion = champion

    def get_model_version_by_alias(self, name, alias):
        if self.champion is None:
            raise MlflowException("no alias", error_code=RESOURCE_DOES_NOT_EXIST)
        return Version(name, self.champion)


@pytest.fixture(scope="module")
def fitted():
    frame = binary_frame(n=200, seed=6)
    contract = infer_contract(frame, "label", "classification")
    pipeline = build_pipeline("classification", "logistic_regression", {}, contract.numeric,
                              contract.categorical, 0)
    return contract, pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical),
                                  frame["label"])


def test_the_watcher_swaps_when_the_alias_moves(fitted):
    """Given champion at 1, then at 2, then at 3 (which fails to load), then gone, the
    watcher serves 1, then 2, keeps 2 rather than 3, and keeps 2 when the alias is gone."""
    contract, pipeline = fitted
    loads = []

    def load(version):
        loads.append(version.version)
        if version.version == "3":
            raise ModelLoadError("untrusted types")
        return ServedModel(version.name, version.version, version.run_id, contract, pipeline,
                           datetime.now(UTC))

    registry = Registry("1")
    watcher = ChampionWatcher(registry, "m", load=load)

    assert watcher.check() is True and watcher.current.version == "1"
    assert watcher.check() is False
    registry.champion = "2"
    assert watcher.check() is True and watcher.current.version == "2"
    registry.champion = "3"
    assert watcher.check() is False and watcher.current.version == "2"
    assert watcher.check() is False  # a refused version is not loaded again
    registry.champion = None
    assert watcher.check() is False and watcher.current.version == "2"
    assert loads == ["1", "2", "3"]


def test_the_warm_up_record_follows_the_contract(fitted):
    contract, _ = fitted

    record = example_features(contract)

    assert list(record.columns) == [*contract.numeric, *contract.categorical]
    assert record.dtypes.map(str).tolist() == ["float64"] * 3 + ["object"]
    assert isinstance(record, pd.DataFrame) and len(record) == 1


def test_the_watcher_keeps_serving_when_the_champion_moves_to_a_model_that_ships_code(
        sqlite_mlflow, fitted, tmp_path, caplog):
    """Given a served champion, when `champion` moves to a version logged with a `skops`
    package in its code paths, then the watcher logs the refusal, keeps serving the old
    version, and the package never runs."""
    from planted import log_planted, plant

    from experiments.tracking import log_sklearn_model
    from registry.champion import register

    contract, pipeline = fitted
    client, marker = sqlite_mlflow, tmp_path / "marker"
    experiment = client.create_experiment("m", artifact_location=(tmp_path / "artifacts").as_uri())
    example = example_features(contract)

    def registered(log) -> str:
        run_id = client.create_run(experiment).info.run_id
        return str(register(client, "m", log(run_id), run_id, {}).version)

    metadata = {"mlops_contract": contract.to_dict()}
    good = registered(lambda run_id: log_sklearn_model(run_id, pipeline, example, metadata).uri)
    planted = registered(lambda run_id: log_planted(run_id, pipeline, metadata,
                                                    plant(tmp_path / "planted", marker)))
    client.set_registered_model_alias("m", "champion", good)
    watcher = ChampionWatcher(client, "m")
    assert watcher.check() is True and watcher.current.version == good

    client.set_registered_model_alias("m", "champion", planted)
    with caplog.at_level("ERROR", logger="serving.model"):
        swapped = watcher.check()

    assert swapped is False and watcher.current.version == good
    assert f"not serving m version {planted}: refused m version {planted}: it ships code" in caplog.text
    assert not marker.exists()
    assert (watcher.current.predict(example) == pipeline.predict(example)).all()


def test_the_challenger_watcher_lets_go_when_the_alias_is_gone(fitted):
    """Given challenger at 4, then gone, then at 4 again, the watcher holds 4, then nothing
    (the shadow stops), then 4 again."""
    from serving.model import ChallengerWatcher

    contract, pipeline = fitted
    registry = Registry("4")
    watcher = ChallengerWatcher(registry, "m", load=lambda v: ServedModel(
        v.name, v.version, v.run_id, contract, pipeline, datetime.now(UTC)))

    assert watcher.check() is True and watcher.current.version == "4"
    registry.champion = None  # the stand-in's one alias
    assert watcher.check() is False and watcher.current is None
    registry.champion = "4"
    assert watcher.check() is True and watcher.current.version == "4"
