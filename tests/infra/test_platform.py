"""`mlops up | status | down` on the session's platform."""

import json
from pathlib import Path

import pytest
from network import http

from infra.clients import connection
from infra.settings import Settings

pytestmark = pytest.mark.integration


def test_status_json_reports_running_services(mlops, platform):
    done = mlops("status", "--json")

    status = json.loads(done.stdout)
    assert done.returncode == 0
    assert status["profile"] == "local"
    assert status["mlflow_url"] == platform.mlflow_url
    assert status["prefect_url"] == platform.prefect_url
    assert all(s["running"] for s in status["services"].values())
    assert set(status["services"]) == {"mlflow", "prefect", "runner", "evidently"}
    assert status["evidently_url"] == platform.evidently_url == status["services"]["evidently"]["url"]
    dropped = status["dropped_messages"]
    assert dropped["folder"] == str(platform.home / "prefect" / "dlq") and dropped["count"] >= 0


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def test_mlflow_sends_no_usage_records_from_the_servers_or_the_clients(platform, tmp_path):
    """Given the running platform, then its MLflow server and runner (which runs the flows)
    were started with MLflow's telemetry off, and so is every client `mlops` connects."""
    for name in ("mlflow", "runner"):
        pid = int((platform.home / "run" / f"{name}.pid").read_text().split()[0])
        assert _environment(pid).get("MLFLOW_DISABLE_TELEMETRY") == "true", name
    variables = connection(platform, Settings(home=tmp_path)).variables
    assert variables["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_no_client_of_the_platform_may_start_a_prefect_server_of_its_own(tmp_path):
    """Given the local platform's definition, then its runner (which runs the flows) is
    started, and every client `mlops` connects is pointed, refusing Prefect's temporary
    server (tests/infra/test_clients.py: what that does when no address is found)."""
    from infra.local import local_platform

    defined = local_platform(tmp_path, "127.0.0.1", 5001, 5002, 5003, 5004)
    [runner] = [service for service in defined.services if service.name == "runner"]
    assert runner.env["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] == "false"
    variables = connection(defined, Settings(home=tmp_path)).variables
    assert variables["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] == "false"


def test_up_twice_is_harmless(mlops, platform):
    done = mlops("up")

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("already running") == 4


def test_up_of_the_other_profile_says_what_runs_and_starts_nothing(mlops, platform):
    """Given the local profile running, `mlops up --profile full` in the same home ends in one
    line naming what runs and how to switch; the state and the processes stay the local ones."""
    state_before = (platform.home / "state.json").read_text()

    done = mlops("up", "--profile", "full")

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "the local profile is running" in done.stderr and "mlops down" in done.stderr
    assert (platform.home / "state.json").read_text() == state_before
    assert not (platform.home / "run" / "s3.pid").exists()
    assert all(s["running"] for s in json.loads(mlops("status", "--json").stdout)["services"].values())


def test_prefect_refuses_state_changes_without_a_csrf_token(platform):
    """Given a request from outside Prefect's UI and clients (no CSRF token), a state change
    is refused with 403; reading stays open, as the UI needs it."""
    api = platform.prefect_api_url
    body = b'{"name": "planted-by-a-stranger"}'

    status, _ = http(f"{api}/flows/", "POST", {"Content-Type": "application/json"}, body)
    read, _ = http(f"{api}/health")

    assert status == 403
    assert read == 200


def test_prefect_lets_only_its_own_ui_call_it_from_a_browser(platform):
    """Given a CORS preflight from another origin, Prefect does not allow it; from the UI's
    own origin it does."""
    api = platform.prefect_api_url
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}

    _, stranger = http(f"{api}/flows/filter", "OPTIONS", {**ask, "Origin": "http://evil.example"})
    _, own = http(f"{api}/flows/filter", "OPTIONS", {**ask, "Origin": platform.prefect_url})

    assert stranger.get("access-control-allow-origin") is None
    assert own.get("access-control-allow-origin") == platform.prefect_url


def test_a_non_loopback_host_needs_an_explicit_option(tmp_path):
    """Given MLOPS_HOST=0.0.0.0, `mlops up` refuses in one line and starts nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_HOST": "0.0.0.0"}
    done = subprocess.run([str(Path(sys.executable).parent / "mlops"), "up"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "MLOPS_HOST=0.0.0.0" in done.stderr and "--allow-remote" in done.stderr
    assert not (tmp_path / "home" / "run").exists()
