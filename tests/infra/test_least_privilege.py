"""Least privilege in the full profile, on the real services `mlops up --profile full` starts
(the session fixture `full_platform`): a PostgreSQL role per service database, and `mlops
serve` holding only what it needs (an MLflow user that reads models, S3 keys that write
live traffic), with no password on any command line."""

import base64
import json
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import httpx
import psycopg2
import pytest
from environment import patched_environ
from listening import descendants
from network import free_port
from polling import wait_for
from synthetic import binary_frame

from infra.database import STORES, database_name, database_uri, role_uri

pytestmark = pytest.mark.integration

NAME = "it-least"
MLOPS = str(Path(sys.executable).parent / "mlops")


def _role_connection(full_platform, role_store: str, database_store: str):
    """A connection as `role_store`'s role, with its password, to `database_store`'s database."""
    password = full_platform.secrets()[f"MLOPS_DATABASE_PASSWORD_{role_store.upper()}"]
    role = database_name(full_platform.prefix, role_store)
    server = role_uri(full_platform.database_url, role, password).rsplit("/", 1)[0]
    return psycopg2.connect(f"{server}/{database_name(full_platform.prefix, database_store)}",
                            connect_timeout=10)


def _admin_query(full_platform, store: str, sql: str, args=()) -> list[tuple]:
    connection = psycopg2.connect(database_uri(full_platform.database_url,
                                               database_name(full_platform.prefix, store)))
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


def _admin_secrets(full_platform) -> dict[str, str]:
    """Every secret in secrets.env but the serving process's own."""
    return {k: v for k, v in full_platform.secrets().items() if not k.startswith("MLOPS_SERVE_")}


@pytest.fixture(scope="module")
def trained(full_platform, tmp_path_factory):
    """A champion for NAME, trained by `mlops train` on the full platform."""
    folder = tmp_path_factory.mktemp("least")
    binary_frame(n=300, seed=3).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{drift_share: 0.3, cooldown_minutes: 60, window_minutes: 60, min_rows: 50}}
        """))
    done = full_platform.run("train", str(spec), "--json", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), folder


@pytest.fixture(scope="module")
def serving(full_platform, trained):
    """`mlops serve NAME` started from a shell that holds every admin secret (as if it had
    sourced secrets.env); yields the process and its address."""
    _, folder = trained
    port = free_port()
    env = {**full_platform.env, **_admin_secrets(full_platform), "MLOPS_TRAFFIC_FLUSH_S": "1"}
    log = folder / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([MLOPS, "serve", NAME, "--port", str(port)], env=env, cwd=folder,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        healthy = wait_for(lambda: process.poll() is None and _answers(f"{url}/health"), 180, 0.5)
        assert healthy, log.read_text()[-3000:]
        yield process, url
    finally:
        process.terminate()
        process.wait(60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def test_each_service_role_opens_its_own_database_only(full_platform):
    """Given the platform up, each store's role connects to its own database and is refused
    by every other; the running services connect as their roles, never as the admin."""
    for role_store in STORES:
        with _role_connection(full_platform, role_store, role_store) as own, own.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == database_name(full_platform.prefix, role_store)
        own.close()
        for other in (s for s in STORES if s != role_store):
            with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
                _role_connection(full_platform, role_store, other)
    for store in ("mlflow", "mlflow_auth", "prefect"):
        users = {row[0] for row in _admin_query(
            full_platform, store, "SELECT usename FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()", (database_name(full_platform.prefix, store),))}
        assert users == {database_name(full_platform.prefix, store)}, (store, users)  # not empty either


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (as pg_authid keeps it) was made from `password`."""
    import hashlib
    import hmac

    method, _, rest = verifier.partition("$")
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return method == "SCRAM-SHA-256" and hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)


