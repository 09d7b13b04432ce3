"""The platform as data: which services a profile runs and where clients find them.

Both profiles run the same MLflow, Prefect and runner services; what differs (stores,
authentication, extra services) is passed in as data. Describing a platform touches no
disk: the folders and files a service needs are listed on it, and `up` makes them.
"""

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import PlatformError
from infra.services import Service, is_healthy, venv_bin

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVIDENTLY = "evidently"
# Evidently's UI reads everything without authentication (its token guards writes only), so
# it listens on this machine only, whatever MLOPS_HOST says.
EVIDENTLY_HOST = "127.0.0.1"
LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"
# MLflow's client retries a failed request 7 times over ~4 minutes, Prefect's 5 times over
# ~1 minute: a server that stopped would hold a training that long at every call. Three
# tries (~10 s for MLflow, ~15 s for Prefect) ride out a blip, and a stopped server ends
# the training soon, in one line (the study is kept and resumed).
CLIENT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                  "PREFECT_CLIENT_MAX_RETRIES": "3"}
# Every process that runs flow runs (runner, workers, the CLI) beats this often; an
# automation (flows/heartbeats.py) crashes a run whose beats stopped. 30 s is Prefect's
# minimum (its default is 180 s).
HEARTBEAT_SECONDS = 30
FLOW_HEARTBEATS = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
# A client of the platform that reaches Prefect with no API address fails with Prefect's "No
# Prefect API URL provided", instead of starting a temporary Prefect server of its own (20 s,
# a database of its own, and nothing lands where the team looks). Prefect's default profile
# allows that temporary server.
NO_TEMPORARY_SERVER = {"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"}
# MLflow sends usage records (what was logged, which flavors, the UI's clicks through the
# server) to mlflow-telemetry.io unless told not to; a team's platform sends nothing out.
# Prefect's server analytics and Evidently's telemetry are off where those servers start.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true"}
# Our own progress names the run once; MLflow would print a link per trial run, and a
# progress bar per artifact; and it would send usage records out.
QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
         **NO_TELEMETRY}


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
    details: Mapping[str, object] = field(default_factory=dict)
    # Called by `up` before each wave of services starts (databases, the bucket).
    before_wave: Callable[[int], None] | None = None
    # What a serving process is given instead of the clients' variables (full profile: a
    # user that reads models, keys that write traffic); empty: the clients' own.
    serve_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def evidently_url(self) -> str:
        """Evidently's UI, where checks add their snapshots; empty when it has none."""
        return next((s.url for s in self.services if s.name == EVIDENTLY), "")

    def client_environment(self) -> dict[str, str]:
        """The variables MLflow, Prefect and boto3 clients (and our flows) read to use it."""
        evidently = {"MLOPS_EVIDENTLY_URL": self.evidently_url} if self.evidently_url else {}
        return {"MLFLOW_TRACKING_URI": self.mlflow_url, "PREFECT_API_URL": self.prefect_api_url,
                **evidently, **self.client_env}

    def state(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "mlflow_url": self.mlflow_url,
            "prefect_url": self.prefect_url,
            **({"evidently_url": self.evidently_url} if self.evidently_url else {}),
            **self.details,
            "services": {s.name: {"url": s.url, "port": s.port} for s in self.services},
        }


@dataclass(frozen=True)
class ServerOptions:
    """What a profile adds to a shared server description."""

    env: Mapping[str, str] = field(default_factory=dict)
    argv: tuple[str, ...] = ()
    unset_env: tuple[str, ...] = ()
    files: tuple[tuple[Path, str], ...] = ()
    folders: tuple[Path, ...] = ()
    wave: int = 0
    prepare: Callable[[], None] | None = None  # run just before the process starts


def mlflow_service(host: str, port: int, options: ServerOptions) -> Service:
    """The tracking server and registry; its stores come through `options.env`
    (MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION), so no secret is in argv.
    `mlflow server`'s options, served in one process (infra/mlflow_server.py)."""
    url = f"http://{host}:{port}"
    return Service(
        name="mlflow",
        argv=(
            sys.executable, "-m", "infra.mlflow_server", *options.argv,
            "--host", host, "--port", str(port),
            "--workers", "1",  # more add ~40 ms to every request on a reused connection
            "--serve-artifacts",
        ),
        host=host, port=port, url=url, health_url=f"{url}/health",
        port_variable="MLOPS_MLFLOW_PORT",
        # The job runner serves GenAI features we do not use; it starts 8 processes.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **NO_TELEMETRY, **options.env},
        unset_env=("MLFLOW_TRACKING_URI", *options.unset_env),
        files=options.files, folders=options.folders, wave=options.wave,
        prepare=options.prepare,
    )


