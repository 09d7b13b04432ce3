"""The full profile's assembly: secrets, databases, S3 service, and what clients are given."""

import json
import os
import stat

import pytest
from dotenv import dotenv_values

from infra import secrets
from infra.database import database_uri, redact
from infra.errors import PlatformError
from infra.full import settings_from_state
from infra.profiles import platform_from_settings
from infra.settings import GENERATED_SECRET_NAMES, SECRET_NAMES, Settings, load_settings, secrets_file

ALL = GENERATED_SECRET_NAMES


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No secret and no MLOPS_ setting from this process's environment (a session fixture
    may have pointed it at a platform)."""
    for name in [*ALL, *(n for n in os.environ if n.startswith("MLOPS_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path


def test_secrets_are_generated_once_into_a_private_file(clean_env):
    """Given no secrets anywhere, ensure() writes every one to secrets.env (mode 600), and a
    second call returns the same values."""
    home = clean_env / "home"

    first = secrets.ensure(load_settings(home=home))
    second = secrets.ensure(load_settings(home=home))

    assert set(first) == set(ALL) and first == second
    mode = stat.S_IMODE(os.stat(secrets_file(home)).st_mode)
    assert mode == 0o600
    assert len(first["MLFLOW_TRACKING_PASSWORD"]) >= 12  # MLflow refuses shorter admin passwords
    assert first["PREFECT_API_AUTH_STRING"].count(":") == 1


def test_environment_then_dotenv_then_secrets_file(clean_env, monkeypatch):
    """Given a secret in all three places, the environment wins, then .env, then the file."""
    home = clean_env / "home"
    secrets.ensure(load_settings(home=home))
    (clean_env / ".env").write_text("AWS_ACCESS_KEY_ID=from-dotenv\nAWS_SECRET_ACCESS_KEY='quoted'\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")

    found = load_settings(home=home).secrets()

    assert found["AWS_ACCESS_KEY_ID"] == "from-env"
    assert found["AWS_SECRET_ACCESS_KEY"] == "quoted"
    assert found["MLFLOW_TRACKING_PASSWORD"] == dotenv_values(secrets_file(home))["MLFLOW_TRACKING_PASSWORD"]


def test_the_home_named_in_dotenv_is_where_secrets_are_read(clean_env):
    """Given MLOPS_HOME only in .env, the secrets file under that home is read."""
    home = clean_env / "elsewhere"
    (clean_env / ".env").write_text(f"MLOPS_HOME={home}\n")
    home.mkdir()
    secrets_file(home).write_text("PREFECT_API_AUTH_STRING=a:b\n")

    assert load_settings().secrets()["PREFECT_API_AUTH_STRING"] == "a:b"


@pytest.mark.parametrize("name", ["secrets.env", ".env"])
def test_a_malformed_env_file_names_its_line(clean_env, name):
    home = clean_env / "home"
    home.mkdir()
    path = home / "secrets.env" if name == "secrets.env" else clean_env / ".env"
    path.write_text("# comment\nGOOD=1\nthis is not an assignment\n")

    with pytest.raises(PlatformError, match=rf"{name}:3 is not a KEY=VALUE line"):
        load_settings(home=home)


def test_settings_never_show_a_secret(clean_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-hunter2")

    settings = load_settings()

    assert settings.secrets()["MLFLOW_TRACKING_PASSWORD"] == "hunter2-hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_full_profile_without_secrets_says_how_to_start_it(clean_env):
    with pytest.raises(PlatformError, match="mlops up --profile full"):
        platform_from_settings(load_settings(home=clean_env / "home"), profile="full")


def test_full_platform_services_and_client_environment(clean_env):
    """Given generated secrets, the platform runs s3, mlflow, prefect, the runner and a worker
    of the pool; clients get the secrets, S3 endpoint, study database and data bucket; no
    secret is in argv or the state."""
    home = clean_env / "home"
    values = secrets.ensure(load_settings(home=home))
    platform = platform_from_settings(load_settings(home=home), profile="full")

    assert [s.name for s in platform.services] == ["s3", "mlflow", "prefect", "evidently", "runner",
                                                   "worker"]
    assert [s.wave for s in platform.services] == [0, 1, 1, 1, 2, 2]
    env = platform.client_environment()
    for name in SECRET_NAMES:
        assert env[name] == values[name]
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" not in env
    optuna = values["MLOPS_DATABASE_PASSWORD_OPTUNA"]
    assert env["MLOPS_OPTUNA_STORAGE"] == f"postgresql+psycopg2://mlops_optuna:{optuna}@127.0.0.1:5432/mlops_optuna"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert env["MLOPS_DATA_URI"] == "s3://mlops/data"
    worker = next(s for s in platform.services if s.name == "worker")
    assert worker.argv[1:] == ("-m", "prefect", "worker", "start", "--pool", "mlops", "--type",
                               "process", "--with-healthcheck")
    assert worker.health_url == "http://127.0.0.1:4281/health"
    mlflow = next(s for s in platform.services if s.name == "mlflow")
    assert {"--app-name", "basic-auth", "--serve-artifacts"} <= set(mlflow.argv)
    assert mlflow.env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlops/mlflow"
    text = json.dumps(platform.state()) + " ".join(a for s in platform.services for a in s.argv)
    for value in values.values():
        assert value not in text


def test_each_service_reaches_its_database_as_its_own_role(clean_env):
    """MLflow, its auth store and Prefect connect as the role named after their database,
    with that role's password; the admin URL is only used to create roles and databases."""
    home = clean_env / "home"
    values = secrets.ensure(load_settings(home=home))
    platform = platform_from_settings(load_settings(home=home), profile="full")
    by_name = {s.name: s for s in platform.services}

    mlflow_db = values["MLOPS_DATABASE_PASSWORD_MLFLOW"]
    prefect_db = values["MLOPS_DATABASE_PASSWORD_PREFECT"]
    assert by_name["mlflow"].env["MLFLOW_BACKEND_STORE_URI"] == (
        f"postgresql+psycopg2://mlops_mlflow:{mlflow_db}@127.0.0.1:5432/mlops_mlflow")
    assert by_name["prefect"].env["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        f"postgresql+asyncpg://mlops_prefect:{prefect_db}@127.0.0.1:5432/mlops_prefect")
    auth_config = dict(by_name["mlflow"].files)[home.resolve() / "mlflow" / "basic_auth.ini"]
    assert f"mlops_mlflow_auth:{values['MLOPS_DATABASE_PASSWORD_MLFLOW_AUTH']}@" in auth_config


def test_serving_gets_its_own_credentials_only(clean_env):
    """The serving environment holds the serve user's MLflow password and the traffic-only S3
    keys, which SeaweedFS knows as a second identity; no admin, Prefect or database secret."""
    home = clean_env / "home"
    values = secrets.ensure(load_settings(home=home))
    platform = platform_from_settings(load_settings(home=home), profile="full")

    serve = platform.serve_env
    assert serve["MLFLOW_TRACKING_USERNAME"] == "mlops-serve"
    assert serve["MLFLOW_TRACKING_PASSWORD"] == values["MLOPS_SERVE_MLFLOW_PASSWORD"]
    assert serve["AWS_ACCESS_KEY_ID"] == values["MLOPS_SERVE_AWS_ACCESS_KEY_ID"]
    assert serve["MLOPS_TRAFFIC_URI"] == "s3://mlops/traffic"
    others = {k: v for k, v in values.items() if not k.startswith("MLOPS_SERVE_")}
    assert not [k for k, v in others.items() if v in json.dumps(serve)]
    s3 = next(s for s in platform.services if s.name == "s3")
    identities = json.loads(dict(s3.files)[home.resolve() / "s3" / "identities.json"])["identities"]
    restricted = [i for i in identities if i["name"] == "mlops-serve"]
    assert restricted and restricted[0]["actions"] == ["Write:mlops/traffic/*"]


def test_an_external_s3_endpoint_starts_no_seaweedfs(clean_env):
    settings = load_settings(home=clean_env / "home", s3_endpoint="http://s3.internal:9000")
    platform = platform_from_settings(settings, profile="full", secrets=secrets.ensure(settings))

    assert "s3" not in [s.name for s in platform.services]
    assert platform.details["s3_endpoint"] == "http://s3.internal:9000"


def test_later_commands_use_the_settings_the_platform_started_with(clean_env):
    """Given a running platform's state, another shell's defaults do not move its stores;
    a recorded URL whose password was redacted falls back to this process's setting."""
    state = {"settings": {"database_prefix": "team", "bucket": "b",
                          "database_url": "postgresql://u:***@db:5432"}}

    settings = settings_from_state(Settings(database_url="postgresql://u:pw@db:5432"), state)

    assert (settings.database_prefix, settings.bucket) == ("team", "b")
    assert settings.database_url == "postgresql://u:pw@db:5432"


def test_database_urls():
    assert redact("postgresql://u:secret@h:5432") == "postgresql://u:***@h:5432"
    assert redact("postgresql://u@h:5432") == "postgresql://u@h:5432"
    assert database_uri("postgresql://u:p@h:5432", "db", "asyncpg") == "postgresql+asyncpg://u:p@h:5432/db"


def test_the_auth_config_survives_a_percent_encoded_password():
    """Given a database password with %-escapes, MLflow's configparser reads the URL back."""
    import configparser

    from infra.full import _auth_config

    url = "postgresql+psycopg2://u:p%40ss@db:5432/mlops_mlflow_auth"
    parser = configparser.ConfigParser()
    parser.read_string(_auth_config(url))

    assert parser["mlflow"]["database_uri"] == url


def test_describing_a_platform_writes_nothing(clean_env):
    """Given an empty home, describing either profile (as `mlops status` does) creates no
    file or folder; the files the services need are listed for `up` to write."""
    home = clean_env / "home"
    keys = secrets.generate()

    for profile in ("local", "full"):
        platform = platform_from_settings(Settings(home=home), profile=profile, secrets=keys)

        assert not home.exists()
    written = {path.name for service in platform.services for path, _ in service.files}
    assert written == {"identities.json", "basic_auth.ini"}


def test_evidently_stays_on_loopback_and_wants_its_token_for_writes(clean_env):
    """Given the full profile on a non-loopback MLOPS_HOST, Evidently's UI (no read
    authentication) still binds 127.0.0.1; its write token reaches the server and the clients
    through the environment only, and the serving process never gets it."""
    home = clean_env / "home"
    values = secrets.ensure(load_settings(home=home))
    platform = platform_from_settings(load_settings(home=home, host="0.0.0.0"), profile="full")
    by_name = {s.name: s for s in platform.services}

    evidently, runner = by_name["evidently"], by_name["runner"]
    assert by_name["mlflow"].host == "0.0.0.0" and evidently.host == "127.0.0.1"
    assert evidently.argv[evidently.argv.index("--host") + 1] == "127.0.0.1"
    assert evidently.env["EVIDENTLY_SECRET"] == values["EVIDENTLY_SECRET"]
    assert values["EVIDENTLY_SECRET"] not in " ".join(evidently.argv)
    token = values["EVIDENTLY_SECRET"]
    assert runner.env["EVIDENTLY_SECRET"] == platform.client_environment()["EVIDENTLY_SECRET"] == token
    assert runner.env["MLOPS_EVIDENTLY_URL"] == platform.evidently_url == evidently.url
    assert "EVIDENTLY_SECRET" not in platform.serve_env
