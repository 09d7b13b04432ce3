"""The full profile against real services: this machine's PostgreSQL and a SeaweedFS S3
server, MLflow with basic auth and Prefect with an API auth string, all started by
`mlops up --profile full` (the session fixture `full_platform`)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest
from environment import clients_pointed_at, without_client_variables
from listening import descendants
from network import http
from synthetic import binary_frame

pytestmark = pytest.mark.integration

NAME = "it-full"
MLOPS = str(Path(sys.executable).parent / "mlops")


def _http_status(url: str, method: str = "GET", headers: dict | None = None,
                 body: bytes | None = None) -> int:
    return http(url, method, headers, body)[0]


def _csrf_headers(prefect_url: str, auth: dict) -> dict:
    """A CSRF token as Prefect's clients get one, for a client id of this test's own."""
    request = urllib.request.Request(f"{prefect_url}/api/csrf-token?client=test-client", headers=auth)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        token = json.loads(response.read())["token"]
    return {"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": "test-client"}


def _basic(credentials: str) -> dict:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.fixture
def client_env(full_platform):
    """This process's MLflow, Prefect and boto3 clients pointed at the full platform."""
    env = full_platform.client_environment()
    with clients_pointed_at(env):
        yield env


def _database(full_platform, store: str):
    from infra.database import database_name, database_uri

    return psycopg2.connect(database_uri(full_platform.database_url,
                                         database_name(full_platform.prefix, store)))


def _query(full_platform, store: str, sql: str, args=()) -> list[tuple]:
    connection = _database(full_platform, store)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def trained(full_platform, tmp_path_factory):
    """A champion trained from an s3:// data source through `mlops train`."""
    from infra.objectstore import s3_client

    folder = tmp_path_factory.mktemp("full")
    keys = full_platform.secrets()
    s3 = s3_client(full_platform.status()["s3_endpoint"], keys["AWS_ACCESS_KEY_ID"],
                   keys["AWS_SECRET_ACCESS_KEY"])
    s3.put_object(Bucket="mlops", Key="data/it-full/train.csv",
                  Body=binary_frame(n=400, seed=11).to_csv(index=False).encode())
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: "s3://mlops/data/it-full/train.csv", target: label}}
        tuning: {{trials: 3, cv_folds: 3, models: [random_forest, logistic_regression]}}
        monitoring: {{drift_share: 0.3, cooldown_minutes: 60}}
        """))
    done = full_platform.run("train", str(spec), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), folder, done


def test_status_reports_the_full_profile_and_no_secret(full_platform):
    """Given the platform up, status names S3, the artifact root and the database without a
    password; every service runs; a second `up` is harmless; secrets.env is private."""
    again = full_platform.run("up", "--profile", "full")
    status = full_platform.run("status", "--json")

    assert again.returncode == 0, again.stderr
    report = json.loads(status.stdout)
    assert report["profile"] == "full"
    assert report["artifact_root"] == "s3://mlops/mlflow"
    assert report["s3_endpoint"].startswith("http://127.0.0.1:")
    assert report["database"] == full_platform.database_url
    assert all(s["running"] for s in report["services"].values()), report
    assert set(report["services"]) == {"s3", "mlflow", "prefect", "evidently", "runner", "worker"}
    assert oct(os.stat(full_platform.home / "secrets.env").st_mode & 0o777) == "0o600"
    for value in full_platform.secrets().values():
        assert value not in status.stdout + again.stdout + again.stderr


def test_evidently_takes_writes_only_with_its_token(full_platform):
    """Given the full profile, Evidently's UI (on 127.0.0.1) refuses to create a project
    without EVIDENTLY_SECRET or with a wrong one, and creates it with the one in secrets.env."""
    url = full_platform.status()["evidently_url"]
    token = full_platform.secrets()["EVIDENTLY_SECRET"]
    body = json.dumps({"name": "it-evidently-token"}).encode()
    json_body = {"Content-Type": "application/json"}

    anonymous, _ = http(f"{url}/api/projects", "POST", json_body, body)
    wrong, _ = http(f"{url}/api/projects", "POST", {**json_body, "evidently-secret": "guess"}, body)
    right, _ = http(f"{url}/api/projects", "POST", {**json_body, "evidently-secret": token}, body)

    assert url.startswith("http://127.0.0.1:")
    assert anonymous in (401, 403) and wrong in (401, 403)
    assert right == 200 or right == 201


def test_anonymous_and_wrong_credentials_are_refused(full_platform):
    """MLflow, Prefect and S3 answer 401/403 without the platform's credentials."""
    status = full_platform.status()
    keys = full_platform.secrets()
    mlflow_api = f"{status['mlflow_url']}/api/2.0/mlflow/experiments/search?max_results=1"
    prefect_api = f"{status['prefect_url']}/api/flows/filter"
    good_mlflow = _basic(f"{keys['MLFLOW_TRACKING_USERNAME']}:{keys['MLFLOW_TRACKING_PASSWORD']}")
    json_body = {"Content-Type": "application/json"}

    assert _http_status(mlflow_api) == 401
    assert _http_status(mlflow_api, headers=_basic("mlops-admin:not-the-password")) == 401
    assert _http_status(mlflow_api, headers=good_mlflow) == 200
    good_prefect = _basic(keys["PREFECT_API_AUTH_STRING"])
    # Prefect checks a state-changing request's CSRF token before its credentials: with a
    # valid token, what is left to refuse a stranger is the missing or wrong password.
    token = _csrf_headers(status["prefect_url"], good_prefect)
    assert _http_status(prefect_api, "POST", {**json_body, **token}, b"{}") == 401
    assert _http_status(prefect_api, "POST", {**json_body, **token, **_basic("mlops:wrong")}, b"{}") == 401
    assert _http_status(prefect_api, "POST", {**json_body, **token, **good_prefect}, b"{}") == 200
    assert _http_status(prefect_api, "POST", {**json_body, **good_prefect}, b"{}") == 403  # no token
    assert _http_status(f"{status['s3_endpoint']}/mlops/") == 403
    assert _http_status(f"{status['s3_endpoint']}/") == 403


