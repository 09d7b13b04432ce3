"""Flow-run names and tags for the Prefect UI (the runs themselves: test_monitoring,
test_scheduled_monitoring)."""

from flows.naming import run_name, run_tags


def test_names_say_what_the_run_does_to_which_model():
    assert run_name("train", "penguins", "manual") == "train penguins"
    assert run_name("monitor", "penguins", "schedule") == "monitor penguins"
    assert run_name("retrain", "penguins", "quality") == "retrain penguins after quality"


def test_tags_add_model_and_trigger_and_keep_the_others():
    """Given a scheduled run's tags and stale model/trigger tags, then Prefect's own tag stays
    and one model and one trigger tag are left."""
    tags = run_tags(["auto-scheduled", "model:old", "trigger:manual"], "penguins", "schedule")

    assert tags == ["auto-scheduled", "model:penguins", "trigger:schedule"]