def test_each_role_holds_the_password_in_secrets_env_as_a_scram_hash(full_platform):
    """This machine's PostgreSQL trusts loopback connections, so a wrong password would pass
    the tests above unseen: check what the server keeps against secrets.env instead."""
    secrets = full_platform.secrets()
    for store in STORES:
        role = database_name(full_platform.prefix, store)
        (verifier,), = _admin_query(full_platform, store,
                                    "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        password = secrets[f"MLOPS_DATABASE_PASSWORD_{store.upper()}"]
        assert _scram_matches(verifier, password), store
        assert not _scram_matches(verifier, password + "x")


def test_the_optuna_study_storage_is_the_optuna_role(full_platform, trained):
    """The study a training made is in the optuna database, reached as the optuna role."""
    env = full_platform.client_environment()
    role = database_name(full_platform.prefix, "optuna")

    assert env["MLOPS_OPTUNA_STORAGE"].startswith(f"postgresql+psycopg2://{role}:")
    owners = _admin_query(full_platform, "optuna",
                          "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                          "WHERE relnamespace = 'public'::regnamespace")
    assert owners == [(role,)]


def test_no_process_command_line_holds_a_secret(full_platform, serving):
    """Every process of the platform (each service and all it started) and `mlops serve`:
    no secret from secrets.env in its command line."""
    process, _ = serving
    started = [int(p.read_text().split()[0]) for p in (full_platform.home / "run").glob("*.pid")]
    pids = descendants(*started, process.pid)
    lines = {}
    for pid in pids:
        try:
            lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
    assert len(lines) >= 5 and any("weed" in line for line in lines.values())
    for name, value in full_platform.secrets().items():
        if name == "MLFLOW_TRACKING_USERNAME":
            continue  # an identity, not a secret
        holding = [line[:80] for line in lines.values() if value in line]
        assert holding == [], f"{name} is on a command line"


def _serve_client(full_platform):
    """An MLflow client as the serving user, nothing else in its credentials."""
    from mlflow.tracking import MlflowClient

    url = full_platform.status()["mlflow_url"]
    return MlflowClient(tracking_uri=url, registry_uri=url)


def _serve_credentials(full_platform) -> dict[str, str]:
    secrets = full_platform.secrets()
    # `models:/` URIs are resolved with the registry the environment names.
    return {"MLFLOW_TRACKING_URI": full_platform.status()["mlflow_url"],
            "MLFLOW_TRACKING_USERNAME": "mlops-serve",
            "MLFLOW_TRACKING_PASSWORD": secrets["MLOPS_SERVE_MLFLOW_PASSWORD"]}


def _status_of(call) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        call()
    except MlflowException as error:
        return error.get_http_status_code()
    return None


def test_the_serve_user_loads_models_and_writes_nothing(full_platform, trained):
    """The MLflow user `mlops serve` runs as loads the champion through the platform's loader,
    and gets 403 creating a run, logging to one, moving an alias or adding a version."""
    from registry.loading import load_registered

    result, _ = trained
    with patched_environ(_serve_credentials(full_platform)):
        client = _serve_client(full_platform)
        champion = client.get_model_version_by_alias(NAME, "champion")
        loaded = load_registered(client, NAME, champion.version)
        experiment = client.get_experiment_by_name(NAME).experiment_id

        assert loaded.version == champion.version == str(result["model_version"])
        assert _status_of(lambda: client.create_run(experiment)) == 403
        assert _status_of(lambda: client.log_metric(champion.run_id, "tampered", 1.0)) == 403
        assert _status_of(lambda: client.set_registered_model_alias(NAME, "champion", "1")) == 403
        assert _status_of(lambda: client.create_model_version(NAME, champion.source, champion.run_id)) == 403
        assert _status_of(lambda: client.set_model_version_tag(NAME, champion.version, "x", "y")) == 403
        assert _status_of(lambda: client.delete_registered_model(NAME)) == 403
    # Nor can it make itself more: no new user, no admin's password.
    url, login = full_platform.status()["mlflow_url"], _serve_credentials(full_platform)
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"{login['MLFLOW_TRACKING_USERNAME']}:{login['MLFLOW_TRACKING_PASSWORD']}".encode()).decode()}
    admin = full_platform.secrets()["MLFLOW_TRACKING_USERNAME"]
    for method, path, body in (("POST", "create", {"username": "intruder", "password": "x" * 16}),
                               ("PATCH", "update-password", {"username": admin, "password": "y" * 16})):
        answer = httpx.request(method, f"{url}/api/2.0/mlflow/users/{path}", json=body, headers=auth,
                               timeout=30, trust_env=False)
        assert answer.status_code == 403, (path, answer.status_code)


