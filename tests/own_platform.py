"""A local platform of a test's own, started and stopped with `mlops up` / `mlops down`, for
tests that stop or kill its servers (the session's `platform` must never be touched)."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from environment import without_client_variables
from network import free_port

MLOPS = str(Path(sys.executable).parent / "mlops")


@dataclass(frozen=True)
class OwnPlatform:
    home: Path
    env: dict  # a user's shell: MLOPS_* settings, no client variables

    def run(self, *args: str, timeout: float = 600, cwd: Path | None = None):
        return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=self.env,
                              cwd=cwd or self.home, timeout=timeout)

    def start(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([MLOPS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**self.env, **(env or {})}, cwd=cwd or self.home)

    def up(self) -> None:
        started = self.run("up", timeout=300)
        assert started.returncode == 0, started.stderr

    def down(self) -> None:
        stopped = self.run("down", timeout=120)
        assert stopped.returncode == 0, stopped.stderr

    def state(self) -> dict:
        return json.loads((self.home / "state.json").read_text())

    def kill(self, service: str) -> None:
        """SIGKILL a service's whole process group, as a crash would (no clean shutdown)."""
        pid = int((self.home / "run" / f"{service}.pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)

    def client_environment(self) -> dict[str, str]:
        state = self.state()
        return {"MLFLOW_TRACKING_URI": state["mlflow_url"],
                "PREFECT_API_URL": f"{state['prefect_url']}/api", "MLOPS_HOME": str(self.home),
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


@contextmanager
def own_platform(home: Path, settings: Mapping[str, str] | None = None) -> Iterator[OwnPlatform]:
    """`mlops up` on free ports in HOME (with MLOPS_* `settings` of its own); `mlops down`
    after. This process's clients are left alone: point them with
    `clients_pointed_at(running.client_environment())` where needed."""
    env = without_client_variables(os.environ)
    env.update(settings or {})
    env.update({"MLOPS_HOME": str(home), "MLOPS_MLFLOW_PORT": str(free_port()),
                "MLOPS_PREFECT_PORT": str(free_port()), "MLOPS_RUNNER_PORT": str(free_port()),
                "MLOPS_EVIDENTLY_PORT": str(free_port()), "MLOPS_START_TIMEOUT_S": "240"})
    home.mkdir(parents=True, exist_ok=True)
    running = OwnPlatform(home, env)
    try:
        running.up()
        yield running
    finally:
        running.run("down", timeout=120)