def test_wrong_s3_keys_are_refused(full_platform):
    from botocore.exceptions import ClientError

    from infra.objectstore import s3_client

    keys = full_platform.secrets()
    wrong = s3_client(full_platform.status()["s3_endpoint"], keys["AWS_ACCESS_KEY_ID"], "x" * 40)
    with pytest.raises(ClientError):
        wrong.list_objects_v2(Bucket="mlops")


def test_runs_land_in_postgresql_and_artifacts_in_the_bucket(full_platform, trained):
    """The training's run, its trial runs, its study and its flow run are rows in the
    platform's PostgreSQL databases; its model and reference data are objects in the bucket."""
    from infra.objectstore import s3_client

    result, _, _ = trained
    run_id = result["run_id"]

    assert _query(full_platform, "mlflow", "SELECT status FROM runs WHERE run_uuid = %s",
                  (run_id,)) == [("FINISHED",)]
    children = _query(full_platform, "mlflow",
                      "SELECT count(*) FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s",
                      (run_id,))[0][0]
    assert children == 3
    studies = [row[0] for row in _query(full_platform, "optuna", "SELECT study_name FROM studies")]
    assert any(name.startswith("it-full-") for name in studies)
    assert _query(full_platform, "prefect", "SELECT state_type FROM flow_run WHERE id = %s",
                  (result["flow_run_id"],)) == [("COMPLETED",)]
    keys = full_platform.secrets()
    s3 = s3_client(full_platform.status()["s3_endpoint"], keys["AWS_ACCESS_KEY_ID"],
                   keys["AWS_SECRET_ACCESS_KEY"])
    listed = s3.list_objects_v2(Bucket="mlops", Prefix="mlflow/")
    objects = [o["Key"] for o in listed.get("Contents", [])]
    assert any(run_id in key and key.endswith("reference/train.parquet") for key in objects), objects
    assert any(key.endswith("MLmodel") for key in objects), objects


