"""The full profile's assembly: secrets, databases, S3 service, and what clients are given."""

import json
import os
import stat

import pytest

from infra import secrets
from infra.database import database_uri, redact
from infra.errors import PlatformError
from infra.full import settings_from_state
from infra.platform import platform_from_settings
from infra.settings import Settings

ALL = secrets.SECRET_NAMES + secrets.SERVER_SECRET_NAMES


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path


def test_secrets_are_generated_once_into_a_private_file(clean_env):
    """Given no secrets anywhere, ensure() writes every one to secrets.env (mode 600), and a
    second call returns the same values."""
    home = clean_env / "home"

    first = secrets.ensure(home)
    second = secrets.ensure(home)

    assert set(first) == set(ALL) and first == second
    mode = stat.S_IMODE(os.stat(secrets.secrets_file(home)).st_mode)
    assert mode == 0o600
    assert len(first["MLFLOW_TRACKING_PASSWORD"]) >= 12  # MLflow refuses shorter admin passwords
    assert first["PREFECT_API_AUTH_STRING"].count(":") == 1


def test_environment_then_dotenv_then_secrets_file(clean_env, monkeypatch):
    """Given a secret in all three places, the environment wins, then .env, then the file."""
    home = clean_env / "home"
    secrets.ensure(home)
    (clean_env / ".env").write_text("AWS_ACCESS_KEY_ID=from-dotenv\nAWS_SECRET_ACCESS_KEY='quoted'\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")

    found = secrets.resolve(home)

    assert found["AWS_ACCESS_KEY_ID"] == "from-env"
    assert found["AWS_SECRET_ACCESS_KEY"] == "quoted"
    assert found["MLFLOW_TRACKING_PASSWORD"] == secrets.read_env_file(
        secrets.secrets_file(home))["MLFLOW_TRACKING_PASSWORD"]


def test_a_malformed_env_file_names_its_line(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("# comment\nGOOD=1\nthis is not an assignment\n")

    with pytest.raises(PlatformError, match=r"secrets.env:3 is not a KEY=VALUE line"):
        secrets.read_env_file(path)


def test_full_profile_without_secrets_says_how_to_start_it(clean_env):
    with pytest.raises(PlatformError, match="mlops up --profile full"):
        platform_from_settings(Settings(home=clean_env / "home"), profile="full")


def test_full_platform_services_and_client_environment(clean_env):
    """Given generated secrets, the platform runs s3, mlflow, prefect and the runner; clients
    get the secrets, S3 endpoint and study database; no secret is in argv or the state."""
    home = clean_env / "home"
    platform = platform_from_settings(Settings(home=home), profile="full", generate_secrets=True)
    values = secrets.resolve(home)

    assert [s.name for s in platform.services] == ["s3", "mlflow", "prefect", "runner"]
    assert [s.wave for s in platform.services] == [0, 1, 1, 2]
    env = platform.client_environment()
    for name in secrets.SECRET_NAMES:
        assert env[name] == values[name]
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" not in env
    assert env["MLOPS_OPTUNA_STORAGE"] == "postgresql+psycopg2://postgres@127.0.0.1:5432/mlops_optuna"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    mlflow = next(s for s in platform.services if s.name == "mlflow")
    assert {"--app-name", "basic-auth", "--serve-artifacts"} <= set(mlflow.argv)
    assert mlflow.env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlops/mlflow"
    text = json.dumps(platform.state()) + " ".join(a for s in platform.services for a in s.argv)
    for value in values.values():
        assert value not in text


def test_an_external_s3_endpoint_starts_no_seaweedfs(clean_env):
    settings = Settings(home=clean_env / "home", s3_endpoint="http://s3.internal:9000")
    platform = platform_from_settings(settings, profile="full", generate_secrets=True)

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
