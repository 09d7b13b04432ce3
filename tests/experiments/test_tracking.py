"""MLflow experiments as trainings find or create them."""

import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from experiments.tracking import TrialRecorder, child_runs, ensure_experiment, record_missing


class _LateLook(MlflowClient):
    """A client whose first lookup happened just before another training created the
    experiment: it saw nothing, so it goes on to create it too."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.looked = False

    def get_experiment_by_name(self, name):
        if not self.looked:
            self.looked = True
            return None
        return super().get_experiment_by_name(name)


def test_two_trainings_creating_one_experiment_both_get_it(sqlite_mlflow):
    """Given an experiment another training created after our lookup, ensure_experiment
    returns that experiment's id instead of failing on the name that already exists."""
    theirs = ensure_experiment(sqlite_mlflow, "race")

    ours = ensure_experiment(_LateLook(sqlite_mlflow.tracking_uri), "race")

    assert ours == theirs
    assert [e.name for e in sqlite_mlflow.search_experiments()].count("race") == 1


def test_a_deleted_experiment_is_restored_and_reused(sqlite_mlflow):
    first = ensure_experiment(sqlite_mlflow, "gone")
    sqlite_mlflow.delete_experiment(first)

    assert ensure_experiment(sqlite_mlflow, "gone") == first
    assert sqlite_mlflow.get_experiment(first).lifecycle_stage == "active"


class _StopsAnswering(MlflowClient):
    """A client whose tracking server stops answering from its `after`-th new run on."""

    def __init__(self, tracking_uri: str, after: int) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.after, self.attempts = after, 0

    def create_run(self, *args, **kwargs):
        self.attempts += 1
        if self.attempts >= self.after:
            raise ConnectionError("tracking server gone")
        return super().create_run(*args, **kwargs)


def _study_and_parent(client: MlflowClient):
    experiment_id = ensure_experiment(client, "trials")
    parent = client.create_run(experiment_id).info.run_id
    return optuna.create_study(), experiment_id, parent


def test_the_first_tracking_failure_stops_the_search_and_nothing_more_is_sent(sqlite_mlflow):
    """Given a server that stops answering at the second trial's run, the study stops soon
    after (not after all 40 trials), no further run is attempted, and closing says why."""
    study, experiment_id, parent = _study_and_parent(sqlite_mlflow)
    client = _StopsAnswering(sqlite_mlflow.tracking_uri, after=2)
    recorder = TrialRecorder(client, experiment_id, parent, "roc_auc")

    study.optimize(lambda trial: time.sleep(0.1) or trial.suggest_float("x", 0, 1), n_trials=40,
                   callbacks=[recorder])

    with pytest.raises(RuntimeError, match="tracking server gone"):
        recorder.close()
    assert len(study.trials) < 40
    assert client.attempts == 2


def test_trials_without_a_child_run_are_logged_and_half_written_ones_replaced(sqlite_mlflow):
    """Given five finished trials of which two were recorded and one left a half-written run,
    record_missing logs the other three, so each trial has exactly one child run."""
    study, experiment_id, parent = _study_and_parent(sqlite_mlflow)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=5)
    recorder = TrialRecorder(sqlite_mlflow, experiment_id, parent, "roc_auc")
    for trial in study.trials[:2]:
        recorder(study, trial)
    recorder.close()
    sqlite_mlflow.create_run(experiment_id, tags={"mlflow.parentRunId": parent})  # cut off

    recorder = TrialRecorder(sqlite_mlflow, experiment_id, parent, "roc_auc")
    logged = record_missing(recorder, sqlite_mlflow, study, experiment_id, parent)
    recorder.close()

    assert logged == 3
    children = child_runs(sqlite_mlflow, experiment_id, parent)
    assert sorted(int(c.data.tags["mlops.trial_number"]) for c in children) == [0, 1, 2, 3, 4]
    assert {c.info.status for c in children} == {"FINISHED"}


def test_a_logged_forest_has_a_compact_skops_schema_that_loads_back(sqlite_mlflow, tmp_path):
    """Given a fitted forest, log_sklearn_model stores a skops file (never a pickle) whose
    schema.json is compact (the indented one took most of the dump's time) and that skops
    loads back with the trusted types into the same predictions; the signature and the
    input example are there."""
    import zipfile

    import mlflow
    import skops.io
    from synthetic import binary_frame

    from experiments.contract import infer_contract
    from experiments.pipelines import build_pipeline, feature_frame, skops_trusted_types
    from experiments.tracking import log_sklearn_model

    frame = binary_frame(n=120, seed=3)
    contract = infer_contract(frame, "label", "classification")
    x = feature_frame(frame, contract.numeric, contract.categorical)
    pipeline = build_pipeline("classification", "random_forest", {"n_estimators": 3},
                              contract.numeric, contract.categorical, 0).fit(x, frame["label"])
    run_id = sqlite_mlflow.create_run(ensure_experiment(sqlite_mlflow, "compact")).info.run_id

    uri = log_sklearn_model(run_id, pipeline, x.head(5), metadata={}).uri

    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model")))
    assert not list(local.glob("*.pkl"))
    with zipfile.ZipFile(local / "model.skops") as archive:
        schema = archive.read("schema.json").decode()
    assert "\n" not in schema
    loaded = skops.io.load(local / "model.skops", trusted=skops_trusted_types(pipeline))
    assert (loaded.predict(x) == pipeline.predict(x)).all()
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    assert (local / "input_example.json").exists()


@pytest.mark.parametrize("source", ["/data/penguins.csv", "package://experiments/data/penguins.csv"])
def test_logging_integer_columns_as_a_dataset_prints_no_warning(sqlite_mlflow, source):
    """MLflow's integer-column hint is about model signatures; a dataset input is only a
    description, so a training's output (and `make demo`'s) must not carry it, whatever the
    source (package:// is one MLflow cannot resolve and takes the other path)."""
    import warnings

    import pandas as pd

    from experiments.tracking import log_dataset

    client = MlflowClient()
    run_id = client.create_run(ensure_experiment(client, "dataset-warning")).info.run_id
    frame = pd.DataFrame({"year": [2007, 2008, 2009], "species": ["a", "b", "a"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_dataset(client, run_id, frame, source, "species", "penguins-data")
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
    assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == ["penguins-data"]


def test_the_parent_run_gets_a_best_score_point_where_the_best_changed(sqlite_mlflow):
    """Given trials scoring 0.5, 0.4, 0.7, 0.6, 0.8 (higher is better), the parent's
    best_cv_score has points at trials 0, 2 and 4 only, with the best so far at each."""
    experiment_id = ensure_experiment(sqlite_mlflow, "best-so-far")
    parent = sqlite_mlflow.create_run(experiment_id).info.run_id
    study = optuna.create_study(direction="maximize")
    scores = iter([0.5, 0.4, 0.7, 0.6, 0.8])
    recorder = TrialRecorder(sqlite_mlflow, experiment_id, parent, "roc_auc")

    study.optimize(lambda trial: next(scores), n_trials=5, callbacks=[recorder])
    recorder.close()

    history = sqlite_mlflow.get_metric_history(parent, "best_cv_score")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (2, 0.7), (4, 0.8)]
    assert len(child_runs(sqlite_mlflow, experiment_id, parent)) == 5
