"""A user's mistake: one line on stderr naming it, a non-zero exit, nothing registered."""

import os

import pytest
from mlflow.tracking import MlflowClient
from synthetic import binary_frame

pytestmark = pytest.mark.integration

GOOD_SPEC = """\
name: it-bad
task: classification
data:
  source: {source}
  target: label
tuning:
  trials: 2
  cv_folds: 3
"""


def _versions() -> int:
    """Versions of the model these specs name: a retraining another module left running
    (the session platform is shared) may register a version of its own model meanwhile."""
    return len(MlflowClient().search_model_versions("name = 'it-bad'"))


def _write(path, content: bytes | str):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


CASES = {
    # case: (data file content or None, spec text template or None, fragment expected)
    "missing file": (None, GOOD_SPEC, "data file not found"),
    "garbage bytes": (os.urandom(3000), GOOD_SPEC, "data.csv"),
    "empty data": ("", GOOD_SPEC, "is empty"),
    "header only": ("x1,x2,label\n", GOOD_SPEC, "no rows"),
    "too few rows": ("csv:12", GOOD_SPEC, "too few rows"),
    "missing target": ("csv:drop-label", GOOD_SPEC, "target column 'label' is not in the data"),
    "all-missing target": ("csv:blank-label", GOOD_SPEC, "missing in every row"),
    "unknown task": ("csv", GOOD_SPEC.replace("classification", "clustering"), "task"),
    "misspelt key": ("csv", GOOD_SPEC.replace("trials:", "trails:"), "unknown key 'tuning.trails'"),
    "malformed yaml": ("csv", GOOD_SPEC + "  : [unclosed\n", "malformed YAML"),
}


def _data(kind):
    frame = binary_frame(n=120)
    if kind == "csv:12":
        return frame.head(12).to_csv(index=False)
    if kind == "csv:drop-label":
        return frame.drop(columns="label").to_csv(index=False)
    if kind == "csv:blank-label":
        return frame.assign(label=None).to_csv(index=False)
    if kind == "csv":
        return frame.to_csv(index=False)
    return kind


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_registers_nothing(mlops, tmp_path, case):
    content, spec_text, fragment = CASES[case]
    data = tmp_path / "data.csv"
    if content is not None:
        _write(data, _data(content))
    spec = _write(tmp_path / "spec.yaml", spec_text.format(source=data))
    before = _versions()

    done = mlops("train", str(spec), "--json")

    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]
    assert _versions() == before


def test_unknown_experiment_name(mlops):
    done = mlops("train", "no-such-experiment")

    assert done.returncode != 0
    assert "unknown experiment 'no-such-experiment'" in done.stderr
    assert "penguins" in done.stderr  # the known names are listed


def test_platform_not_running_is_one_line(mlops, tmp_path):
    """Given an MLOPS_HOME whose platform was never started, `mlops train` says so."""
    from network import free_port

    done = mlops("train", "penguins", env_overrides={
        "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_MLFLOW_PORT": str(free_port()),
        "MLOPS_PREFECT_PORT": str(free_port()), "MLOPS_RUNNER_PORT": str(free_port())})

    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "not running" in done.stderr and "mlops up" in done.stderr
