"""The project's knobs, read once per process: the environment, then `.env`, then
MLOPS_HOME/secrets.env (the first that has a value wins).

Entry points (the CLI, a flow Prefect starts, `python -m serving`) call `process_settings()`
once and pass the result down; nothing else reads the environment.
"""

import io
from pathlib import Path
from typing import Annotated, Literal

from dotenv.parser import parse_stream
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.errors import PlatformError
from infra.platform import HEARTBEAT_SECONDS

DOTENV = Path(".env")
# The full profile's secrets, under the names each client already reads.
SECRET_NAMES = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "PREFECT_API_AUTH_STRING",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
# Only the MLflow server reads this one (CSRF protection of its auth pages); never exported.
SERVER_SECRET_NAMES = ("MLFLOW_FLASK_SERVER_SECRET_KEY",)
# Full profile, least privilege: the one login role per service database (passwords), and
# what `mlops serve` gets instead of the admin's credentials (an MLflow user that reads
# models, S3 keys that can only write under the traffic prefix).
DATABASE_SECRET_NAMES = tuple(f"MLOPS_DATABASE_PASSWORD_{store.upper()}"
                              for store in ("mlflow", "mlflow_auth", "prefect", "optuna"))
# MLOPS_SERVE_TOKEN is the bearer token /predict and /feedback need; only `mlops serve` reads it.
SERVE_SECRET_NAMES = ("MLOPS_SERVE_MLFLOW_PASSWORD", "MLOPS_SERVE_AWS_ACCESS_KEY_ID",
                      "MLOPS_SERVE_AWS_SECRET_ACCESS_KEY", "MLOPS_SERVE_TOKEN")
SERVE_MLFLOW_USERNAME = "mlops-serve"
# The token Evidently's UI wants for writes (new projects, snapshots, dashboards), under the
# name its server and our flows read; reads stay open (Evidently has no read authentication).
EVIDENTLY_SECRET_NAMES = ("EVIDENTLY_SECRET",)
# Every secret `mlops up --profile full` generates when it is not set.
GENERATED_SECRET_NAMES = (SECRET_NAMES + SERVER_SECRET_NAMES + DATABASE_SECRET_NAMES + SERVE_SECRET_NAMES
                          + EVIDENTLY_SECRET_NAMES)


def _native(name: str):
    """A field read from a client's own variable (no MLOPS_ prefix); settable by field name."""
    return Field("", validation_alias=AliasChoices(name, name.lower()))


def _secret(name: str):
    return Field(SecretStr(""), validation_alias=AliasChoices(name, name.lower()))


# A number that cannot mean anything below its bound is refused with its variable's name
# (MLOPS_SERVE_KEEP_ALIVE_S=-5 would close every connection at once).
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
Positive = Annotated[float, Field(gt=0)]
NotNegative = Annotated[float, Field(ge=0)]


