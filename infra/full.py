"""The full profile: PostgreSQL for MLflow, Prefect and Optuna; S3 for artifacts, data and
live traffic; authentication on every service; a work pool for scale-out."""

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra import accounts, database, objectstore
from infra.platform import (
    CLIENT_RETRIES,
    FLOW_HEARTBEATS,
    NO_TEMPORARY_SERVER,
    Platform,
    ServerOptions,
    evidently_service,
    mlflow_service,
    prefect_service,
    runner_service,
)
from infra.services import Service
from infra.settings import SECRET_NAMES, SERVE_MLFLOW_USERNAME, Settings


@dataclass(frozen=True)
class Stores:
    """Where the full profile keeps everything: databases, the S3 endpoint and bucket."""

    server: str  # the PostgreSQL server URL, naming no database: the admin connection
    databases: Mapping[str, str]  # store -> database name, also the name of its role
    passwords: Mapping[str, str]  # store -> its role's password
    s3_endpoint: str
    bucket: str

    def uri(self, store: str, driver: str) -> str:
        """How a service reaches its store: as the store's own role, never the admin."""
        return database.role_uri(self.server, self.databases[store], self.passwords[store], driver)

    def roles(self) -> dict[str, str]:
        return {self.databases[store]: self.passwords[store] for store in self.databases}

    @property
    def traffic_prefix(self) -> str:
        return "traffic"

    @property
    def data_prefix(self) -> str:
        return "data"

    @property
    def artifact_root(self) -> str:
        return f"s3://{self.bucket}/mlflow"