def test_the_serve_keys_write_under_the_traffic_prefix_only(full_platform, trained):
    """The serving S3 keys put objects under traffic/ and get AccessDenied reading MLflow's
    artifacts, listing the bucket, or writing anywhere else."""
    from botocore.exceptions import ClientError

    from infra.objectstore import s3_client

    secrets = full_platform.secrets()
    endpoint = full_platform.status()["s3_endpoint"]
    admin = s3_client(endpoint, secrets["AWS_ACCESS_KEY_ID"], secrets["AWS_SECRET_ACCESS_KEY"])
    serve = s3_client(endpoint, secrets["MLOPS_SERVE_AWS_ACCESS_KEY_ID"],
                      secrets["MLOPS_SERVE_AWS_SECRET_ACCESS_KEY"])
    artifact = admin.list_objects_v2(Bucket="mlops", Prefix="mlflow/")["Contents"][0]["Key"]

    def refused(call) -> str:
        with pytest.raises(ClientError) as error:
            call()
        return error.value.response["Error"]["Code"]

    serve.put_object(Bucket="mlops", Key="traffic/it-least-probe/part.txt", Body=b"ok")
    assert admin.get_object(Bucket="mlops", Key="traffic/it-least-probe/part.txt")["Body"].read() == b"ok"
    assert refused(lambda: serve.get_object(Bucket="mlops", Key=artifact)) == "AccessDenied"
    for elsewhere in ("mlflow/planted", "traffic-other/x", "data/x.csv"):
        assert refused(partial(serve.put_object, Bucket="mlops", Key=elsewhere, Body=b"x")) == "AccessDenied"
    assert refused(lambda: serve.list_objects_v2(Bucket="mlops", Prefix="traffic/")) == "AccessDenied"
    assert refused(lambda: serve.create_bucket(Bucket="other")) == "AccessDenied"
    admin.delete_object(Bucket="mlops", Key="traffic/it-least-probe/part.txt")


def test_a_running_serve_holds_only_the_serving_credentials(full_platform, serving):
    """Started from a shell holding every admin secret, the serving process's environment
    holds none of them, no Prefect or database setting, and the serving user's credentials."""
    process, _ = serving
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{process.pid}/environ").read_bytes().decode().split("\0") if "=" in item)
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    assert "-m serving" in cmdline  # `mlops serve` became the server, in the same process
    text = "\n".join(f"{k}={v}" for k, v in environ.items())
    for name, value in _admin_secrets(full_platform).items():
        assert value not in text, f"{name} is in the serving process's environment"
    assert not [k for k in environ if k.startswith(("PREFECT_", "MLOPS_DATABASE", "MLOPS_OPTUNA"))]
    assert environ["MLFLOW_TRACKING_USERNAME"] == "mlops-serve"
    assert environ["AWS_ACCESS_KEY_ID"] == full_platform.secrets()["MLOPS_SERVE_AWS_ACCESS_KEY_ID"]
    assert environ["MLOPS_SERVE_TOKEN"] == full_platform.secrets()["MLOPS_SERVE_TOKEN"]


def test_serve_with_a_serving_password_mlflow_refuses_is_one_line(full_platform, trained):
    """Given a serving password MLflow does not know (a platform `up` has not set it up for),
    `mlops serve` ends in one line naming the serving user, before serving anything."""
    _, folder = trained
    env = {**full_platform.env, "MLOPS_SERVE_MLFLOW_PASSWORD": "not-the-serving-password"}

    done = subprocess.run([MLOPS, "serve", NAME, "--port", str(free_port())], env=env, cwd=folder,
                          capture_output=True, text=True, timeout=180)

    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused the serving user mlops-serve (HTTP 401)" in lines[0], done.stderr


