"""`mlops up | status | down` on the session's platform."""

import json

import pytest

pytestmark = pytest.mark.integration


def test_status_json_reports_running_services(mlops, platform):
    done = mlops("status", "--json")

    status = json.loads(done.stdout)
    assert done.returncode == 0
    assert status["profile"] == "local"
    assert status["mlflow_url"] == platform.mlflow_url
    assert status["prefect_url"] == platform.prefect_url
    assert all(s["running"] for s in status["services"].values())
    assert set(status["services"]) == {"mlflow", "prefect", "runner"}


def test_up_twice_is_harmless(mlops, platform):
    done = mlops("up")

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("already running") == 3