def full_platform(settings: Settings, ports: Mapping[str, int], secrets: Mapping[str, str]) -> Platform:
    home, host = settings.home.resolve(), settings.host
    stores = Stores(
        server=settings.database_url,
        databases={s: database.database_name(settings.database_prefix, s) for s in database.STORES},
        passwords={s: secrets[f"MLOPS_DATABASE_PASSWORD_{s.upper()}"] for s in database.STORES},
        s3_endpoint=settings.s3_endpoint or f"http://{host}:{ports['s3']}",
        bucket=settings.bucket,
    )
    keys = {k: secrets[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    services: list[Service] = []
    if not settings.s3_endpoint:
        serve_keys = objectstore.writer_identity(
            SERVE_MLFLOW_USERNAME, secrets["MLOPS_SERVE_AWS_ACCESS_KEY_ID"],
            secrets["MLOPS_SERVE_AWS_SECRET_ACCESS_KEY"], stores.bucket, stores.traffic_prefix)
        services.append(objectstore.seaweedfs_service(
            home, host, ports["s3"], keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"], [serve_keys]))
    mlflow = mlflow_service(host, ports["mlflow"], _mlflow_options(settings, stores, secrets))
    prefect = prefect_service(home, host, ports["prefect"], _prefect_options(stores, secrets))
    # Its workspace stays on this machine's disk under MLOPS_HOME: nothing in it is shared.
    evidently = evidently_service(home, ports["evidently"], secrets["EVIDENTLY_SECRET"], wave=1)
    client_env = {**_client_env(settings, stores, secrets, mlflow.url, prefect.url),
                  "MLOPS_EVIDENTLY_URL": evidently.url, "EVIDENTLY_SECRET": secrets["EVIDENTLY_SECRET"]}
    services += [mlflow, prefect, evidently, runner_service(home, host, ports["runner"], client_env, wave=2),
                 worker_service(home, host, ports.get("worker", settings.worker_port), client_env,
                                settings.work_pool, wave=2)]
    return Platform("full", home, mlflow.url, prefect.url, tuple(services),
                    client_env=client_env, details=_details(settings, stores),
                    before_wave=_before_wave(stores, secrets, mlflow.url),
                    serve_env=_serve_env(stores, secrets, mlflow.url))


def _before_wave(stores: Stores, secrets: Mapping[str, str], mlflow_url: str):
    keys = (secrets["AWS_ACCESS_KEY_ID"], secrets["AWS_SECRET_ACCESS_KEY"])
    admin = (secrets["MLFLOW_TRACKING_USERNAME"], secrets["MLFLOW_TRACKING_PASSWORD"])

    def before_wave(wave: int) -> None:
        if wave == 0:  # before anything starts: a database that does not answer stops `up` here
            database.ensure_databases(stores.server, list(stores.databases.values()))
            database.ensure_roles(stores.server, stores.roles())
        elif wave == 1:  # S3 answers by now; MLflow writes artifacts into the bucket
            objectstore.ensure_bucket(stores.s3_endpoint, stores.bucket, *keys)
        elif wave == 2:  # MLflow answers: the user `mlops serve` reads models as
            accounts.ensure_mlflow_user(mlflow_url, admin, SERVE_MLFLOW_USERNAME,
                                        secrets["MLOPS_SERVE_MLFLOW_PASSWORD"])

    return before_wave


def _serve_env(stores: Stores, secrets: Mapping[str, str], mlflow_url: str) -> dict[str, str]:
    """All a serving process gets: MLflow as a user that reads models, S3 keys that can only
    write live traffic. No Prefect, database or admin credential."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": SERVE_MLFLOW_USERNAME,
        "MLFLOW_TRACKING_PASSWORD": secrets["MLOPS_SERVE_MLFLOW_PASSWORD"],
        "AWS_ENDPOINT_URL": stores.s3_endpoint,
        "AWS_ACCESS_KEY_ID": secrets["MLOPS_SERVE_AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": secrets["MLOPS_SERVE_AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLOPS_PROFILE": "full",
        "MLOPS_TRAFFIC_URI": f"s3://{stores.bucket}/{stores.traffic_prefix}",
    }


def _mlflow_options(settings: Settings, stores: Stores, secrets: Mapping[str, str]) -> ServerOptions:
    auth_config = settings.home.resolve() / "mlflow" / "basic_auth.ini"
    return ServerOptions(
        argv=("--app-name", "basic-auth"),
        env={
            # Through the environment, not argv: a database password stays out of `ps`.
            "MLFLOW_BACKEND_STORE_URI": stores.uri("mlflow", "psycopg2"),
            "MLFLOW_ARTIFACTS_DESTINATION": stores.artifact_root,
            "MLFLOW_S3_ENDPOINT_URL": stores.s3_endpoint,
            **{k: secrets[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
            "MLFLOW_AUTH_ADMIN_USERNAME": secrets["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": secrets["MLFLOW_TRACKING_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.get("MLFLOW_FLASK_SERVER_SECRET_KEY", ""),
        },
        unset_env=("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
        files=((auth_config, _auth_config(stores.uri("mlflow_auth", "psycopg2"))),),
        wave=1,
    )


def _prefect_options(stores: Stores, secrets: Mapping[str, str]) -> ServerOptions:
    return ServerOptions(
        env={
            # SQLAlchemy 2.1 takes a bare postgresql:// to mean psycopg 3; Prefect wants asyncpg.
            "PREFECT_API_DATABASE_CONNECTION_URL": stores.uri("prefect", "asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": secrets["PREFECT_API_AUTH_STRING"],
        },
        unset_env=("PREFECT_API_AUTH_STRING",),
        wave=1,
    )


def _client_env(settings: Settings, stores: Stores, secrets: Mapping[str, str],
                mlflow_url: str, prefect_url: str) -> dict[str, str]:
    """What the runner, workers and `mlops` commands need to use this platform."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "PREFECT_API_URL": f"{prefect_url}/api",
        **{name: secrets[name] for name in SECRET_NAMES},
        "AWS_ENDPOINT_URL": stores.s3_endpoint,  # boto3 reads it natively
        "MLFLOW_S3_ENDPOINT_URL": stores.s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLOPS_PROFILE": "full",
        "MLOPS_OPTUNA_STORAGE": stores.uri("optuna", "psycopg2"),
        "MLOPS_TRAFFIC_URI": f"s3://{stores.bucket}/{stores.traffic_prefix}",
        "MLOPS_DATA_URI": f"s3://{stores.bucket}/{stores.data_prefix}",
        "MLOPS_WORK_POOL": settings.work_pool,
    }


def _details(settings: Settings, stores: Stores) -> dict[str, object]:
    return {
        "artifact_root": stores.artifact_root,
        "s3_endpoint": stores.s3_endpoint,
        "database": database.redact(stores.server),
        # What later commands need to find the same stores, whatever their own settings say.
        "settings": {
            "database_url": database.redact(stores.server),
            "database_prefix": settings.database_prefix,
            "s3_endpoint": settings.s3_endpoint,
            "bucket": settings.bucket,
            "work_pool": settings.work_pool,
        },
    }


def settings_from_state(settings: Settings, state: Mapping) -> Settings:
    """The settings a running full platform was started with. A database password is never
    recorded: when the recorded URL had one, this process's own setting supplies it."""
    recorded = dict(state.get("settings") or {})
    if "***" in recorded.get("database_url", ""):
        recorded.pop("database_url")
    return settings.model_copy(update=recorded)


def _auth_config(database_uri: str) -> str:
    # The admin user comes from MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD in the server's
    # environment; other users read by default and write only where granted.
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        # configparser reads % as interpolation: a percent-encoded password needs %%.
        f"database_uri = {database_uri.replace('%', '%%')}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # Checking a password (PBKDF2) on every request costs more than the request itself.
        "auth_cache_ttl_seconds = 60\n"
    )


def worker_command(pool: str) -> tuple[list[str], dict[str, str]]:
    """A process worker on the pool, and what it adds to its environment. Through this
    interpreter (`-m prefect`): a worker's own environment may have no `prefect` script."""
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    # Ask for work every 2 s rather than 10: a search batch waits for a worker to pick it up.
    return argv, {"PREFECT_WORKER_QUERY_SECONDS": "2", **CLIENT_RETRIES, **FLOW_HEARTBEATS,
                  **NO_TEMPORARY_SERVER}


def worker_service(home: Path, host: str, port: int, client_env: Mapping[str, str], pool: str,
                   wave: int = 2) -> Service:
    """This machine's own worker on the pool: the pool's deployments (train, monitor, retrain,
    predict, search batches) run here unless a worker elsewhere takes them first."""
    argv, env = worker_command(pool)
    url = f"http://{host}:{port}"
    return Service(
        name="worker",
        argv=(*argv, "--with-healthcheck"),
        host=host,
        port=port,
        url=url,
        health_url=f"{url}/health",
        port_variable="MLOPS_WORKER_PORT",
        marker="worker start",
        # Flow runs start in a temporary folder of their own (the deployments name no path).
        cwd=home,
        wave=wave,
        env={
            **client_env,
            **env,
            "MLOPS_HOME": str(home),
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PREFECT_WORKER_WEBSERVER_HOST": host,
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        },
    )
