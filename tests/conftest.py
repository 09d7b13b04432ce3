"""Real servers, started once per test session by the same code as `mlops up`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # for the `synthetic` and `network` modules

from network import free_port  # noqa: E402

MLOPS = str(Path(sys.executable).parent / "mlops")


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """A running local platform (MLflow, Prefect, the deployment runner) for the whole session."""
    from infra.platform import local_platform
    from infra.services import start_services, stop_services, write_state

    home = tmp_path_factory.mktemp("mlops-home")
    running = local_platform(home, "127.0.0.1", free_port(), free_port(), free_port())
    saved: dict[str, str | None] = {}
    try:
        start_services(running.services, running.home, timeout_s=180)
        write_state(running.home, running.state())
        env = {
            **running.client_environment(),
            "MLOPS_HOME": str(running.home),
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield running
    finally:
        stop_services(running.services, running.home)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def mlops(platform, tmp_path):
    """Run the `mlops` CLI as a user would: it finds the platform through MLOPS_HOME."""

    def run(*args: str, timeout: float = 600, env_overrides: dict | None = None):
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
        env["MLOPS_HOME"] = str(platform.home)
        env.update(env_overrides or {})
        return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=timeout)

    return run
