"""The decisions behind a model's monitoring schedule: pure functions, no servers."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

from flows.schedules import (
    ModelSchedule,
    check_trigger,
    decide_schedule,
    model_schedules,
    next_check,
    schedule_parameters,
)

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def held(every: float, active: bool = True, model: str = "m", parameters=None) -> ModelSchedule:
    params = schedule_parameters(model) if parameters is None else parameters
    return ModelSchedule(model, every, active, T0, params, uuid4())


@pytest.mark.parametrize("current, every, expected", [
    (None, 60, "create"),
    (None, 0, "none"),
    (held(60), 60, "keep"),
    (held(60), 15, "update"),            # the spec changed: follow it
    (held(60, active=False), 60, "update"),  # paused by hand: a new champion resumes it
    (held(60, parameters={"params": {"model": "other"}}), 60, "update"),
    (held(60), 0, "delete"),
    (held(0.1), 0.1, "keep"),
])
def test_decide_schedule(current, every, expected):
    assert decide_schedule(current, "m", every) == expected


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="every_minutes"):
        decide_schedule(None, "m", -1)


@pytest.mark.parametrize("now, expected", [
    (T0 - timedelta(minutes=5), T0),                       # not started yet: the anchor
    (T0, T0),
    (T0 + timedelta(minutes=1), T0 + timedelta(minutes=60)),
    (T0 + timedelta(minutes=60), T0 + timedelta(minutes=60)),
    (T0 + timedelta(minutes=61), T0 + timedelta(minutes=120)),
])
def test_next_check_of_an_hourly_schedule(now, expected):
    assert next_check(T0, 60, now) == expected


@pytest.mark.parametrize("tags, expected", [
    (["auto-scheduled"], "schedule"),
    (["auto-scheduled", "team-a"], "schedule"),
    ([], "manual"),
    (["team-a"], "manual"),
])
def test_check_trigger(tags, expected):
    assert check_trigger(tags) == expected


def _schedule(slug, every_s=None, cron=None, active=True, parameters=None):
    inner = (SimpleNamespace(interval=timedelta(seconds=every_s), anchor_date=T0)
             if every_s else SimpleNamespace(cron=cron))
    return SimpleNamespace(id=uuid4(), slug=slug, schedule=inner, active=active,
                           parameters=parameters or {})


def test_only_the_platforms_interval_schedules_are_read_as_models():
    """Given our slugged schedules next to a hand-made one and a cron one, only ours count."""
    deployment = SimpleNamespace(schedules=[
        _schedule("monitor-a", every_s=3600, parameters=schedule_parameters("a")),
        _schedule("monitor-b.v2", every_s=6, active=False, parameters=schedule_parameters("b.v2")),
        _schedule(None, every_s=600),
        _schedule("monitor-c", cron="0 * * * *"),
    ])

    found = model_schedules(deployment)

    assert sorted(found) == ["a", "b.v2"]
    assert (found["a"].every_minutes, found["a"].active) == (60, True)
    assert (found["b.v2"].every_minutes, found["b.v2"].active) == (0.1, False)
    assert found["a"].parameters == {"params": {"model": "a"}}


class FakePrefect:
    """The few calls schedule_monitoring makes, on a `monitor` deployment with no schedules."""

    def __init__(self):
        self.deployment = SimpleNamespace(id=uuid4(), schedules=[], paused=False, description="")
        self.created = []

    def read_deployment_by_name(self, name):
        return self.deployment

    def create_deployment_schedules(self, deployment_id, schedules):
        self.created.extend(schedules)

    def request(self, *args, **kwargs):
        pass


def test_the_runner_schedules_each_champion_without_a_schedule_from_its_spec(sqlite_mlflow, tmp_path):
    """Given a champion whose run logged its spec (every 15 minutes), a model without a
    champion, and a champion registered elsewhere (no spec), only the first is scheduled."""
    import yaml

    from experiments.artifacts import SPEC_ARTIFACT
    from flows.schedules import schedule_missing

    client = sqlite_mlflow
    experiment = client.create_experiment("x", artifact_location=str(tmp_path / "artifacts"))
    spec = {"name": "ours", "task": "classification", "data": {"source": "d.csv", "target": "y"},
            "monitoring": {"every_minutes": 15}}
    for name, with_spec in (("ours", True), ("foreign", False)):
        run = client.create_run(experiment)
        if with_spec:
            client.log_text(run.info.run_id, yaml.safe_dump(spec), SPEC_ARTIFACT)
        client.create_registered_model(name)
        client.create_model_version(name, source=str(tmp_path / "model"), run_id=run.info.run_id)
        client.set_registered_model_alias(name, "champion", "1")
    client.create_registered_model("untrained")
    prefect = FakePrefect()

    done = schedule_missing(client, prefect)

    assert done == {"ours": "create"}
    [made] = prefect.created
    assert (made.slug, made.parameters, made.active) == (
        "monitor-ours", {"params": {"model": "ours"}}, True)
    assert made.schedule.interval == timedelta(minutes=15)
