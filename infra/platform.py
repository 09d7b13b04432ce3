"""The platform as a whole: which services a profile runs and where clients find them."""

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import PlatformError
from infra.services import Service, is_healthy, read_state, venv_bin
from infra.settings import Settings


@dataclass(frozen=True)
class Platform:
    profile: str
    home: Path
    mlflow_url: str
    prefect_url: str
    services: tuple[Service, ...]
    # What clients need beyond the two addresses (full profile: secrets, S3, study storage).
    client_env: Mapping[str, str] = field(default_factory=dict)
    # Shown by `mlops status`: artifact root, S3 endpoint, database server (no secrets).
    details: Mapping[str, str] = field(default_factory=dict)
    # Called before each wave of services starts (databases, configs, the bucket).
    before_wave: Callable[[int], None] | None = None

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    def client_environment(self) -> dict[str, str]:
        """The native variables MLflow, Prefect and boto3 clients read to use this platform."""
        return {"MLFLOW_TRACKING_URI": self.mlflow_url, "PREFECT_API_URL": self.prefect_api_url,
                **self.client_env}

    def state(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "mlflow_url": self.mlflow_url,
            "prefect_url": self.prefect_url,
            **self.details,
            "services": {s.name: {"url": s.url, "port": s.port} for s in self.services},
        }


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def runner_service(home: Path, host: str, port: int, client_env: Mapping[str, str],
                   wave: int = 1) -> Service:
    """The deployment runner: serves train, monitor and retrain, and runs their flow runs."""
    url = f"http://{host}:{port}"
    return Service(
        name="runner",
        argv=(sys.executable, "-m", "flows.serve"),
        host=host,
        port=port,
        url=url,
        health_url=f"{url}/health",
        port_variable="MLOPS_RUNNER_PORT",
        marker="flows.serve",
        cwd=PROJECT_ROOT,
        wave=wave,  # it registers deployments with Prefect, so Prefect must answer first
        env={
            **client_env,
            "MLOPS_HOME": str(home),
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PREFECT_RUNNER_SERVER_ENABLE": "true",
            # How often the runner looks for runs to start: the default 10 s is most of the
            # latency from a drift event to its retraining running.
            "PREFECT_RUNNER_POLL_FREQUENCY": "3",
            "PREFECT_RUNNER_SERVER_HOST": host,
            "PREFECT_RUNNER_SERVER_PORT": str(port),
        },
    )


def local_platform(
    home: Path, host: str, mlflow_port: int, prefect_port: int, runner_port: int | None = None
) -> Platform:
    """SQLite backends and local artifacts, everything under `home`."""
    home = home.resolve()
    mlflow_url = f"http://{host}:{mlflow_port}"
    prefect_url = f"http://{host}:{prefect_port}"
    mlflow = Service(
        name="mlflow",
        argv=(
            venv_bin("mlflow"), "server",
            "--host", host, "--port", str(mlflow_port),
            # One worker: more add ~40 ms to every request on a reused connection.
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination", str(home / "mlflow" / "artifacts"),
            "--serve-artifacts",
        ),
        host=host,
        port=mlflow_port,
        url=mlflow_url,
        health_url=f"{mlflow_url}/health",
        port_variable="MLOPS_MLFLOW_PORT",
        # The job runner serves GenAI features we do not use; it starts 8 processes.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        unset_env=("MLFLOW_TRACKING_URI",),
    )
    prefect = Service(
        name="prefect",
        argv=(venv_bin("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)),
        host=host,
        port=prefect_port,
        url=prefect_url,
        health_url=f"{prefect_url}/api/health",
        port_variable="MLOPS_PREFECT_PORT",
        env={
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            # The UI calls the API from the browser: without this it calls port 4200.
            "PREFECT_UI_API_URL": f"{prefect_url}/api",
        },
        unset_env=("PREFECT_API_URL", "PREFECT_PROFILE"),
    )
    (home / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    services = (mlflow, prefect)
    if runner_port is not None:
        client_env = {"MLFLOW_TRACKING_URI": mlflow_url, "PREFECT_API_URL": f"{prefect_url}/api"}
        services += (runner_service(home, host, runner_port, client_env),)
    return Platform("local", home, mlflow_url, prefect_url, services)


def platform_from_settings(
    settings: Settings, profile: str | None = None, generate_secrets: bool = False
) -> Platform:
    """The platform `up` would start, or the one a previous `up` recorded in MLOPS_HOME."""
    state = read_state(settings.home) or {}
    chosen = profile or state.get("profile") or settings.profile
    recorded = {name: svc.get("port") for name, svc in state.get("services", {}).items()}
    ports = {
        "mlflow": recorded.get("mlflow") or settings.mlflow_port,
        "prefect": recorded.get("prefect") or settings.prefect_port,
        "runner": recorded.get("runner") or settings.runner_port,
        "s3": recorded.get("s3") or settings.s3_port,
    }
    if chosen == "local":
        return local_platform(settings.home, settings.host, ports["mlflow"], ports["prefect"],
                              ports["runner"])
    if chosen == "full":
        from infra import secrets
        from infra.full import full_platform, settings_from_state

        settings = settings_from_state(settings, state) if state.get("profile") == "full" else settings
        if generate_secrets:
            found = secrets.ensure(settings.home)
        else:
            found = secrets.resolve(settings.home)
            missing = [n for n in secrets.SECRET_NAMES if n not in found]
            if missing:
                raise PlatformError(
                    f"the full profile's secrets ({', '.join(missing)}) are not in the environment, "
                    f".env or {secrets.secrets_file(settings.home)}; start it with `mlops up --profile full`"
                )
        return full_platform(settings, ports, found)
    raise PlatformError(f"unknown profile '{chosen}'; use local or full")


def require_running(mlflow_tracking_uri: str, prefect_api_url: str | None = None) -> None:
    """Fail with one actionable line unless MLflow (and Prefect, when given) answers."""
    if not is_healthy(f"{mlflow_tracking_uri.rstrip('/')}/health"):
        raise PlatformError(
            f"the platform is not running: MLflow does not answer at {mlflow_tracking_uri}; "
            "start it with `mlops up`"
        )
    if prefect_api_url is not None and not is_healthy(f"{prefect_api_url.rstrip('/')}/health"):
        raise PlatformError(
            f"the platform is not running: Prefect does not answer at {prefect_api_url}; "
            "start it with `mlops up`"
        )
