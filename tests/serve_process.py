"""`mlops serve MODEL` as a real process, started as a user starts it (it finds the platform
through MLOPS_HOME), and the records tests send it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
from network import free_port

MLOPS = str(Path(sys.executable).parent / "mlops")


def user_environment(home: Path, overrides: dict | None = None) -> dict[str, str]:
    """This process's environment without the client variables a platform fixture set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "MLOPS_TRAFFIC_URI")}
    env.update({"MLOPS_HOME": str(home), **(overrides or {})})
    return env


class Server:
    """One `mlops serve MODEL` process on a free port; `client` sends `headers` with each call."""

    def __init__(self, model: str, env: dict, folder: Path, headers: dict | None = None):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / f"serve-{port}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([MLOPS, "serve", model, "--port", str(port)],
                                            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        self.headers = headers or {}
        self.client = httpx.Client(base_url=self.url, timeout=30, trust_env=False, headers=self.headers)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"mlops serve did not become healthy:\n{self.log.read_text()[-3000:]}")

    def predict(self, records: list[dict]) -> httpx.Response:
        return self.client.post("/predict", json={"records": records})

    def rss_bytes(self) -> int:
        """The server process's resident memory, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.client.close()


def as_records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in frame.drop(columns="label").to_dict("records")]
