"""Trials handed to a writer process: the same child runs, and no trial lost when it fails."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from experiments.tracking import TrialRecorder, child_runs, ensure_experiment, record_missing


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("fold_scores", [x, x / 2, x / 3])
    if trial.number == 2:
        raise optuna.TrialPruned()
    return x


def _recorded(client: MlflowClient, experiment_id: str, parent: str) -> dict:
    """Each child run's content, by trial number, without what differs between two searches."""
    out = {}
    for run in child_runs(client, experiment_id, parent):
        tags = {k: v for k, v in run.data.tags.items() if k.startswith("mlops.")}
        out[int(tags["mlops.trial_number"])] = (
            run.info.status, run.info.run_name, tags, run.data.params,
            {k: v for k, v in run.data.metrics.items() if k != "duration_s"},
            sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "cv_roc_auc_fold")),
        )
    return out


def _wait_until_child_runs_settle(client: MlflowClient, experiment_id: str, parent: str,
                                  quiet_s: float = 3, timeout_s: float = 60) -> None:
    """Until the parent's child runs (and their tags) stay the same for `quiet_s`."""
    def snapshot():
        return sorted((r.info.run_id, r.info.status, tuple(sorted(r.data.tags.items())))
                      for r in child_runs(client, experiment_id, parent))

    deadline, last, since = time.monotonic() + timeout_s, snapshot(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = snapshot()
        if now != last:
            last, since = now, time.monotonic()


def _pipes() -> set[str]:
    """This process's open pipes (sockets to the server come and go; pipes are the writer's)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


def _search(client: MlflowClient, name: str, trials: int, stop_when=None, **recorder_options):
    experiment_id = ensure_experiment(client, name)
    parent = client.create_run(experiment_id).info.run_id
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    recorder = TrialRecorder(client, experiment_id, parent, "roc_auc", **recorder_options)

    def stop(study, trial) -> None:
        if stop_when is not None and stop_when(recorder):
            study.stop()

    study.optimize(lambda trial: (time.sleep(0.05), _objective(trial))[1], n_trials=trials,
                   callbacks=[recorder, stop])
    return study, recorder, experiment_id, parent


def test_a_writer_process_writes_the_same_child_runs_as_the_search_itself(platform):
    """Given the same seeded search handed to a writer process from the start, and recorded in
    its own process, both give each trial the same child run (status, name, tags, params,
    fold scores) and the parent the same best-so-far curve; the writer wrote the trials that
    came once it was ready."""
    client = MlflowClient(platform.mlflow_url)
    study, there, there_experiment, there_parent = _search(
        client, "writer-there", 1200, stop_when=lambda recorder: recorder.written_by_writer >= 5,
        writer_after_s=0)
    there.close()
    trials = len(study.trials)
    _, here, here_experiment, here_parent = _search(client, "writer-here", trials, writer_after_s=None)
    here.close()

    assert here.written_by_writer == 0
    assert there.written_by_writer >= 5
    ours = _recorded(client, there_experiment, there_parent)
    assert ours == _recorded(client, here_experiment, here_parent)
    assert sorted(ours) == list(range(trials))
    assert ours[2][0] == "KILLED"
    best = sorted((m.step, m.value) for m in client.get_metric_history(there_parent, "best_cv_score"))
    assert best == sorted((m.step, m.value) for m in
                          client.get_metric_history(here_parent, "best_cv_score"))
    assert best[-1][1] == pytest.approx(study.best_value)


def test_a_writer_that_cannot_start_leaves_the_trials_to_the_search_process(platform, monkeypatch):
    """Given no Python to start the writer with, every trial is still written, by the search's
    own process."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    client = MlflowClient(platform.mlflow_url)
    pipes_before = _pipes()
    _, recorder, experiment_id, parent = _search(client, "writer-none", 6, writer_after_s=0)
    recorder.close()

    assert recorder.written_by_writer == 0
    assert _pipes() <= pipes_before  # no pipe of the writer's left open
    assert sorted(_recorded(client, experiment_id, parent)) == list(range(6))


def test_a_writer_killed_mid_search_stops_the_search_and_a_resume_logs_the_rest(platform):
    """Given the writer process killed while the search runs, the search stops at the end of
    its trial, closing says why, and `record_missing` gives every finished trial its child
    run: nothing is lost."""
    client = MlflowClient(platform.mlflow_url)
    experiment_id = ensure_experiment(client, "writer-killed")
    parent = client.create_run(experiment_id).info.run_id
    study = optuna.create_study(direction="maximize")
    recorder = TrialRecorder(client, experiment_id, parent, "roc_auc", writer_after_s=0)

    def kill_the_writer_once_it_wrote(study, trial) -> None:
        if recorder.written_by_writer and recorder._writer._process.poll() is None:
            os.kill(recorder._writer._process.pid, signal.SIGKILL)

    study.optimize(lambda trial: time.sleep(0.05) or _objective(trial), n_trials=1200,
                   callbacks=[recorder, kill_the_writer_once_it_wrote])
    with pytest.raises(RuntimeError, match="trial writer process exited"):
        recorder.close()
    assert len(study.trials) < 1200

    # The killed writer's last request may still land (the server got it; a loaded server
    # handles it after the kill): a resumed search comes later, once the child runs settle.
    _wait_until_child_runs_settle(client, experiment_id, parent)
    resumed = TrialRecorder(client, experiment_id, parent, "roc_auc", writer_after_s=None)
    record_missing(resumed, client, study, experiment_id, parent)
    resumed.close()
    assert sorted(_recorded(client, experiment_id, parent)) == list(range(len(study.trials)))


SPARE_SEARCH = """
import json, sys, time
import optuna
from mlflow.tracking import MlflowClient
from experiments import trial_writer
from experiments.tracking import TrialRecorder, ensure_experiment
from flows import spare
from test_trial_writer import _objective
def clients():
    return sorted(trial_writer._clients)
spare.fork_spare()  # before any thread, as a warm training's process does
client = MlflowClient(sys.argv[1])
experiment_id = ensure_experiment(client, "writer-spare")
parent = client.create_run(experiment_id).info.run_id
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
recorder = TrialRecorder(client, experiment_id, parent, "roc_auc", writer_after_s=0,
                         elsewhere=spare.spare_beside())
study.optimize(lambda trial: (time.sleep(0.05), _objective(trial))[1], n_trials=int(sys.argv[2]),
               callbacks=[recorder])
recorder.close()
print(json.dumps({"experiment_id": experiment_id, "parent": parent, "here": clients(),
                  "spare": spare.beside(clients).result(), "writer": recorder._writer is not None,
                  "written_by_writer": recorder.written_by_writer}))
"""


def test_a_training_with_a_spare_process_writes_its_trials_there_the_same(platform):
    """Given a search whose process has a spare (a warm training's), every trial is written by
    the spare (MLflow imported already: no writer process is started, even when one is due
    at once), and the child runs and best-so-far curve are those the search writes itself."""
    here_dir = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-c", SPARE_SEARCH, platform.mlflow_url, "8"], capture_output=True,
        text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": f"{here_dir.parents[1]}:{here_dir}"})
    assert done.returncode == 0, done.stderr[-3000:]
    there = json.loads(done.stdout.splitlines()[-1])
    client = MlflowClient(platform.mlflow_url)
    _, here, here_experiment, here_parent = _search(client, "writer-spare-here", 8, writer_after_s=None)
    here.close()

    assert there["spare"] == [platform.mlflow_url] and there["here"] == []
    assert there["writer"] is False and there["written_by_writer"] == 0
    ours = _recorded(client, there["experiment_id"], there["parent"])
    assert ours == _recorded(client, here_experiment, here_parent)
    assert sorted(ours) == list(range(8))
    assert (sorted((m.step, m.value) for m in client.get_metric_history(there["parent"], "best_cv_score"))
            == sorted((m.step, m.value) for m in client.get_metric_history(here_parent, "best_cv_score")))
