"""Experiment specs: strict parsing, defaults by task, and resolving a spec by path or name."""

import textwrap

import pytest

from experiments.errors import InputError
from experiments.spec import MODELS, known_specs, load_spec, parse_spec, resolve_spec_path


def spec_text(task: str = "classification", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        name: demo
        task: {task}
        data:
          source: data.csv
          target: y
        """
    ) + textwrap.dedent(extra)


@pytest.mark.parametrize(
    ("task", "metric", "greater_is_better"),
    [("classification", "roc_auc", True), ("regression", "rmse", False)],
)
def test_valid_spec_gets_the_tasks_default_metric_and_models(task, metric, greater_is_better):
    """Given a minimal spec, when parsed, then metric and models default by task."""
    spec = parse_spec(spec_text(task), "t.yaml")

    assert spec.metric == metric
    assert spec.greater_is_better is greater_is_better
    assert spec.models == MODELS[task]


def test_valid_spec_gets_default_tuning_and_monitoring():
    """Given a minimal spec, when parsed, then the tuning and monitoring defaults apply."""
    spec = parse_spec(spec_text(), "t.yaml")

    assert (spec.tuning.trials, spec.tuning.cv_folds, spec.tuning.seed) == (40, 5, 42)
    assert spec.tuning.holdout_fraction == 0.2
    assert spec.monitoring.drift_share == 0.3
    assert (spec.monitoring.window_minutes, spec.monitoring.min_rows) == (60, 100)
    assert spec.monitoring.retrain_on_feedback is False


def test_live_traffic_settings_are_checked():
    """Given the live-traffic keys, they are read; a window of zero minutes is refused."""
    spec = parse_spec(spec_text(extra="monitoring:\n  window_minutes: 15\n  min_rows: 20\n"
                                      "  retrain_on_feedback: true\n"), "t.yaml")

    assert (spec.monitoring.window_minutes, spec.monitoring.min_rows) == (15, 20)
    assert spec.monitoring.retrain_on_feedback is True
    with pytest.raises(InputError, match="monitoring.window_minutes"):
        parse_spec(spec_text(extra="monitoring:\n  window_minutes: 0\n"), "t.yaml")


def test_unattended_loop_settings_default_and_refuse_negatives():
    """Given no monitoring keys, checks run hourly with a 0.02 tolerance on 100 labels; a
    negative interval or tolerance, or zero labels, is refused by name."""
    spec = parse_spec(spec_text(), "t.yaml")
    assert (spec.monitoring.every_minutes, spec.monitoring.quality_tolerance,
            spec.monitoring.min_labelled) == (60, 0.02, 100)
    assert parse_spec(spec_text(extra="monitoring:\n  every_minutes: 0\n"),
                      "t.yaml").monitoring.every_minutes == 0
    for key, value in (("every_minutes", -1), ("quality_tolerance", -0.1), ("min_labelled", 0)):
        with pytest.raises(InputError, match=rf"monitoring\.{key}"):
            parse_spec(spec_text(extra=f"monitoring:\n  {key}: {value}\n"), "t.yaml")


def test_explicit_metric_and_models_override_the_defaults():
    """Given a spec naming a metric and models, when parsed, then those are used."""
    spec = parse_spec(
        spec_text(extra="tuning:\n  metric: f1\n  models: [random_forest]\n"), "t.yaml"
    )

    assert spec.metric == "f1"
    assert spec.models == ("random_forest",)


def test_slug_is_lowercase_with_dashes():
    """Given a name with capitals, dots and underscores, then the slug keeps only [a-z0-9-]."""
    spec = parse_spec(spec_text().replace("name: demo", "name: My_Exp.v2"), "t.yaml")

    assert spec.slug == "my-exp-v2"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("colour: blue\n", "unknown key 'colour'"),
        ("tuning:\n  trails: 3\n", "unknown key 'tuning.trails'"),
        ("monitoring:\n  drift: 0.5\n", "unknown key 'monitoring.drift'"),
    ],
    ids=["top-level", "tuning-typo", "monitoring-typo"],
)
def test_unknown_key_is_named(extra, expected):
    """Given a spec with an unknown (misspelt) key, when parsed, then InputError names it."""
    with pytest.raises(InputError, match=expected.replace(".", r"\.")):
        parse_spec(spec_text(extra=extra), "t.yaml")


def test_missing_required_key_is_named():
    """Given a spec without data.target, when parsed, then InputError names the missing key."""
    text = "name: demo\ntask: regression\ndata:\n  source: d.csv\n"

    with pytest.raises(InputError, match=r"missing key 'data\.target'"):
        parse_spec(text, "t.yaml")


def test_malformed_yaml_names_the_line_and_origin():
    """Given YAML broken on line 5, when parsed, then the message names the origin and line 5."""
    text = "name: demo\ntask: regression\ndata:\n  source: d.csv\n   target: [y\n"

    with pytest.raises(InputError) as caught:
        parse_spec(text, "broken.yaml")

    message = str(caught.value)
    assert "broken.yaml" in message
    assert "malformed YAML at line 5" in message


def test_yaml_that_is_not_a_mapping_is_rejected():
    """Given a YAML list, when parsed, then InputError says a mapping was expected."""
    with pytest.raises(InputError, match="expected a mapping of keys, got list"):
        parse_spec("- a\n- b\n", "t.yaml")


def test_unknown_task_is_rejected():
    """Given task: clustering, when parsed, then InputError names the task field."""
    with pytest.raises(InputError, match=r"task: .*'classification' or 'regression'"):
        parse_spec(spec_text(task="clustering"), "t.yaml")


@pytest.mark.parametrize(
    ("task", "metric"), [("classification", "rmse"), ("regression", "roc_auc")]
)
def test_metric_not_fitting_the_task_is_rejected(task, metric):
    """Given a metric of the other task, when parsed, then InputError says it does not fit."""
    with pytest.raises(InputError, match=f"'{metric}' does not fit task '{task}'"):
        parse_spec(spec_text(task, f"tuning:\n  metric: {metric}\n"), "t.yaml")


def test_unknown_metric_is_rejected_with_the_choices():
    """Given an unknown metric, when parsed, then InputError lists the known metrics."""
    with pytest.raises(InputError, match=r"'auc' is unknown; use one of .*roc_auc"):
        parse_spec(spec_text(extra="tuning:\n  metric: auc\n"), "t.yaml")


@pytest.mark.parametrize(
    ("task", "model"), [("classification", "ridge"), ("regression", "logistic_regression")]
)
def test_model_not_fitting_the_task_is_rejected(task, model):
    """Given a model of the other task, when parsed, then InputError names it and the task."""
    with pytest.raises(InputError, match=f"'{model}' is not a {task} model"):
        parse_spec(spec_text(task, f"tuning:\n  models: [{model}]\n"), "t.yaml")


def test_out_of_range_value_is_named():
    """Given cv_folds: 1, when parsed, then InputError names tuning.cv_folds."""
    with pytest.raises(InputError, match=r"tuning\.cv_folds"):
        parse_spec(spec_text(extra="tuning:\n  cv_folds: 1\n"), "t.yaml")


def test_unknown_experiment_name_lists_known_specs():
    """Given a name that is neither a file nor a bundled spec, then the error lists the specs."""
    with pytest.raises(InputError) as caught:
        load_spec("no-such-experiment")

    message = str(caught.value)
    assert "unknown experiment 'no-such-experiment'" in message
    assert "penguins" in message
    assert ", ".join(known_specs()) in message


def test_missing_yaml_path_says_spec_file_not_found(tmp_path):
    """Given a .yaml path that does not exist, then the error says the spec file is missing."""
    missing = tmp_path / "nope.yaml"

    with pytest.raises(InputError, match="spec file not found"):
        load_spec(str(missing))


def test_spec_file_on_disk_is_loaded(tmp_path):
    """Given a spec file path, when loaded, then the file's content is parsed."""
    path = tmp_path / "mine.yaml"
    path.write_text(spec_text("regression"))

    assert resolve_spec_path(str(path)) == path
    assert load_spec(str(path)).task == "regression"


def test_invalid_spec_file_error_names_the_file(tmp_path):
    """Given a spec file with a typo, when loaded, then the message names the file path."""
    path = tmp_path / "typo.yaml"
    path.write_text(spec_text(extra="tuning:\n  trails: 3\n"))

    with pytest.raises(InputError, match=str(path)):
        load_spec(str(path))


def test_bundled_penguins_spec_loads_by_name():
    """Given the bundled name 'penguins', when loaded, then the packaged spec is returned."""
    spec = load_spec("penguins")

    assert spec.name == "penguins"
    assert spec.task == "classification"
    assert spec.data.source == "package://palmerpenguins/data/penguins.csv"
    assert spec.data.target == "species"
    assert spec.metric == "roc_auc"


def test_promotion_mode_defaults_to_auto_and_refuses_unknown_modes():
    """Given no promotion keys, versions are promoted by the gate alone with a 24 h approval
    window; `approve` is read, an unknown mode or a zero timeout is refused by name."""
    default = parse_spec(spec_text(), "t.yaml").promotion
    assert (default.mode, default.approval_timeout_hours) == ("auto", 24)
    spec = parse_spec(spec_text(extra="promotion:\n  mode: approve\n  approval_timeout_hours: 2\n"),
                      "t.yaml")
    assert (spec.promotion.mode, spec.promotion.approval_timeout_hours) == ("approve", 2)
    for key, value in (("mode", "manual"), ("approval_timeout_hours", 0)):
        with pytest.raises(InputError, match=rf"promotion\.{key}"):
            parse_spec(spec_text(extra=f"promotion:\n  {key}: {value}\n"), "t.yaml")


def test_the_spec_a_retraining_writes_keeps_the_promotion_mode():
    """A retraining trains on the champion's spec written back as YAML (flows/retrain.py): in
    approve mode its winner waits too."""
    import yaml

    spec = parse_spec(spec_text(extra="promotion:\n  mode: approve\n"), "t.yaml")
    again = parse_spec(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "retrain.yaml")
    assert again.promotion == spec.promotion


def test_live_evidence_promotion_is_off_unless_asked():
    """Given no promotion section, live evidence promotes nothing; `live_evidence: true` is
    read, and a key the section does not know is refused by name."""
    assert parse_spec(spec_text(), "t.yaml").promotion.live_evidence is False
    asked = parse_spec(spec_text(extra="promotion:\n  live_evidence: true\n"), "t.yaml")

    assert asked.promotion.live_evidence is True
    with pytest.raises(InputError, match="unknown key 'promotion.live_evidense'"):
        parse_spec(spec_text(extra="promotion:\n  live_evidense: true\n"), "t.yaml")


def test_the_data_profile_is_on_unless_turned_off_and_a_typo_is_named():
    """Given no `profile` key, the training data is profiled; `profile: false` turns it off
    without changing the search's digest (the same study resumes); a misspelt key or a value
    that is not a yes/no is refused in one line naming it."""
    from experiments.training import spec_digest

    on = parse_spec(spec_text(), "t.yaml")
    off = parse_spec(spec_text(extra="profile: false\n"), "t.yaml")

    assert on.profile is True and off.profile is False
    assert spec_digest(off) == spec_digest(on)
    with pytest.raises(InputError, match=r"^spec t\.yaml: unknown key 'profil'$"):
        parse_spec(spec_text(extra="profil: false\n"), "t.yaml")
    with pytest.raises(InputError, match=r"^spec t\.yaml: profile: Input should be a valid boolean"):
        parse_spec(spec_text(extra="profile: sometimes\n"), "t.yaml")
