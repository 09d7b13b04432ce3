"""The full profile: PostgreSQL for MLflow, Prefect and Optuna; S3 for artifacts, data and
live traffic; authentication on every service; a work pool for scale-out."""

from collections.abc import Mapping

from infra import database, objectstore
from infra.platform import Platform, runner_service
from infra.secrets import SECRET_NAMES, write_private
from infra.services import Service, venv_bin
from infra.settings import Settings


def full_platform(settings: Settings, ports: Mapping[str, int], secrets: Mapping[str, str]) -> Platform:
    home = settings.home.resolve()
    host = settings.host
    mlflow_url = f"http://{host}:{ports['mlflow']}"
    prefect_url = f"http://{host}:{ports['prefect']}"
    # SQLAlchemy 2.1 takes a bare postgresql:// to mean psycopg 3; we ship psycopg2.
    names = {store: database.database_name(settings.database_prefix, store) for store in database.STORES}
    server = settings.database_url
    s3_endpoint = settings.s3_endpoint or f"http://{host}:{ports['s3']}"
    keys = {k: secrets[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    artifact_root = f"s3://{settings.bucket}/mlflow"
    auth_config = home / "mlflow" / "basic_auth.ini"

    services: list[Service] = []
    if not settings.s3_endpoint:
        services.append(objectstore.seaweedfs_service(
            home, host, ports["s3"], keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]))
    services.append(Service(
        name="mlflow",
        argv=(
            venv_bin("mlflow"), "server", "--app-name", "basic-auth",
            "--host", host, "--port", str(ports["mlflow"]),
            "--workers", "1",  # more add ~40 ms to every request on a reused connection
            "--serve-artifacts",
        ),
        host=host, port=ports["mlflow"], url=mlflow_url, health_url=f"{mlflow_url}/health",
        port_variable="MLOPS_MLFLOW_PORT",
        env={
            # Through the environment, not argv: a database password stays out of `ps`.
            "MLFLOW_BACKEND_STORE_URI": database.database_uri(server, names["mlflow"], driver="psycopg2"),
            "MLFLOW_ARTIFACTS_DESTINATION": artifact_root,
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            **keys,
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
            "MLFLOW_AUTH_ADMIN_USERNAME": secrets["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": secrets["MLFLOW_TRACKING_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.get("MLFLOW_FLASK_SERVER_SECRET_KEY", ""),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        unset_env=("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
        wave=1,
    ))
    services.append(Service(
        name="prefect",
        argv=(venv_bin("prefect"), "server", "start", "--host", host, "--port", str(ports["prefect"])),
        host=host, port=ports["prefect"], url=prefect_url, health_url=f"{prefect_url}/api/health",
        port_variable="MLOPS_PREFECT_PORT",
        env={
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": database.database_uri(
                server, names["prefect"], driver="asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": secrets["PREFECT_API_AUTH_STRING"],
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_UI_API_URL": f"{prefect_url}/api",
        },
        unset_env=("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_API_AUTH_STRING"),
        wave=1,
    ))
    client_env = {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "PREFECT_API_URL": f"{prefect_url}/api",
        **{name: secrets[name] for name in SECRET_NAMES},
        "AWS_ENDPOINT_URL": s3_endpoint,  # boto3 reads it natively
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLOPS_OPTUNA_STORAGE": database.database_uri(server, names["optuna"], driver="psycopg2"),
        "MLOPS_TRAFFIC_URI": f"s3://{settings.bucket}/traffic",
        "MLOPS_WORK_POOL": settings.work_pool,
    }
    services.append(runner_service(home, host, ports["runner"], client_env, wave=2))

    def before_wave(wave: int) -> None:
        if wave == 0:  # before anything starts: a database that does not answer stops `up` here
            database.ensure_databases(server, list(names.values()))
            auth_database = database.database_uri(server, names["mlflow_auth"], driver="psycopg2")
            write_private(auth_config, _auth_config(auth_database))
        elif wave == 1:  # S3 answers by now; MLflow writes artifacts into the bucket
            objectstore.ensure_bucket(s3_endpoint, settings.bucket, keys["AWS_ACCESS_KEY_ID"],
                                      keys["AWS_SECRET_ACCESS_KEY"])

    details = {
        "artifact_root": artifact_root,
        "s3_endpoint": s3_endpoint,
        "database": database.redact(server),
        # What later commands need to find the same stores, whatever their own settings say.
        "settings": {
            "database_url": database.redact(server),
            "database_prefix": settings.database_prefix,
            "s3_endpoint": settings.s3_endpoint,
            "bucket": settings.bucket,
            "work_pool": settings.work_pool,
        },
    }
    return Platform("full", home, mlflow_url, prefect_url, tuple(services),
                    client_env=client_env, details=details, before_wave=before_wave)


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


def worker_argv(pool: str) -> list[str]:
    return [venv_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process"]