class Settings(BaseSettings):
    """Where the platform keeps its state, which ports it binds, (full profile) which
    PostgreSQL server and S3 endpoint it uses, and how `mlops serve` behaves."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", frozen=True)

    home: Path = Path(".mlops")
    host: str = "127.0.0.1"
    mlflow_port: Port = 5000
    prefect_port: Port = 4200
    runner_port: Port = 4280
    worker_port: Port = 4281  # the full profile's own worker answers GET /health here
    evidently_port: Port = 8000
    profile: Literal["local", "full"] = "local"
    start_timeout_s: Positive = 90.0
    # The full profile. The server URL names no database: each store gets its own.
    database_url: str = "postgresql://postgres@127.0.0.1:5432"
    database_prefix: str = "mlops"
    s3_endpoint: str = ""  # empty: `up --profile full` starts SeaweedFS on s3_port
    s3_port: Port = 8333
    bucket: str = "mlops"
    work_pool: str = "mlops"
    # A trial of a database study (full profile) whose process sent no heartbeat for this
    # long is failed, and a copy queued for whoever runs next. Trials beat every 5 s, so at
    # least two beats: one late beat (a busy machine) must not fail a living trial.
    study_heartbeat_grace_s: int = Field(20, ge=10)
    # A fanned-out search batch with no trial running, and none finished for this long, is
    # given up as lost and another started (a dead worker's trial stops being "running" once
    # the study's heartbeat grace has passed).
    fanout_idle_grace_s: float = Field(40.0, gt=0)
    # A flow run that sent no heartbeat for this long is marked Crashed by the automation the
    # runner installs (flows/heartbeats.py). Runs beat every HEARTBEAT_SECONDS, so the default
    # is ten missed beats, and longer than Prefect's default interval (180 s): a flow run
    # started outside the platform's environment is not taken for dead while it runs.
    heartbeat_silence_s: int = 300
    # Where Optuna keeps studies: a database URL (the full profile sets it); empty means a
    # journal file under home.
    optuna_storage: str = ""

    # `mlops serve` and the live-traffic store.
    serve_host: str = "127.0.0.1"
    serve_port: Port = 8080
    serve_reload_s: Positive = 5.0
    serve_max_records: Count = 10_000
    serve_max_body_bytes: Count = 1 << 20
    serve_batch_wait_ms: NotNegative = 1.0
    serve_feedback_ids: Count = 100_000
    # Overload: beyond these `mlops serve` answers 503 with Retry-After.
    serve_max_in_flight: Count = 64
    serve_max_connections: Count = 1024
    serve_max_queued_records: Count = 50_000
    # An idle connection is kept open this long: longer than clients and load balancers keep
    # theirs (httpx 5 s, an AWS load balancer 60 s), so none of them sends a request on a
    # connection the server is closing at that moment (uvicorn's default is 5 s).
    serve_keep_alive_s: Count = 75
    # The challenger's shadow: batches gathered this long are scored in one call; beyond
    # this many records waiting, batches are not shadowed.
    serve_shadow_wait_ms: NotNegative = 200.0
    serve_shadow_max_records: Count = 20_000
    traffic_uri: str | None = None
    # Where a flow leaves data another flow reads (a retraining's combined data, which the new
    # version's spec names): s3://bucket/prefix in the full profile, so that a worker on
    # another machine can write it and anyone read it; else MLOPS_HOME.
    data_uri: str | None = None
    traffic_flush_s: Positive = 5.0
    traffic_flush_rows: Count = 50_000
    traffic_max_rows: Count = 1_000_000  # unwritten rows kept while the store fails
    traffic_backoff_max_s: Positive = 60.0

    # Where flows add their checks' snapshots (Evidently's UI); `mlops up` tells its clients.
    evidently_url: str = ""

    # Clients' own variables: when set, they win over the addresses `mlops up` recorded.
    mlflow_tracking_uri: str = _native("MLFLOW_TRACKING_URI")
    prefect_api_url: str = _native("PREFECT_API_URL")
    mlflow_tracking_username: SecretStr = _secret("MLFLOW_TRACKING_USERNAME")
    mlflow_tracking_password: SecretStr = _secret("MLFLOW_TRACKING_PASSWORD")
    prefect_api_auth_string: SecretStr = _secret("PREFECT_API_AUTH_STRING")
    aws_access_key_id: SecretStr = _secret("AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr = _secret("AWS_SECRET_ACCESS_KEY")
    mlflow_flask_server_secret_key: SecretStr = _secret("MLFLOW_FLASK_SERVER_SECRET_KEY")
    evidently_secret: SecretStr = _secret("EVIDENTLY_SECRET")
    database_password_mlflow: SecretStr = SecretStr("")
    database_password_mlflow_auth: SecretStr = SecretStr("")
    database_password_prefect: SecretStr = SecretStr("")
    database_password_optuna: SecretStr = SecretStr("")
    serve_mlflow_password: SecretStr = SecretStr("")
    serve_aws_access_key_id: SecretStr = SecretStr("")
    serve_aws_secret_access_key: SecretStr = SecretStr("")
    serve_token: SecretStr = SecretStr("")

    @field_validator("heartbeat_silence_s")
    @classmethod
    def _beats_missed(cls, value: int) -> int:
        # One late beat (a busy machine) must not get a living run crashed.
        if value < 2 * HEARTBEAT_SECONDS:
            raise ValueError(f"must be at least {2 * HEARTBEAT_SECONDS} s, twice the "
                             f"{HEARTBEAT_SECONDS} s between a flow run's heartbeats (got {value})")
        return value

    @property
    def traffic_base(self) -> str:
        """MLOPS_TRAFFIC_URI (a path or s3://bucket/prefix), else <MLOPS_HOME>/traffic."""
        return self.traffic_uri or str(Path(self.home, "traffic").resolve())

    @property
    def data_base(self) -> str:
        """MLOPS_DATA_URI (a path or s3://bucket/prefix), else <MLOPS_HOME>."""
        return self.data_uri or str(Path(self.home).resolve())

    def secrets(self) -> dict[str, str]:
        """The secrets that are set, by their native names."""
        found = {}
        for name in GENERATED_SECRET_NAMES:
            value = getattr(self, name.lower().removeprefix("mlops_")).get_secret_value()
            if value:
                found[name] = value
        return found


def secrets_file(home: Path) -> Path:
    return home / "secrets.env"


def load_settings(dotenv: Path = DOTENV, **overrides) -> Settings:
    """Settings from the environment, then `dotenv`, then MLOPS_HOME/secrets.env; a bad
    value is a PlatformError naming its variable."""
    try:
        home = Settings(_env_file=_checked(dotenv), **overrides).home
        stored = secrets_file(home)
        # pydantic-settings lets a later file win; the environment wins over both.
        return Settings(_env_file=(_checked(stored), _checked(dotenv)), **overrides)
    except ValidationError as error:
        raise PlatformError(_one_line(error)) from None


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    known = Settings.model_fields.get(field)
    # A client's own variable (no prefix) keeps its name.
    name = (field.upper() if known.validation_alias else f"MLOPS_{field.upper()}") if known else field
    problem = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{name}: {problem}{more}"


def _checked(path: Path) -> Path:
    """The path of a KEY=VALUE file, once every line of it parses (dotenv skips bad ones)."""
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        return path
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise PlatformError(f"{path}:{binding.original.line} is not a KEY=VALUE line")
    return path


_current: Settings | None = None


def process_settings() -> Settings:
    """This process's settings, read at the first call; an entry point may `use` others."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def use(settings: Settings | None) -> None:
    """Make `settings` this process's (None: read them again at the next call)."""
    global _current
    _current = settings
