"""Pointing a process's clients at a platform (no servers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from environment import without_client_variables

ROOT = Path(__file__).resolve().parents[2]


CONNECTED = """
import json, os
from infra.clients import Connection, connect
from infra.platform import NO_TEMPORARY_SERVER
from infra.settings import load_settings
api = 'http://127.0.0.1:9/api'
connect(Connection('http://127.0.0.1:9', api, {'PREFECT_API_URL': api,
                                               'MLFLOW_TRACKING_URI': 'http://127.0.0.1:9',
                                               **NO_TEMPORARY_SERVER}), load_settings())
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings
seen = {'api': get_current_settings().api.url, 'mlflow': os.environ['MLFLOW_TRACKING_URI']}
os.environ['PREFECT_API_URL'] = ''  # as if it were lost: Prefect must not start its own server
from prefect.context import refresh_global_settings_context
refresh_global_settings_context()
try:
    get_client(sync_client=True)
    seen['no_api'] = 'a client'
except ValueError as error:
    seen['no_api'] = str(error)
print(json.dumps(seen))
"""


def test_a_variable_set_empty_counts_as_unset_and_prefect_never_starts_its_own_server(tmp_path):
    """Given a shell with PREFECT_API_URL and MLFLOW_TRACKING_URI set but empty, when a
    process connects to the platform, then its clients use the platform's addresses (with
    Prefect's default, an empty API address started a temporary Prefect server of its own
    for the training, its runs lost with it); and a Prefect client that finds no address
    anyway fails with Prefect's line instead of starting that server."""
    env = {**without_client_variables(os.environ), "PYTHONPATH": str(ROOT),
           "PREFECT_API_URL": "", "MLFLOW_TRACKING_URI": ""}
    env.pop("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", None)  # Prefect's default: allowed
    done = subprocess.run([sys.executable, "-c", CONNECTED], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["api"] == "http://127.0.0.1:9/api"
    assert seen["mlflow"] == "http://127.0.0.1:9"
    assert seen["no_api"].startswith("No Prefect API URL provided")


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
