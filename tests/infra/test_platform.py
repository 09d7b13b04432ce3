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
