"""`mlops train` after `mlops up`, in the same environment, starts warm: a fork of the warm
process runs it, and dies with its caller. Real MLflow, Prefect and runner (the spare
platform, started with `mlops up`, which starts the warm process)."""

import json
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from own_platform import MLOPS
from polling import wait_for
from synthetic import binary_frame

from flows.warm_start import environment_key, socket_path

pytestmark = pytest.mark.integration


def _spec(folder, name: str, trials: int, timeout_s: int) -> str:
    binary_frame(n=200, seed=3).to_csv(folder / "train.csv", index=False)
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {name}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: {trials}, timeout_s: {timeout_s}, cv_folds: 3, models: [logistic_regression]}}
        """))
    return str(spec)


def _labelled_train_run(name: str):
    """The `train` flow run of experiment `name` once it is labelled with its process."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.recovery import PROCESS_LABEL

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train"])))
    return next((r for r in runs if r.parameters.get("params", {}).get("experiment", "").endswith(
        f"{name}.yaml") and (r.labels or {}).get(PROCESS_LABEL)), None)


def _process(run) -> str:
    from flows.recovery import PROCESS_LABEL

    return run.labels[PROCESS_LABEL]


def _warm_processes(env) -> dict[int, int]:
    """pid: parent pid of each process running the warm commands of `env`: the warm process,
    its forks and their spares (flows/spare.py)."""
    key, found = environment_key(env), {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except (OSError, ValueError):
            continue
        if b"flows.warm_commands" in argv and key.encode() in argv and "State:\tZ" not in status:
            found[int(proc.name)] = int(status.split("PPid:")[1].split()[0])
    return found


@pytest.fixture
def warm_platform(breakable_platform):
    assert wait_for(socket_path(breakable_platform.env).exists, timeout_s=120, interval_s=0.5), \
        "`mlops up` started no warm process"
    return breakable_platform


def test_a_training_starts_warm_and_registers_as_a_cold_one(warm_platform, tmp_path):
    """Given the spare platform's warm process, `mlops train` registers version 1, and its flow
    run was run by another process than the command's (the fork), gone once it ended."""
    from flows.recovery import process_is_gone

    spec = _spec(tmp_path, "it-warm", trials=3, timeout_s=60)
    caller = subprocess.Popen([MLOPS, "train", spec, "--json"], env=warm_platform.env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = caller.communicate(timeout=300)

    assert caller.returncode == 0, err[-3000:]
    assert json.loads(out)["model_version"] == "1"
    run = _labelled_train_run("it-warm")
    assert run is not None and run.state.type.value == "COMPLETED"
    assert int(_process(run).split(":")[1]) != caller.pid
    assert process_is_gone(_process(run))
    # Its plots, the search's and the learning curve drawn by its spare process, which ended
    # with it: the warm process alone is left.
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(warm_platform.client_environment()["MLFLOW_TRACKING_URI"])
    plots = mlflow.list_artifacts(json.loads(out)["run_id"], "plots")
    assert {"plots/optuna_history.png", "plots/learning_curve.png",
            "plots/feature_importance.png"} <= {p.path for p in plots}
    assert wait_for(lambda: len(_warm_processes(warm_platform.env)) == 1, timeout_s=10), \
        _warm_processes(warm_platform.env)


def test_a_warm_training_compares_with_the_champion_on_the_same_holdout(warm_platform, tmp_path):
    """Given version 1 of a spec trained warm, the next warm training (whose spare scores the
    champion while the search runs) compares with version 1's score on the same holdout, as
    version 1 itself measured it."""
    spec = _spec(tmp_path, "it-warm-gate", trials=3, timeout_s=60)

    def train() -> dict:
        done = subprocess.run([MLOPS, "train", spec, "--json"], env=warm_platform.env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    first, second = train(), train()

    assert (first["model_version"], second["model_version"]) == ("1", "2")
    assert second["champion_version"] in ("1", "2")
    assert f"vs champion {first['metric']['value']:.4f} " in second["reason"], second["reason"]


def test_a_killed_caller_takes_its_warm_training_with_it(warm_platform, tmp_path):
    """Given a warm training mid-search, SIGKILL of the `mlops train` process ends the process
    that runs the flow too (as killing a cold one would), and `mlops up` settles its run."""
    from flows.recovery import process_is_gone

    spec = _spec(tmp_path, "it-warm-killed", trials=5000, timeout_s=60)
    caller = subprocess.Popen([MLOPS, "train", spec, "--json"], env=warm_platform.env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _labelled_train_run("it-warm-killed"), timeout_s=120, interval_s=0.5)
        run = _labelled_train_run("it-warm-killed")
        assert not process_is_gone(_process(run)) and caller.poll() is None
        fork = int(_process(run).split(":")[1])
        spares = [pid for pid, parent in _warm_processes(warm_platform.env).items() if parent == fork]
        assert len(spares) == 2, _warm_processes(warm_platform.env)  # its spare and helper
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait(timeout=30)

    assert wait_for(lambda: process_is_gone(_process(run)), timeout_s=10)
    assert wait_for(lambda: not set(spares) & set(_warm_processes(warm_platform.env)), timeout_s=10)
    up = warm_platform.run("up")
    assert up.returncode == 0, up.stderr[-3000:]
    line = f"flow run {run.name} ({run.id}) was left RUNNING by a process that is gone: marked crashed"
    assert line in " ".join(up.stderr.split()), up.stderr[-3000:]
