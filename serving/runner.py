"""Assemble the server for one model and run it with uvicorn until SIGTERM or SIGINT."""

import logging
import os
import socket
import sys

import uvicorn
from mlflow.tracking import MlflowClient
from pydantic import SecretStr
from uvicorn.protocols.http import httptools_impl

from infra.errors import PlatformError
from infra.settings import Settings
from monitoring.traffic import TrafficWriter, open_files
from serving.app import Limits, create_app
from serving.batching import Batcher
from serving.model import ChallengerWatcher, ChampionWatcher
from serving.overload import DropUvicornRefusals, Overload, connection_refusal
from serving.shadow import Shadow


def serve_token(settings: Settings) -> str | None:
    """The bearer token /predict and /feedback need: required in the full profile, optional
    (MLOPS_SERVE_TOKEN) in the local one."""
    token = settings.serve_token.get_secret_value() or None
    if token is None and settings.profile == "full":
        raise PlatformError("the full profile's serve token MLOPS_SERVE_TOKEN is not set; "
                            "`mlops up --profile full` generates it into MLOPS_HOME/secrets.env")
    return token


def build_app(model: str, settings: Settings, overload: Overload):
    writer = TrafficWriter(open_files(settings.traffic_base), model, settings.traffic_flush_s,
                           settings.traffic_flush_rows, settings.traffic_max_rows,
                           settings.traffic_backoff_max_s)
    watcher = ChampionWatcher(MlflowClient(), model, settings.serve_reload_s)
    shadow = Shadow(ChallengerWatcher(MlflowClient(), model, settings.serve_reload_s), writer,
                    wait_s=settings.serve_shadow_wait_ms / 1000,
                    max_records=settings.serve_shadow_max_records)
    batcher = Batcher(watcher, writer, wait_s=settings.serve_batch_wait_ms / 1000,
                      max_records=settings.serve_max_records,
                      remembered=settings.serve_feedback_ids,
                      max_queued_records=settings.serve_max_queued_records, shadow=shadow)
    limits = Limits(settings.serve_max_records, settings.serve_max_body_bytes)
    return create_app(watcher, writer, batcher, limits, serve_token(settings), overload)


def listen(host: str, port: int) -> socket.socket:
    """Bind first, so a port in use is one clear error before anything starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run(model: str, settings: Settings, sock: socket.socket) -> None:
    """Serve until SIGTERM/SIGINT; uvicorn then finishes open requests and the app's
    lifespan writes the buffered traffic."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overload = Overload(settings.serve_max_in_flight)
    app = build_app(model, settings, overload)
    # Beyond limit_concurrency uvicorn answers with the function of this name; ours adds
    # Retry-After and logs the episode once (tests/serving/test_serving_guard.py checks both).
    httptools_impl.service_unavailable = connection_refusal(
        overload, settings.serve_max_connections, settings.serve_max_body_bytes)
    logging.getLogger("uvicorn.error").addFilter(DropUvicornRefusals())
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="info", timeout_graceful_shutdown=30,
                            limit_concurrency=settings.serve_max_connections,
                            timeout_keep_alive=settings.serve_keep_alive_s)
    uvicorn.Server(config).run(sockets=[sock])


def command(model: str, sock: socket.socket) -> list[str]:
    """How `mlops serve` starts the server on a socket it bound: `python -m serving`, which
    reads its settings from its environment only."""
    os.set_inheritable(sock.fileno(), True)
    return [sys.executable, "-m", "serving", model, "--fd", str(sock.fileno()), "--environment-only"]


# The serving process's MLflow user and S3 keys: the platform passes them under the clients'
# own variables (MLFLOW_TRACKING_PASSWORD, AWS_*); the bearer token goes in as itself.
_UNDER_NATIVE_NAMES = ("MLOPS_SERVE_MLFLOW_PASSWORD", "MLOPS_SERVE_AWS_ACCESS_KEY_ID",
                       "MLOPS_SERVE_AWS_SECRET_ACCESS_KEY")


def settings_environment(settings: Settings) -> dict[str, str]:
    """The serving and traffic settings, as the variables a serving process reads them from."""
    found = {"MLOPS_PROFILE": settings.profile, "MLOPS_TRAFFIC_URI": settings.traffic_base}
    for name, value in settings:
        variable = f"MLOPS_{name.upper()}"
        if not name.startswith(("serve_", "traffic_")) or value is None or variable in _UNDER_NATIVE_NAMES:
            continue  # these credentials go in under the clients' own names
        found.setdefault(variable, value.get_secret_value() if isinstance(value, SecretStr) else str(value))
    return found
