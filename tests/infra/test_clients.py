"""Pointing a process's clients at a platform (no servers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from environment import without_client_variables

ROOT = Path(__file__).resolve().parents[2]


def test_a_prefect_imported_before_connecting_reads_the_platforms_address(tmp_path):
    """Given Prefect imported before `connect` (as in a warm start: flows/warm_commands.py),
    Prefect's settings then name the connection's API, not the one it read on import."""
    code = ("import json\n"
            "import prefect.context\n"
            "from prefect.settings import get_current_settings\n"
            "from infra.clients import Connection, connect\n"
            "from infra.settings import load_settings\n"
            "api = 'http://127.0.0.1:9/api'\n"
            "connect(Connection('http://127.0.0.1:9', api, {'PREFECT_API_URL': api}), load_settings())\n"
            "print(json.dumps(get_current_settings().api.url))\n")
    env = {**without_client_variables(os.environ), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == "http://127.0.0.1:9/api"
