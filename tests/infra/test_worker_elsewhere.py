"""A worker as a second machine would run it: another OS user, that cannot read the platform's
MLOPS_HOME nor the checkout its package was built from, with its own install of the package
(a wheel), its own folder and MLOPS_HOME, and only what `mlops worker --print-env` gives (the
platform's addresses and credentials). Search batches, a drift retraining and a batch scoring
run on it and finish, their results in MLflow and the bucket.

Against the session's full platform (real PostgreSQL, SeaweedFS S3, MLflow, Prefect), with
the platform's own worker stopped meanwhile so the pool's runs can only go to this one."""

import io
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from environment import clients_pointed_at
from polling import wait_for
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-elsewhere"
BUCKET = "mlops"
PACKAGES = ("flows", "experiments", "registry", "monitoring", "infra", "serving")
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def command(self, *argv: str) -> list[str]:
        # runuser, not setpriv: setpriv makes its own exec with root's capabilities still in
        # effect, so it could start a program in a folder the user cannot enter.
        return [shutil.which("runuser"), "-u", self.name, "--", *argv]


@pytest.fixture(scope="module")
def user():
    """A throwaway OS user whose home is a folder of its own (mode 700); removed after."""
    if os.geteuid() != 0:
        pytest.skip("adding an OS user needs root")
    missing = [tool for tool in ("useradd", "userdel", "runuser") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: cannot run a worker as another user")
    name = f"mlopsw{secrets.token_hex(3)}"
    home = Path(tempfile.mkdtemp(prefix="mlops-elsewhere-"))
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", str(home),
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        home.chmod(0o700)
        yield User(name, entry.pw_uid, entry.pw_gid, home)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _interpreter(user: User) -> str:
    """A Python of this minor version that the user may run (the venv's may sit under /root)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys._base_executable), f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if Path(candidate).is_file() and subprocess.run(
                user.command(candidate, "-c", "pass"), capture_output=True).returncode == 0:
            return candidate
    pytest.skip(f"no {minor} that the user {user.name} can run")


@pytest.fixture(scope="module")
def installed(user, tmp_path_factory):
    """The user's own environment: a venv of a Python it can run, the locked dependencies
    installed into it (from uv's cache: hard links, under a second), and our package from a
    wheel built off a copy of the checkout only root can read. Nothing in it points back into
    the checkout, which may sit in a folder closed to others (as `mktemp -d` makes)."""
    checkout = tmp_path_factory.mktemp("checkout")
    checkout.chmod(0o700)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, checkout / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path_factory.mktemp("wheels")
    built = subprocess.run([str(BIN / "uv"), "build", "--wheel", "--offline", "-o", str(wheels),
                            str(checkout)], capture_output=True, text=True)
    if built.returncode != 0:  # no cached build backend: let uv fetch it
        built = subprocess.run([str(BIN / "uv"), "build", "--wheel", "-o", str(wheels), str(checkout)],
                               capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    venv = user.home / "venv"
    subprocess.run([_interpreter(user), "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The lock's exact pins, without resolving: the user's Python may be another patch release
    # (a marker such as python_full_version < '3.11.3' would then ask for a package not locked).
    for what in (["-r", str(ROOT / "requirements.lock")], list(map(str, wheels.glob("*.whl")))):
        done = subprocess.run([str(BIN / "uv"), "pip", "install", "--no-deps", "--offline", "--python",
                               str(python), *what], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    # The venv stays root's and readable, as a system-wide install would be: its files are hard
    # links into uv's cache, which a chown would hand to the user too.
    (user.home / "tmp").mkdir()
    os.chown(user.home / "tmp", user.uid, user.gid)
    return venv, checkout


def _worker_environment(full_platform, user: User) -> dict[str, str]:
    """What a worker elsewhere is given: `mlops worker --print-env`, and a shell's basics."""
    printed = full_platform.run("worker", "--print-env")
    assert printed.returncode == 0, printed.stderr
    given = dict(line.split("=", 1) for line in printed.stdout.splitlines() if "=" in line)
    assert {"MLFLOW_TRACKING_URI", "PREFECT_API_URL", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY",
            "PREFECT_API_AUTH_STRING", "MLOPS_OPTUNA_STORAGE", "MLOPS_DATA_URI"} <= set(given)
    assert not any(key.startswith("MLOPS_HOME") for key in given)
    # Its own temporary folder too, as on another machine (Prefect's runner keeps files under
    # TMPDIR/runner_storage, which on this machine the platform's root processes own).
    return {**given, "PATH": "/usr/bin:/bin", "HOME": str(user.home), "LANG": "C.UTF-8",
            "MLOPS_HOME": str(user.home / "mlops"), "TMPDIR": str(user.home / "tmp")}


def _put(s3, key: str, frame: pd.DataFrame) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=frame.to_csv(index=False).encode())
    return f"s3://{BUCKET}/{key}"


def _wait_for_online(client, pool: str, name: str, worker: subprocess.Popen, log: Path,
                     timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker stopped: {log.read_text()[-3000:]}"
        if any(w.name == name and str(getattr(w.status, "value", w.status)) == "ONLINE"
               for w in client.read_workers_for_work_pool(pool)):
            return
        time.sleep(1)
    raise AssertionError(f"the worker {name} never came online")


def _ran_on(client, flow_run_id: str, worker: str) -> bool:
    """Whether Prefect's log of the flow run says that worker took it. The worker sends its
    log lines in batches, apart from the run's states: on a loaded machine its line can reach
    the server after the run ended (seen once), so it is waited for."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    def said() -> bool:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return any(f"Worker '{worker}' submitting flow run" in log.message for log in logs)

    return wait_for(said, timeout_s=30, interval_s=1)


@dataclass(frozen=True)
class Inputs:
    spec: Path
    current: str  # drifted, labelled
    to_score: str
    out: str


def _inputs(s3, folder: Path) -> Inputs:
    """Small data in the bucket: training, a drifted labelled batch, rows to score."""
    source = _put(s3, f"data/{NAME}/train.csv", binary_frame(n=300, seed=31))
    drifted = binary_frame(n=200, seed=32)
    for column in ("x1", "x2", "noise"):
        drifted[column] = drifted[column] + 2.0
    current = _put(s3, f"data/{NAME}/drifted.csv", drifted)
    to_score = _put(s3, f"data/{NAME}/score.csv", binary_frame(n=50, seed=33).drop(columns=["label"]))
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: "{source}", target: label}}
        tuning: {{trials: 4, cv_folds: 2, models: [logistic_regression]}}
        monitoring: {{drift_share: 0.3, cooldown_minutes: 60}}
        """))
    return Inputs(spec, current, to_score, f"s3://{BUCKET}/data/{NAME}/scored-{secrets.token_hex(3)}.parquet")


