"""Starting a training's tracking (MLflow in SQLite, an Optuna journal): resume or start afresh."""

import textwrap

import pytest
from synthetic import binary_frame

from experiments.search import journal_storage
from experiments.spec import parse_spec
from experiments.training import finish, start_tracking
from experiments.validation import load_dataset


@pytest.fixture
def start(sqlite_mlflow, tmp_path):
    """start_tracking for one spec and its data, on this test's MLflow and study journal."""
    binary_frame().to_csv(tmp_path / "binary.csv", index=False)
    spec = parse_spec(textwrap.dedent(f"""\
        name: resume-test
        task: classification
        data:
          source: {tmp_path / "binary.csv"}
          target: label
        tuning:
          trials: 3
          cv_folds: 3
        """), "resume-test.yaml")
    dataset = load_dataset(spec)
    sqlite_mlflow.create_experiment(spec.name, artifact_location=(tmp_path / "artifacts").as_uri())
    storage = journal_storage(tmp_path / "studies.journal")

    def run():
        return start_tracking(sqlite_mlflow, storage, spec, dataset, trigger="manual",
                              flow_run_id=None, extra_tags={})

    run.storage = storage
    return run


def test_an_interrupted_search_is_resumed_in_its_own_run(start, sqlite_mlflow):
    """Given a training that failed before its search finished, when the same training starts
    again, then it continues the same study in the same MLflow run, running again."""
    first = start()
    sqlite_mlflow.set_terminated(first.run_id, status="FAILED")  # what the flow does on an error

    again = start()

    assert (again.run_id, again.study_name) == (first.run_id, first.study_name)
    assert sqlite_mlflow.get_run(again.run_id).info.status == "RUNNING"


def test_a_finished_search_is_not_resumed(start, sqlite_mlflow):
    """Given a training that finished, when the same training starts again, then it opens a new
    run and the next attempt of the study."""
    first = start()
    finish(sqlite_mlflow, start.storage, first)

    again = start()

    assert again.run_id != first.run_id
    base, attempt = first.study_name.rsplit("-", 1)
    assert again.study_name == f"{base}-{int(attempt) + 1}"
    assert sqlite_mlflow.get_run(again.run_id).data.tags["mlops.study_name"] == again.study_name
