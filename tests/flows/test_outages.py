"""A server of the platform stops in the middle of `mlops train`: one line, a non-zero exit,
and after `mlops up` nothing lost and nothing left running. On the spare platform, since
each test kills a server (and brings it back with `mlops up`)."""

import json
import textwrap
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for
from synthetic import binary_frame

from experiments.search import journal_storage
from experiments.tracking import child_runs
from experiments.training import base_of

pytestmark = pytest.mark.integration

# Enough that the search is still running when the server is killed (after the 2nd of
# them, polled every 0.2 s: the 10 left take seconds), few enough that the rerun is short.
TRIALS = 12


@pytest.fixture
def platform(breakable_platform):
    return breakable_platform


def write_spec(folder, name: str) -> str:
    binary_frame(n=200, seed=11).to_csv(folder / "train.csv", index=False)
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {name}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: {TRIALS}, cv_folds: 3, models: [logistic_regression]}}
        """))
    return str(spec)


def parents(client: MlflowClient, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return [r for r in client.search_runs([experiment.experiment_id])
            if "mlflow.parentRunId" not in r.data.tags]


def searching(client: MlflowClient, name: str, trials: int) -> bool:
    """Whether the training's parent run has at least `trials` child runs yet."""
    found = parents(client, name)
    return bool(found) and len(child_runs(client, found[0].info.experiment_id,
                                          found[0].info.run_id)) >= trials


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def unfinished_flow_runs() -> list:
    from prefect.client.orchestration import get_client

    from flows.recovery import unfinished_runs

    with get_client(sync_client=True) as client:
        return unfinished_runs(client)


def test_mlflow_killed_mid_search_ends_in_one_line_and_the_rerun_loses_no_trial(platform, tmp_path):
    """Given `mlops train` in its search, when MLflow is killed, then it exits non-zero within
    60 s with one line naming MLflow's address; after `mlops up` the same command resumes
    the same parent run, and every trial of the study has exactly one child run."""
    spec, client = write_spec(tmp_path, "it-mlflow-outage"), MlflowClient()
    training = platform.start("train", spec)
    assert wait_for(lambda: searching(client, "it-mlflow-outage", 2), timeout_s=300, interval_s=0.2)

    platform.kill("mlflow")
    killed = time.monotonic()
    _, stderr = training.communicate(timeout=120)
    took = time.monotonic() - killed

    assert training.returncode != 0 and took < 60, (took, stderr[-2000:])
    assert "Traceback" not in stderr
    assert error_lines(stderr) == [stderr.strip().splitlines()[-1]]
    assert f"MLflow does not answer at {platform.state()['mlflow_url']}" in error_lines(stderr)[0]

    platform.up()
    again = platform.run("train", spec, "--json")

    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    [parent] = parents(client, "it-mlflow-outage")  # resumed, not started over
    assert parent.info.run_id == result["run_id"] and parent.info.status == "FINISHED"
    name = parent.data.tags["mlops.study_name"]
    storage = journal_storage(platform.home / "optuna" / f"{base_of(name)}.journal")
    study = optuna.load_study(study_name=name, storage=storage)
    children = child_runs(client, parent.info.experiment_id, parent.info.run_id)
    numbers = sorted(int(c.data.tags["mlops.trial_number"]) for c in children)
    assert numbers == sorted(t.number for t in study.trials)
    assert len(study.trials) >= TRIALS


def test_prefect_killed_mid_flow_ends_in_one_line_and_up_leaves_no_run_running(platform, tmp_path):
    """Given `mlops train` in its search, when Prefect is killed, then it exits non-zero with
    one line naming Prefect's address; after `mlops up` no flow run is Pending or Running
    (the training's is crashed), and the same command then trains to the end."""
    spec, client = write_spec(tmp_path, "it-prefect-outage"), MlflowClient()
    # One client retry instead of the platform's three: the outer retries only ride out a
    # longer outage (2 + 4 + 8 s a call, some 50 s in all), and this one never ends.
    training = platform.start("train", spec, env={"PREFECT_CLIENT_MAX_RETRIES": "1"})
    assert wait_for(lambda: searching(client, "it-prefect-outage", 2), timeout_s=300, interval_s=0.2)

    platform.kill("prefect")
    _, stderr = training.communicate(timeout=600)

    assert training.returncode != 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert error_lines(stderr) == [stderr.strip().splitlines()[-1]], stderr[-3000:]
    prefect_api = f"{platform.state()['prefect_url']}/api"
    assert f"Prefect does not answer at {prefect_api}" in error_lines(stderr)[0]

    platform.up()

    assert unfinished_flow_runs() == []
    again = platform.run("train", spec, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
