"""The runner starts beside Prefect and MLflow (`up` spawns it with them) and waits for both."""

import socket
import subprocess
import sys

import mlflow
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.serve import wait_for_servers
from infra.errors import PlatformError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def answering(tmp_path):
    """A server answering /health with 200 (python's http.server, serving a file of that name)."""
    (tmp_path / "health").write_text("ok")
    port = _closed_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"http://127.0.0.1:{port}", port
    server.kill()
    server.wait()


def test_the_runner_waits_until_prefect_and_mlflow_answer(answering, monkeypatch):
    """Given Prefect's and MLflow's addresses on a server started a moment ago (it may not
    answer yet), the wait returns once both answer."""
    url, _ = answering
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: url)
    with temporary_settings({PREFECT_API_URL: f"{url}/"}):
        wait_for_servers(timeout_s=30)


def test_a_server_that_never_answers_ends_the_wait_in_one_line_naming_it(monkeypatch):
    address = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: address)
    with temporary_settings({PREFECT_API_URL: f"{address}/api"}):
        with pytest.raises(PlatformError) as stopped:
            wait_for_servers(timeout_s=0.5)

    assert str(stopped.value) == f"Prefect did not answer at {address}/api/health within 0.5 s"