def _assert_cut_off(user: User, env: dict, full_platform, venv: Path, checkout: Path) -> None:
    """The user cannot read the platform's home nor the checkout; its `flows` is its own."""
    for private in (full_platform.home / "secrets.env", full_platform.home, checkout / "flows"):
        denied = subprocess.run(user.command("/bin/ls", str(private)), capture_output=True, env=env)
        assert denied.returncode != 0, f"{user.name} can read {private}"
    where = subprocess.run(user.command(str(venv / "bin" / "python"), "-c",
                                        "import flows; print(flows.__file__)"),
                           capture_output=True, text=True, env=env, cwd=user.home)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr


def _workload(full_platform, inputs: Inputs, folder: Path, storage: str, prefect, worker_name: str) -> dict:
    """A fanned-out training, then a batch scoring from its deployment and a drift check whose
    retraining the event starts; what became of each flow run, and where it ran."""
    from mlflow.tracking import MlflowClient
    from prefect.deployments import run_deployment

    from flows.demo import wait_for_retraining
    from monitoring.champion import load_run_spec
    from monitoring.record import RETRAINING_FLOW_RUN

    trained = full_platform.run("train", str(inputs.spec), "--workers", "2", "--json", cwd=folder)
    assert trained.returncode == 0, trained.stderr[-3000:]
    scoring = run_deployment("predict/predict", timeout=0, parameters={"params": {
        "model": NAME, "data": inputs.to_score, "out": inputs.out}})
    checked = full_platform.run("monitor", NAME, "--current", inputs.current, "--json", cwd=folder)
    assert checked.returncode == 0, checked.stderr[-3000:]
    check = json.loads(checked.stdout)
    assert check["retraining"] == "triggered", check
    mlflow = MlflowClient()
    retrained = wait_for_retraining(mlflow, NAME, check["monitoring_run_id"], timeout_s=600, poll_s=1)
    runs = {"scoring": str(scoring.id),
            "retraining": mlflow.get_run(check["monitoring_run_id"]).data.tags.get(RETRAINING_FLOW_RUN),
            **{f"batch {i}": batch for i, batch in
               enumerate(_batches(mlflow, json.loads(trained.stdout)["run_id"], storage))}}
    # A retraining's version is registered before its flow run ends (card, links, schedule).
    for run in filter(None, runs.values()):
        _wait_until_final(prefect, run)
    return {
        "runs": runs,
        "states": {what: prefect.read_flow_run(run).state.type.value for what, run in runs.items() if run},
        "placed": {what: _ran_on(prefect, run, worker_name) for what, run in runs.items() if run},
        "retrained": retrained and retrained["version"] is not None,
        "combined": (load_run_spec(mlflow, retrained["run"].info.run_id).data.source
                     if retrained and retrained["version"] else ""),
    }