def test_no_secret_reaches_params_tags_or_logs(full_platform, trained, client_env):
    """No secret value appears in the runs' params or tags, the services' logs, or the
    output of `mlops train`."""
    from mlflow.tracking import MlflowClient

    result, _, done = trained
    client = MlflowClient()
    runs = [client.get_run(result["run_id"])] + client.search_runs(
        [client.get_run(result["run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'")
    recorded = "\n".join(
        f"{k}={v}" for run in runs for k, v in {**run.data.params, **run.data.tags}.items())
    logs = "\n".join(p.read_text(errors="replace") for p in (full_platform.home / "logs").glob("*.log"))

    assert len(runs) == 4 and recorded
    # The MLflow user name is an identity, not a secret (MLflow logs whom it created).
    for name, value in full_platform.secrets().items():
        if name == "MLFLOW_TRACKING_USERNAME":
            continue
        assert value not in recorded, f"{name} is in a run's params or tags"
        assert value not in logs, f"{name} is in a service log"
        assert value not in done.stdout + done.stderr, f"{name} is in mlops train's output"


def test_monitoring_and_drift_retraining_work_unchanged(full_platform, trained, client_env):
    """Given shifted data, `mlops monitor` triggers; the platform's worker retrains from the
    s3:// source and registers a version tagged mlops.trigger=drift."""
    from mlflow.tracking import MlflowClient

    from flows.demo import wait_for_retraining

    first, folder, _ = trained
    drifted = binary_frame(n=300, seed=22)
    for column in ("x1", "x2", "noise"):
        drifted[column] = drifted[column] + 2.0
    path = folder / "drifted.csv"
    drifted.to_csv(path, index=False)

    checked = full_platform.run("monitor", NAME, "--current", str(path), "--json")

    assert checked.returncode == 0, checked.stderr[-3000:]
    result = json.loads(checked.stdout)
    assert result["drift_detected"] is True and result["retraining"] == "triggered"
    assert result["report_uri"].startswith("mlflow-artifacts:") or result["report_uri"].startswith("s3://")
    # On its dashboard: `mlops monitor` wrote to Evidently's UI with the token from secrets.env.
    assert result["evidently_url"].startswith(f"{full_platform.status()['evidently_url']}/projects/")
    done = wait_for_retraining(MlflowClient(), NAME, result["monitoring_run_id"], timeout_s=400, poll_s=0.5)
    assert done is not None and done["version"] is not None, "no retraining finished"
    assert done["run"].data.tags["mlops.trigger"] == "drift"
    assert int(done["version"].version) > int(first["model_version"])


def _signal_tree(pid: int, signum: int) -> None:
    for member in descendants(pid):
        try:
            os.kill(member, signum)
        except ProcessLookupError:
            pass


# A killed worker's trial is failed after three missed heartbeats rather than four (the
# default 20 s grace), and lost batches are given up after 10 s idle rather than 40 s.
SHORT_GRACES = {"MLOPS_STUDY_HEARTBEAT_GRACE_S": "15", "MLOPS_FANOUT_IDLE_GRACE_S": "10"}


def _start_worker(full_platform) -> subprocess.Popen:
    worker = subprocess.Popen([MLOPS, "worker"], env={**full_platform.env, **SHORT_GRACES},
                              cwd=full_platform.home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    return worker


def _wait_for_online_worker(pool: str = "mlops", timeout_s: float = 60) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            workers = client.read_workers_for_work_pool(pool)
            if any(str(getattr(w.status, "value", w.status)) == "ONLINE" for w in workers):
                return
            time.sleep(1)
    raise AssertionError("no worker came online")


def test_a_search_survives_a_worker_killed_mid_search(full_platform, tmp_path, client_env):
    """Given `--workers 2` on one PostgreSQL study, when the worker running both batches is
    killed with SIGKILL mid-trial and another worker starts, the training still ends with
    the requested number of finished trials, all nested under one MLflow parent run."""
    data = tmp_path / "train.csv"
    binary_frame(n=600, seed=5).to_csv(data, index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: it-fanout
        task: classification
        data: {{source: {data}, target: label}}
        tuning: {{trials: 10, cv_folds: 3, models: [random_forest]}}
        """))
    with full_platform.own_worker_stopped():  # the batches go to the workers started here
        study, training, out, err = _kill_a_worker_mid_search(full_platform, spec, tmp_path, client_env)
    _assert_search_survived(study, training, out, err)


def _kill_a_worker_mid_search(full_platform, spec, tmp_path, client_env):
    import optuna
    from optuna.trial import TrialState

    first = _start_worker(full_platform)
    second = None
    try:
        _wait_for_online_worker()
        training = subprocess.Popen([MLOPS, "train", str(spec), "--workers", "2", "--json"],
                                    env={**full_platform.env, **SHORT_GRACES},
                                    cwd=tmp_path, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # One storage for the whole wait: each URL given to Optuna opens a connection pool.
        storage = optuna.storages.RDBStorage(client_env["MLOPS_OPTUNA_STORAGE"])
        deadline = time.monotonic() + 300
        study = None
        while time.monotonic() < deadline:  # wait until a batch is mid-trial, one trial done
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)
                     if s.study_name.startswith("it-fanout-")]
            if names:
                study = optuna.load_study(study_name=names[0], storage=storage)
                states = [t.state for t in study.get_trials(deepcopy=False)]
                if TrialState.COMPLETE in states and TrialState.RUNNING in states:
                    break
            assert training.poll() is None, training.communicate()
            time.sleep(0.5)
        assert study is not None, "the search never started"
        _signal_tree(first.pid, signal.SIGKILL)
        first.wait(10)
        second = _start_worker(full_platform)
        out, err = training.communicate(timeout=600)
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                _stop_worker(worker)
    return study, training, out, err


def _stop_worker(worker: subprocess.Popen) -> None:
    """Stop a worker the test started, and its flow runs; never leave one behind to take the
    next test's flow runs (seen once: on a loaded machine a worker and its runs took over
    30 s to end on SIGTERM, and the test after this one found its batches on that worker)."""
    _signal_tree(worker.pid, signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        _signal_tree(worker.pid, signal.SIGKILL)
        worker.wait(30)


def _assert_search_survived(study, training, out, err) -> None:
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    assert training.returncode == 0, err[-3000:]
    result = json.loads(out)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 10 <= len(finished) <= 11  # batches stop at the count; one in flight may finish
    assert result["trials"] == len(finished)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, "the killed trial should have been failed by its stopped heartbeat"
    retried = [t for t in trials if "failed_trial" in t.system_attrs]
    assert retried, "the killed trial's parameters should have been queued again"
    client = MlflowClient()
    parent = client.get_run(result["run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'")
    assert len(children) >= len(finished)
    assert "lost" in parent.data.tags.get("mlops.search_batches", "")


def test_up_with_a_database_that_does_not_answer_is_one_line(tmp_path):
    """Given PostgreSQL unreachable, `mlops up --profile full` exits non-zero with one line
    naming the database, and starts nothing."""
    env = without_client_variables(os.environ)
    env.update({"MLOPS_HOME": str(tmp_path / "home"), "MLOPS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1"})

    done = subprocess.run([MLOPS, "up", "--profile", "full"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)

    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "PostgreSQL at postgresql://postgres@127.0.0.1:1" in lines[0], done.stderr
    assert not list((tmp_path / "home").glob("run/*.pid"))
