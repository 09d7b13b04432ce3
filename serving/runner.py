"""Assemble the server for one model and run it with uvicorn until SIGTERM or SIGINT."""

import logging
import os
import socket
import sys

import uvicorn
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from infra.settings import SERVE_SECRET_NAMES, Settings
from monitoring.traffic import TrafficWriter, open_files
from serving.app import Limits, create_app
from serving.batching import Batcher
from serving.model import ChampionWatcher


def build_app(model: str, settings: Settings):
    writer = TrafficWriter(open_files(settings.traffic_base), model,
                           settings.traffic_flush_s, settings.traffic_flush_rows)
    watcher = ChampionWatcher(MlflowClient(), model, settings.serve_reload_s)
    batcher = Batcher(watcher, writer, wait_s=settings.serve_batch_wait_ms / 1000,
                      max_records=settings.serve_max_records,
                      remembered=settings.serve_feedback_ids)
    limits = Limits(settings.serve_max_records, settings.serve_max_body_bytes)
    return create_app(watcher, writer, batcher, limits)


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
    config = uvicorn.Config(build_app(model, settings), loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_level="info",
                            timeout_graceful_shutdown=30)
    uvicorn.Server(config).run(sockets=[sock])


def command(model: str, sock: socket.socket) -> list[str]:
    """How `mlops serve` starts the server on a socket it bound: `python -m serving`, which
    reads its settings from its environment only."""
    os.set_inheritable(sock.fileno(), True)
    return [sys.executable, "-m", "serving", model, "--fd", str(sock.fileno()), "--environment-only"]


def settings_environment(settings: Settings) -> dict[str, str]:
    """The serving and traffic settings, as the variables a serving process reads them from."""
    found = {"MLOPS_PROFILE": settings.profile, "MLOPS_TRAFFIC_URI": settings.traffic_base}
    for name, value in settings:
        variable = f"MLOPS_{name.upper()}"
        if not name.startswith(("serve_", "traffic_")) or value is None or variable in SERVE_SECRET_NAMES:
            continue  # the serving credentials go in under the clients' own names
        found.setdefault(variable, value.get_secret_value() if isinstance(value, SecretStr) else str(value))
    return found