def _wait_until_final(prefect, flow_run_id: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = prefect.read_flow_run(flow_run_id).state
        if state is not None and state.is_final():
            return
        time.sleep(1)


# Its cost is mostly cold starts: each flow run on a worker imports scikit-learn, MLflow and
# Prefect anew (about 1 min each on two cores shared with other test sessions).
@pytest.mark.timeout(1500)
def test_a_worker_elsewhere_runs_search_batches_a_retraining_and_a_batch_scoring(
        full_platform, user, installed, tmp_path):
    from prefect.client.orchestration import get_client

    from infra.objectstore import s3_client

    venv, checkout = installed
    env = _worker_environment(full_platform, user)
    _assert_cut_off(user, env, full_platform, venv, checkout)
    client_env = full_platform.client_environment()
    s3 = s3_client(client_env["AWS_ENDPOINT_URL"], client_env["AWS_ACCESS_KEY_ID"],
                   client_env["AWS_SECRET_ACCESS_KEY"])
    inputs = _inputs(s3, tmp_path)
    worker_name, log_path = f"elsewhere-{user.name}", tmp_path / "worker.log"
    with (full_platform.own_worker_stopped(), clients_pointed_at(client_env),
          get_client(sync_client=True) as prefect, log_path.open("w") as log):
        worker = subprocess.Popen(user.command(str(venv / "bin" / "mlops"), "worker", "--name", worker_name),
                                  env=env, cwd=user.home, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            _wait_for_online(prefect, "mlops", worker_name, worker, log_path)
            seen = _workload(full_platform, inputs, tmp_path, client_env["MLOPS_OPTUNA_STORAGE"], prefect,
                             worker_name)
        finally:
            os.killpg(worker.pid, 15)
            worker.wait(60)
    worker_log = log_path.read_text()[-3000:]

    # Then each ran on the worker elsewhere and finished, with its results where others read them.
    assert [what for what in seen["runs"] if what.startswith("batch")], f"no search batch: {worker_log}"
    assert seen["retrained"] and seen["runs"]["retraining"], worker_log
    assert set(seen["states"].values()) == {"COMPLETED"}, (seen["states"], worker_log)
    assert all(seen["placed"].values()), (seen["placed"], worker_log)
    combined = seen["combined"]
    assert combined.startswith(f"s3://{BUCKET}/data/retrain/"), combined
    s3.head_object(Bucket=BUCKET, Key=combined.removeprefix(f"s3://{BUCKET}/"))
    out = s3.get_object(Bucket=BUCKET, Key=inputs.out.removeprefix(f"s3://{BUCKET}/"))["Body"]
    scored = pd.read_parquet(io.BytesIO(out.read()))
    assert len(scored) == 50 and "prediction" in scored.columns


def _batches(mlflow, parent_run_id: str, storage: str) -> list[str]:
    """The flow runs of the search batches that finished trials of the training's study."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=mlflow.get_run(parent_run_id).data.tags["mlops.study_name"],
                              storage=storage)
    return sorted({t.user_attrs["batch"] for t in study.get_trials(deepcopy=False)
                   if t.state == TrialState.COMPLETE and "batch" in t.user_attrs})
