"""`mlflow server` in one process (infra/mlflow_server.py): MLflow's own command up to the
child it would start, which is served here instead."""

import json
import os
import signal
import subprocess
import sys

import pytest
from network import free_port
from polling import wait_for

from infra import mlflow_server
from infra.services import is_healthy

# Run in a child: MLflow's command sets process-wide state (its tracking URI, its stores).
RECORD_WHAT_IT_WOULD_START = """
import json, sys
from infra import mlflow_server

def record(cmd, extra_env=None, **_):
    print(json.dumps({"cmd": list(cmd), "env": dict(extra_env or {})}))
    sys.exit(0)

mlflow_server.serve_here = record
mlflow_server.main(sys.argv[1:])
"""


def test_mlflow_server_hands_its_child_uvicorn_and_the_stores_through_the_environment(tmp_path):
    """Given the installed MLflow's `server` command, when it gets as far as starting its
    server, then what it would start is `python -m uvicorn ...` and the stores it opened travel
    in the environment it gives that process: what serve_here runs in this process."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)

    done = subprocess.run(
        [sys.executable, "-c", RECORD_WHAT_IT_WOULD_START, "--backend-store-uri", store,
         "--host", "127.0.0.1", "--port", "5000", "--workers", "1", "--serve-artifacts",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    started = json.loads(done.stdout.strip().splitlines()[-1])
    cmd, env = started["cmd"], started["env"]
    assert tuple(cmd[1:3]) == mlflow_server.UVICORN and cmd[-1] == "mlflow.server.fastapi_app:app"
    assert env["_MLFLOW_SERVER_FILE_STORE"] == store
    assert env["_MLFLOW_SERVER_SERVE_ARTIFACTS"] == "true"


def test_another_kind_of_server_is_refused_in_one_line():
    with pytest.raises(RuntimeError, match="would start .*gunicorn.*, not uvicorn"):
        mlflow_server.serve_here([sys.executable, "-m", "gunicorn", "app"], {})


def test_the_server_answers_from_one_process_and_stops_on_sigterm(tmp_path):
    """Given the command started as `mlops up` starts it, then MLflow answers with no child
    process beside it, and SIGTERM (what `mlops down` sends) stops it cleanly."""
    port = free_port()
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "mlflow.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "infra.mlflow_server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--serve-artifacts", "--artifacts-destination", str(tmp_path / "art")],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        assert wait_for(lambda: is_healthy(f"http://127.0.0.1:{port}/health"), timeout_s=120,
                        interval_s=0.2), log.read_text()[-3000:]
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True)
        assert children.stdout.split() == []
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then ends by the signal it caught (as a signalled process does).
        assert server.wait(timeout=30) == -signal.SIGTERM
        assert "Application shutdown complete" in log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
