"""A monitoring schedule per model, on the real platform: made when a version becomes champion,
visible in Prefect with its parameters, kept when the runner applies `monitor` again,
following the spec on the next training, firing, and removed at `every_minutes: 0`."""

import asyncio
import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
)
from synthetic import binary_frame

from flows.schedules import (
    MONITOR_DEPLOYMENT,
    describe_models,
    model_schedules,
    schedule_monitoring,
)

pytestmark = pytest.mark.integration

NAME = "it-sched"


def _spec(folder, every_minutes: float):
    spec = folder / f"spec-{every_minutes:g}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{every_minutes: {every_minutes}}}
        """))
    return str(spec)


def _schedule():
    """NAME's schedule on `monitor` as Prefect's API gives it, or None."""
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name(MONITOR_DEPLOYMENT)
        return next((s for s in deployment.schedules if s.slug == f"monitor-{NAME}"), None)


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """A first champion of NAME, its spec asking for a check every 30 minutes."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("sched")
    binary_frame(n=200, seed=5).to_csv(folder / "train.csv", index=False)
    result = train(TrainParameters(experiment=_spec(folder, 30)))
    yield result, folder
    with get_client(sync_client=True) as prefect:  # no runs every few seconds for later tests
        schedule_monitoring(prefect, NAME, 0)


def test_a_first_champion_gets_its_schedule_with_its_parameters(trained, mlops):
    """Given a first training, Prefect holds an active 30-minute schedule on `monitor` whose
    parameters name the model, and `mlops models --json` shows it with the next check."""
    result, _ = trained
    assert result["promoted"] is True

    schedule = _schedule()
    listed = mlops("models", "--json")

    assert schedule is not None and schedule.active
    assert schedule.schedule.interval == timedelta(minutes=30)
    assert schedule.parameters == {"params": {"model": NAME}}
    assert listed.returncode == 0, listed.stderr
    row = next(m for m in json.loads(listed.stdout)["models"] if m["name"] == NAME)
    assert (row["champion_version"], row["challenger_version"], row["versions"]) == (
        result["model_version"], None, 1)
    assert row["monitoring"]["every_minutes"] == 30
    next_check = datetime.fromisoformat(row["monitoring"]["next_check"])
    assert datetime.now(UTC) <= next_check <= datetime.now(UTC) + timedelta(minutes=30)


def test_models_prints_a_table(trained):
    """Without --json, `mlops models` prints a table with the model's row."""
    from typer.testing import CliRunner

    from flows.cli import app

    done = CliRunner().invoke(app, ["models"])

    assert done.exit_code == 0, done.output
    row = next(line for line in done.output.splitlines() if NAME in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")][:5] == [
        NAME, "1", "-", "1", "30 min"]  # champion v1, no challenger, one version


def test_a_runner_restart_keeps_the_schedule(trained):
    """Given NAME's schedule, when `monitor` is paused (what the runner does when it stops)
    and applied again (what it does when it starts), the same schedule is there and due."""
    from flows.serve import deployments

    before = _schedule()
    monitor = next(d for d in deployments() if d.name == "monitor")
    with get_client(sync_client=True) as prefect:
        prefect.pause_deployment(prefect.read_deployment_by_name(MONITOR_DEPLOYMENT).id)

    asyncio.run(monitor.aapply())

    after = _schedule()
    assert after is not None and (after.id, after.schedule, after.parameters) == (
        before.id, before.schedule, before.parameters)
    with get_client(sync_client=True) as prefect:
        listed = describe_models(MlflowClient(), prefect, datetime.now(UTC))
    assert next(m for m in listed if m["name"] == NAME)["monitoring"]["next_check"] is not None


def test_the_runner_brings_back_a_schedule_prefect_dropped(trained):
    """Given a schedule without a slug added by hand (as in Prefect's UI), applying `monitor`
    again drops every schedule (Prefect's rule); the runner's start then restores NAME's."""
    from prefect.client.schemas.schedules import IntervalSchedule

    from flows.serve import deployments, restore_schedules

    monitor = next(d for d in deployments() if d.name == "monitor")
    with get_client(sync_client=True) as prefect:
        deployment_id = prefect.read_deployment_by_name(MONITOR_DEPLOYMENT).id
        prefect.create_deployment_schedules(
            deployment_id, [(IntervalSchedule(interval=timedelta(days=1)), False)])

    asyncio.run(monitor.aapply())
    dropped = _schedule()
    restore_schedules()

    restored = _schedule()
    assert dropped is None
    assert restored is not None and restored.active
    assert restored.schedule.interval == timedelta(minutes=30)  # the champion's spec
    assert restored.parameters == {"params": {"model": NAME}}


def test_the_next_training_follows_the_spec_and_the_schedule_fires(trained):
    """Given a second training whose spec says every 0.1 minutes, the schedule follows it, a
    scheduled run of `monitor` starts for NAME on its own, finds its champion and completes
    as skipped (no live traffic), saying so; then every_minutes 0 removes the schedule."""
    from flows.train import TrainParameters, train

    _, folder = trained
    second = train(TrainParameters(experiment=_spec(folder, 0.1)))
    assert _schedule().schedule.interval == timedelta(seconds=6)

    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name(MONITOR_DEPLOYMENT)

        def started():
            runs = prefect.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["auto-scheduled"])))
            return [r for r in runs if r.parameters == {"params": {"model": NAME}}
                    and r.state is not None and not r.state.is_scheduled()]

        assert wait_for(started, timeout_s=60, interval_s=1)
        first = started()[0]
        schedule_monitoring(prefect, NAME, 0)  # no more runs while this one finishes
        assert wait_for(lambda: prefect.read_flow_run(first.id).state.is_final(),
                        timeout_s=120, interval_s=1)
        run = prefect.read_flow_run(first.id)

        def logged():  # the flow's logs reach the server in batches, after its final state
            return " ".join(log.message for log in prefect.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))))

        wait_for(lambda: "no drift check" in logged(), timeout_s=15, interval_s=0.5)
        logs = logged()
        left = model_schedules(prefect.read_deployment_by_name(MONITOR_DEPLOYMENT))

    assert run.state.is_completed(), run.state
    assert run.created_by.display_value == f"monitor-{NAME}"
    assert run.name == f"monitor {NAME}"
    assert {f"model:{NAME}", "trigger:schedule", "auto-scheduled"} <= set(run.tags)
    with get_client(sync_client=True) as prefect:
        training = prefect.read_flow_run(second["flow_run_id"])
    assert training.name == f"train {NAME}"
    assert {f"model:{NAME}", "trigger:manual"} <= set(training.tags)
    assert f"{NAME}: no drift check: too little live traffic: 0 records" in logs
    assert second["champion_version"] is not None
    assert NAME not in left and _schedule() is None
    with get_client(sync_client=True) as prefect:
        listed = describe_models(MlflowClient(), prefect, datetime.now(UTC))
    assert next(m for m in listed if m["name"] == NAME)["monitoring"] == {
        "every_minutes": 0, "next_check": None}


def test_models_with_the_platform_stopped_is_one_line(mlops, tmp_path):
    """Given an MLOPS_HOME whose platform was never started, `mlops models` says so."""
    from network import free_port

    done = mlops("models", "--json", env_overrides={
        "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_MLFLOW_PORT": str(free_port()),
        "MLOPS_PREFECT_PORT": str(free_port()), "MLOPS_RUNNER_PORT": str(free_port())})

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "not running" in done.stderr and "mlops up" in done.stderr
