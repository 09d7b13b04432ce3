"""Starting a training's tracking (MLflow in SQLite, an Optuna journal): resume or start afresh."""

import textwrap
import threading
import time

import pytest
from polling import wait_for
from synthetic import binary_frame

from experiments import lease, training
from experiments.search import journal_storage
from experiments.spec import parse_spec
from experiments.training import finish, give_up, start_tracking
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
    run.journal = tmp_path / "studies.journal"
    run.spec = spec
    return run


def test_an_interrupted_search_is_resumed_in_its_own_run(start, sqlite_mlflow):
    """Given a training that failed before its search finished, when the same training starts
    again, then it continues the same study in the same MLflow run, running again."""
    first = start()
    give_up(sqlite_mlflow, start.storage, first)  # what the flow does on an error

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


def attrs_of(storage, study_name: str) -> dict:
    return storage.get_study_user_attrs(storage.get_study_id_from_name(study_name))


def expire(storage, study_name: str) -> None:
    """What a minute without renewals does to the lease of a killed training."""
    storage.set_study_user_attr(storage.get_study_id_from_name(study_name), lease.LEASE_UNTIL,
                                time.time() - 1)


def test_a_running_training_is_not_taken_over(start, sqlite_mlflow):
    """Given a training whose lease is live, when the same training starts again, then it gets
    its own run and the next attempt, and the first keeps its study."""
    first = start()

    again = start()

    assert again.run_id != first.run_id
    base, attempt = first.study_name.rsplit("-", 1)
    assert again.study_name == f"{base}-{int(attempt) + 1}"
    assert attrs_of(start.storage, first.study_name)[lease.OWNER] == first.owner
    assert sqlite_mlflow.get_run(first.run_id).info.status == "RUNNING"
    finish(sqlite_mlflow, start.storage, first)
    finish(sqlite_mlflow, start.storage, again)
    assert {sqlite_mlflow.get_run(r).info.status for r in (first.run_id, again.run_id)} == {"FINISHED"}


def test_a_killed_training_is_resumed_once_its_lease_runs_out(start, sqlite_mlflow):
    """Given a training that stopped renewing its lease (killed), when the lease has run out,
    then the next start resumes its study and run, and now owns the lease."""
    first = start()
    expire(start.storage, first.study_name)

    again = start()

    assert (again.run_id, again.study_name) == (first.run_id, first.study_name)
    assert again.owner != first.owner
    attrs = attrs_of(start.storage, again.study_name)
    assert attrs[lease.OWNER] == again.owner and lease.is_live(attrs)


@pytest.mark.parametrize("logged_first", [False, True], ids=["before-its-inputs", "after-its-inputs"])
def test_a_training_killed_as_it_opened_its_run_is_resumed_in_that_run(start, sqlite_mlflow,
                                                                       monkeypatch, logged_first):
    """Given a training killed after opening its run, before or after logging its inputs, when
    its lease has run out, then the next start resumes that run (no second run beside it), which
    then holds its inputs once: the spec monitoring reads back, the params, the data set."""
    log_inputs = training._log_inputs

    def killed(client, run_id, *args):
        if logged_first:
            log_inputs(client, run_id, *args)
        raise KeyboardInterrupt  # what SIGKILL leaves: nothing after this point

    monkeypatch.setattr(training, "_log_inputs", killed)
    with pytest.raises(KeyboardInterrupt):
        start()
    experiment_id = sqlite_mlflow.get_experiment_by_name("resume-test").experiment_id
    [first] = sqlite_mlflow.search_runs([experiment_id])
    [study] = [s for s in start.storage.get_all_studies() if not s.study_name.startswith("lease:")]
    expire(start.storage, study.study_name)
    monkeypatch.setattr(training, "_log_inputs", log_inputs)

    again = start()

    assert (again.run_id, again.study_name) == (first.info.run_id, study.study_name)
    assert len(sqlite_mlflow.search_runs([experiment_id])) == 1
    run = sqlite_mlflow.get_run(again.run_id)
    assert run.data.params["rows"] == str(len(load_dataset(start.spec).frame))
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["resume-test-data"]
    folder, _, _ = training.SPEC_ARTIFACT.rpartition("/")
    assert training.SPEC_ARTIFACT in {a.path for a in sqlite_mlflow.list_artifacts(again.run_id, folder)}


