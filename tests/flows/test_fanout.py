"""Fanning a search out: when the parent calls a batch lost, and the loop that starts batches."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from experiments.search import finished_trials
from experiments.spec import parse_spec
from experiments.training import Tracking, TrainingContext
from flows import fanout
from flows.fanout import Batch, is_lost

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _trial(state: TrialState, ended_seconds_ago: float | None = None):
    ended = None if ended_seconds_ago is None else NOW - timedelta(seconds=ended_seconds_ago)
    return SimpleNamespace(state=state, datetime_complete=ended)


def _batch(state="RUNNING", trials=(), submitted_seconds_ago=10.0, final=False):
    return Batch("run", (NOW - timedelta(seconds=submitted_seconds_ago)).timestamp(),
                 state=state, final=final, trials=list(trials))


@pytest.mark.parametrize(
    ("batch", "lost"),
    [
        (_batch(trials=[_trial(TrialState.RUNNING)]), False),  # mid-trial: its heartbeat vouches
        (_batch(trials=[_trial(TrialState.COMPLETE, 5)]), False),  # between trials
        (_batch(trials=[_trial(TrialState.COMPLETE, 50)]), True),  # idle past the grace
        (_batch(trials=[_trial(TrialState.FAIL, 50), _trial(TrialState.COMPLETE, 70)]), True),
        (_batch(trials=[], submitted_seconds_ago=100), False),  # still importing
        (_batch(trials=[], submitted_seconds_ago=300), True),  # never ran a trial
        (_batch(state="SCHEDULED", submitted_seconds_ago=900), False),  # waiting for a worker
        (_batch(state="COMPLETED", trials=[_trial(TrialState.COMPLETE, 500)], final=True), False),
    ],
)
def test_is_lost(batch, lost):
    assert is_lost(batch, NOW.timestamp(), idle_grace_s=40, startup_grace_s=240) is lost


class FinishedRuns:
    """Prefect's client as fan_out sees it when every batch has run to completion."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def read_flow_run(self, flow_run_id):
        completed = SimpleNamespace(type=SimpleNamespace(value="COMPLETED"), is_final=lambda: True)
        return SimpleNamespace(state=completed)


def test_fan_out_starts_batches_until_the_study_holds_the_trials(monkeypatch):
    """Given batches that each run two trials, when a 5-trial search fans out over 2 workers,
    then batches for the parent run are started until 5 trials are finished, warm start first."""
    storage = optuna.storages.InMemoryStorage()
    spec = parse_spec("name: f\ntask: regression\ndata:\n  source: f.csv\n  target: y\n"
                      "tuning:\n  trials: 5\n", "f.yaml")
    context = TrainingContext(spec, None, None, Tracking("1", "parent", "study"))
    started = []

    def run_batch(name, parameters, timeout, as_subflow):
        batch = f"batch-{len(started)}"
        started.append(parameters["params"]["parent_run_id"])

        def objective(trial):
            trial.set_user_attr("batch", batch)
            return trial.suggest_float("x", 0, 1)

        optuna.load_study(study_name="study", storage=storage).optimize(objective, n_trials=2)
        return SimpleNamespace(id=batch)

    monkeypatch.setattr(fanout, "run_deployment", run_batch)
    monkeypatch.setattr(fanout, "get_client", lambda sync_client: FinishedRuns())

    outcome = fanout.fan_out(storage, context, fanout.FanOutSettings(2, poll_s=0.01),
                             [{"x": 0.5}], lambda *args: None)

    study = optuna.load_study(study_name="study", storage=storage)
    assert finished_trials(study) >= 5
    assert study.trials[0].params == {"x": 0.5}
    assert set(started) == {"parent"}
    assert outcome == {"batches": len(started), "lost": 0, "summary": f"{len(started)} completed"}


def test_trials_whose_batch_died_before_recording_them_get_their_child_runs(sqlite_mlflow, monkeypatch):
    """Given batches that told the study of three finished trials but died before logging
    their child runs, when the fanned-out search ends, then each trial has its child run
    before the search is summarized (the summary counts the study's trials)."""
    import logging

    from experiments import training
    from experiments.search import open_study
    from experiments.tracking import child_runs
    from flows import train

    storage = optuna.storages.InMemoryStorage()
    spec = parse_spec("name: f\ntask: regression\ndata:\n  source: f.csv\n  target: y\n"
                      "tuning:\n  trials: 3\n", "f.yaml")
    experiment_id = sqlite_mlflow.create_experiment("f")
    parent = sqlite_mlflow.create_run(experiment_id).info.run_id
    context = TrainingContext(spec, None, None, Tracking(experiment_id, parent, "study"))

    def batches_that_died(storage, context, settings, warm_start, log):
        study = open_study(storage, "study", spec.greater_is_better, spec.tuning.seed)
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        return {"summary": "2 lost"}

    monkeypatch.setattr(train, "storage_of", lambda tracking: storage)
    monkeypatch.setattr(train, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(fanout, "fan_out", batches_that_died)
    seen = []
    monkeypatch.setattr(training, "summarize_search", lambda client, storage, context: seen.append(
        sorted(r.data.tags["mlops.trial_number"] for r in child_runs(client, experiment_id, parent))))

    train.tune.fn(context, None, workers=2)

    assert seen == [["0", "1", "2"]]