def test_serving_with_its_own_credentials_works_end_to_end(full_platform, trained, serving):
    """Predictions are answered, the traffic lands on S3 (written with the serving keys), and
    `mlops monitor` reads it as the current window."""
    from infra.objectstore import s3_client

    _, folder = trained
    _, url = serving
    records = binary_frame(n=120, seed=8).drop(columns="label")
    body = {"records": json.loads(records.to_json(orient="records"))}
    secrets = full_platform.secrets()
    bearer = {"Authorization": f"Bearer {secrets['MLOPS_SERVE_TOKEN']}"}
    answered = httpx.post(f"{url}/predict", json=body, headers=bearer, timeout=60, trust_env=False)
    admin = s3_client(full_platform.status()["s3_endpoint"], secrets["AWS_ACCESS_KEY_ID"],
                      secrets["AWS_SECRET_ACCESS_KEY"])

    def recorded() -> bool:
        listed = admin.list_objects_v2(Bucket="mlops", Prefix=f"traffic/{NAME}/")
        return any(o["Key"].endswith(".parquet") for o in listed.get("Contents", []))

    assert answered.status_code == 200, answered.text
    assert len(answered.json()["predictions"]) == 120
    assert wait_for(recorded, 60, 0.5), "no traffic part reached S3"
    checked = full_platform.run("monitor", NAME, "--json", cwd=folder)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert json.loads(checked.stdout)["model_name"] == NAME


def _as_an_earlier_version_left_them(full_platform) -> None:
    """The databases as a version before roles left them: everything owned by the admin,
    anyone may connect, and no role of their own."""
    connection = psycopg2.connect(database_uri(full_platform.database_url, "postgres"))
    connection.autocommit = True
    with connection.cursor() as cursor:
        for store in STORES:
            name = database_name(full_platform.prefix, store)
            inside = psycopg2.connect(database_uri(full_platform.database_url, name))
            inside.autocommit = True
            with inside.cursor() as owned:
                owned.execute(f'REASSIGN OWNED BY "{name}" TO CURRENT_USER')
                owned.execute(f'DROP OWNED BY "{name}"')
            inside.close()
            cursor.execute(f'GRANT CONNECT ON DATABASE "{name}" TO PUBLIC')
            cursor.execute(f'DROP ROLE "{name}"')
    connection.close()


def test_databases_an_earlier_version_made_work_after_up(full_platform, trained):
    """Given the platform stopped and its databases owned by the admin (as before roles),
    `mlops up` hands them to their roles, and a training runs end to end on them (MLflow,
    Prefect and Optuna all write)."""
    _, folder = trained
    assert full_platform.run("down", timeout=180).returncode == 0
    _as_an_earlier_version_left_them(full_platform)
    admin = _admin_query(full_platform, "mlflow", "SELECT DISTINCT pg_get_userbyid(relowner) "
                         "FROM pg_class WHERE relnamespace = 'public'::regnamespace")
    assert admin == [("postgres",)]

    up = full_platform.run("up", "--profile", "full", timeout=400)
    again = full_platform.run("train", str(folder / "spec.yaml"), "--trials", "1", "--json", cwd=folder)

    assert up.returncode == 0, up.stderr[-3000:]
    assert again.returncode == 0, again.stderr[-3000:]
    for store in STORES:
        role = database_name(full_platform.prefix, store)
        owners = _admin_query(full_platform, store, "SELECT DISTINCT pg_get_userbyid(relowner) "
                              "FROM pg_class WHERE relnamespace = 'public'::regnamespace")
        assert owners == [(role,)], (store, owners)
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            _role_connection(full_platform, "optuna" if store != "optuna" else "prefect", store)