def prefect_home(home: Path) -> Path:
    """The Prefect server's PREFECT_HOME under MLOPS_HOME: its SQLite database, dead letters."""
    return home / "prefect"


def prefect_service(home: Path, host: str, port: int, options: ServerOptions) -> Service:
    url = f"http://{host}:{port}"
    return Service(
        name="prefect",
        argv=(sys.executable, "-m", "infra.prefect_server", "--host", host, "--port", str(port)),
        host=host, port=port, url=url, health_url=f"{url}/api/health",
        port_variable="MLOPS_PREFECT_PORT",
        env={
            "PREFECT_HOME": str(prefect_home(home)),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            # The UI calls the API from the browser: without this it calls port 4200.
            "PREFECT_UI_API_URL": f"{url}/api",
            # Links in automations' messages (the `ui_url` filter) point here.
            "PREFECT_UI_URL": url,
            # Only the UI's own page may call the API from a browser, and a state change
            # needs the token Prefect's UI and clients fetch first (a page elsewhere cannot).
            "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": url,
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
            # Concurrency slots (promotion locks, the retrain deployment's) are held under
            # leases; in memory, Prefect's default, a restart loses them and their slots stay
            # taken for good. On disk, a lease outlives the restart and expires as it should.
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASES_ON_DISK,
            **options.env,
        },
        unset_env=("PREFECT_API_URL", "PREFECT_PROFILE", *options.unset_env),
        wave=options.wave,
        prepare=options.prepare,
    )


def evidently_service(home: Path, port: int, secret: str = "", wave: int = 0) -> Service:
    """Evidently's UI: a project per model, a snapshot per check, dashboards over time. With
    `secret`, writes need it (header `evidently-secret`); it goes in the environment, not argv."""
    url = f"http://{EVIDENTLY_HOST}:{port}"
    workspace = home / "evidently"
    return Service(
        name=EVIDENTLY,
        argv=(venv_bin("evidently"), "ui", "--workspace", str(workspace),
              "--host", EVIDENTLY_HOST, "--port", str(port)),
        host=EVIDENTLY_HOST, port=port, url=url, health_url=f"{url}/api/version",
        port_variable="MLOPS_EVIDENTLY_PORT",
        # DO_NOT_TRACK: its usage telemetry would dial out on every request.
        env={"DO_NOT_TRACK": "1", **({"EVIDENTLY_SECRET": secret} if secret else {})},
        unset_env=() if secret else ("EVIDENTLY_SECRET",),
        folders=(workspace,), wave=wave,
    )


def runner_service(home: Path, host: str, port: int, client_env: Mapping[str, str],
                   wave: int = 1, spawn_early: bool = False) -> Service:
    """The deployment runner: serves train, monitor and retrain, and runs their flow runs.
    Spawned early, it imports (3-5 s of CPU) while the servers start, then waits for them."""
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
        spawn_early=spawn_early,
        env={
            **client_env,
            "MLOPS_HOME": str(home),
            **QUIET,
            **CLIENT_RETRIES,
            **FLOW_HEARTBEATS,
            **NO_TEMPORARY_SERVER,
            # Off: its /shutdown would answer anyone; flows.serve answers GET /health itself
            # on this host and port.
            "PREFECT_RUNNER_SERVER_ENABLE": "false",
            # How often the runner looks for runs to start (one small query a poll): the
            # default 10 s was most of the latency from a drift event to its retraining
            # running; at 1 s the wait for the next poll is 0.5 s on average.
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            # The runner's health check allows poll frequency x this without a poll: 6 s, as
            # before, so a runner slowed by a busy machine is not reported down.
            "PREFECT_RUNNER_SERVER_MISSED_POLLS_TOLERANCE": "6",
            "PREFECT_RUNNER_SERVER_HOST": host,
            "PREFECT_RUNNER_SERVER_PORT": str(port),
        },
    )


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
