"""The runner's health endpoint (infra/health.py) in process: it answers GET /health from a
check and changes nothing."""

import pytest
from network import free_port, http

from infra.health import serve_health


@pytest.fixture
def health():
    state = {"ok": True}
    port = free_port()
    server = serve_health("127.0.0.1", port, lambda: state["ok"])
    yield f"http://127.0.0.1:{port}", state
    server.shutdown()
    server.server_close()


def test_health_follows_the_check(health):
    url, state = health
    assert http(f"{url}/health")[0] == 200
    state["ok"] = False
    assert http(f"{url}/health")[0] == 503


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/shutdown", 501), ("POST", "/health", 501), ("GET", "/run_count", 404),
    ("GET", "/", 404), ("DELETE", "/health", 501),
])
def test_nothing_but_health_is_offered(health, method, path, status):
    url, _ = health
    assert http(f"{url}{path}", method)[0] == status