@pytest.mark.parametrize("opened_run", [False, True], ids=["before-its-run", "after-its-run"])
def test_a_training_killed_before_it_tied_its_study_leaves_no_second_run_or_study(
        start, sqlite_mlflow, monkeypatch, opened_run):
    """Given a training killed after creating its study, before tying it to a run (before or
    after opening the run), when its lease has run out, then the next start takes that study
    over with that run, or opens the one run it never had: one study, one run, running."""
    tie = training._tie_study
    create_run = sqlite_mlflow.create_run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # what SIGKILL leaves: nothing after this point

    if opened_run:
        monkeypatch.setattr(training, "_tie_study", killed)
    else:
        monkeypatch.setattr(sqlite_mlflow, "create_run", killed)
    with pytest.raises(KeyboardInterrupt):
        start()
    experiment_id = sqlite_mlflow.get_experiment_by_name("resume-test").experiment_id
    left = sqlite_mlflow.search_runs([experiment_id])
    assert len(left) == int(opened_run)
    [study] = [s for s in start.storage.get_all_studies() if not s.study_name.startswith("lease:")]
    expire(start.storage, study.study_name)
    monkeypatch.setattr(training, "_tie_study", tie)
    monkeypatch.setattr(sqlite_mlflow, "create_run", create_run)

    again = start()

    [run] = sqlite_mlflow.search_runs([experiment_id])
    assert again.study_name == study.study_name and again.run_id == run.info.run_id
    if opened_run:
        assert run.info.run_id == left[0].info.run_id
    assert run.info.status == "RUNNING" and run.data.tags["mlops.study_name"] == study.study_name
    assert [s.study_name for s in start.storage.get_all_studies()
            if not s.study_name.startswith("lease:")] == [study.study_name]
    attrs = attrs_of(start.storage, study.study_name)
    assert attrs["mlflow_run_id"] == run.info.run_id and attrs["finished"] is False
    assert attrs[lease.OWNER] == again.owner


def test_a_study_being_created_is_not_taken_over(start, sqlite_mlflow, monkeypatch):
    """Given a training that created its study and has not leased it yet, when another
    training starts, then it leaves that study alone and opens the next attempt."""
    grant = lease.grant
    second = []

    def grant_after_another_start(storage, study_id, owner, generation=0):
        if not second:
            second.append(None)
            second[0] = start()  # another training starts in between
        grant(storage, study_id, owner, generation)

    monkeypatch.setattr(lease, "grant", grant_after_another_start)
    first = start()

    assert first.study_name != second[0].study_name
    assert first.run_id != second[0].run_id


def test_only_one_of_two_trainings_takes_over_an_expired_lease(start):
    """Given an expired lease both trainings saw, when both try to take it over, one wins."""
    first = start()
    expire(start.storage, first.study_name)
    seen = attrs_of(start.storage, first.study_name)

    won = [lease.take_over(start.storage, first.study_name, seen, owner) for owner in ("a", "b")]

    assert won == [True, False]
    assert attrs_of(start.storage, first.study_name)[lease.OWNER] == "a"


def test_a_creator_that_picked_a_taken_attempt_takes_the_next(start, monkeypatch):
    """Given a training that counted the attempts before another created attempt 1, when it
    creates its study, then it takes attempt 2 and leaves attempt 1 to its owner."""
    first = start()
    counted = training._next_attempt
    stale = iter([1])
    monkeypatch.setattr(training, "_next_attempt", lambda storage, base: next(stale, None)
                        or counted(storage, base))

    second = start()

    assert first.study_name.endswith("-1") and second.study_name.endswith("-2")
    first_attrs = attrs_of(start.storage, first.study_name)
    assert (first_attrs[lease.OWNER], first_attrs["mlflow_run_id"]) == (first.owner, first.run_id)


def test_trainings_starting_at_once_get_different_studies(start):
    """Given four trainings in step, each with its own handle on the journal (as separate
    processes have), when they create their studies at the same instant, each gets its own."""
    barrier = threading.Barrier(4)
    created = []

    def one(owner: str) -> None:
        storage = journal_storage(start.journal)
        barrier.wait()
        created.append(training._create_attempt(storage, "race", start.spec, owner))

    threads = [threading.Thread(target=one, args=(f"owner-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(created) == [f"race-{n}" for n in range(1, 5)]
    owners = {attrs_of(start.storage, name)[lease.OWNER] for name in created}
    assert owners == {f"owner-{i}" for i in range(4)}


def test_the_keeper_renews_the_lease_until_another_training_takes_over(start):
    """Given a running training's keeper, the lease is extended while it runs; once another
    training has taken the study over, the keeper stops writing."""
    first = start()
    before = attrs_of(start.storage, first.study_name)[lease.LEASE_UNTIL]

    with lease.LeaseKeeper(start.storage, first.study_name, first.owner, renew_s=0.01):
        assert wait_for(lambda: attrs_of(start.storage, first.study_name)[lease.LEASE_UNTIL] > before)

    expire(start.storage, first.study_name)
    assert lease.take_over(start.storage, first.study_name,
                           attrs_of(start.storage, first.study_name), "other")
    keeper = lease.LeaseKeeper(start.storage, first.study_name, first.owner)
    assert keeper.renew() is False
    assert attrs_of(start.storage, first.study_name)[lease.OWNER] == "other"
