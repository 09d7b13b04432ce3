"""Two trainings of one spec at the same time, against real MLflow and Prefect servers."""

import contextvars
import json
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from synthetic import binary_frame

from experiments import training
from experiments.search import journal_storage
from experiments.spec import parse_spec
from experiments.validation import load_dataset
from registry.history import champion_history

pytestmark = pytest.mark.integration

TRIALS = 2


def write_spec(directory, name: str) -> str:
    binary_frame(n=200, seed=11).to_csv(directory / f"{name}.csv", index=False)
    text = textwrap.dedent(f"""\
        name: {name}
        task: classification
        data:
          source: {directory / f"{name}.csv"}
          target: label
        tuning:
          trials: {TRIALS}
          cv_folds: 3
          models: [logistic_regression]
        """)
    (directory / f"{name}.yaml").write_text(text)
    return text


def assert_one_chain(client: MlflowClient, name: str) -> None:
    """Each champion's period ends where the next one's begins; only the last is open."""
    history = champion_history(client, name)
    assert [h["until"] for h in history][-1] is None
    assert all(a["until"] == b["from"] for a, b in zip(history, history[1:], strict=False))
    assert client.get_model_version_by_alias(name, "champion").version == history[-1]["version"]


def test_two_trainings_of_one_spec_at_once_each_finish_and_promote_in_turn(mlops, platform, tmp_path):
    """Given one spec, when two `mlops train` start together, then both finish, each with its
    own parent run, study and trials, and the champion history is one chain: the second to
    reach the gate was compared with the first's version, not with "no champion"."""
    write_spec(tmp_path, "it-race")
    spec = tmp_path / "it-race.yaml"

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: mlops("train", str(spec), "--json"), range(2)))

    for run in done:
        assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(run.stdout) for run in done]
    client = MlflowClient()
    parents = [client.get_run(r["run_id"]) for r in results]
    studies = {p.data.tags["mlops.study_name"] for p in parents}
    assert len({p.info.run_id for p in parents}) == 2 and len(studies) == 2
    experiment_id = parents[0].info.experiment_id
    for parent in parents:
        assert parent.info.status == "FINISHED"
        children = client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert len(children) == TRIALS
    assert len(client.search_runs([experiment_id])) == 2 * (TRIALS + 1)  # no stray trial runs
    [base] = {training.base_of(name) for name in studies}  # one spec, one data set: one journal
    storage = journal_storage(platform.home / "optuna" / f"{base}.journal")
    for name in studies:
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
        assert attrs["finished"] is True and attrs["lease_until"] == 0.0

    versions = {v.version: v.tags for v in client.search_model_versions("name = 'it-race'")}
    assert sorted(versions) == sorted(r["model_version"] for r in results)
    reasons = [tags["mlops.promotion"] for tags in versions.values()]
    assert reasons.count("no champion yet") == 1, reasons
    assert_one_chain(client, "it-race")


def candidate(client: MlflowClient, storage, spec, dataset):
    """A logged version of one fixed pipeline, ready for the gate (no search: it is not the point)."""
    tracking = training.start_tracking(client, storage, spec, dataset, trigger="manual",
                                       flow_run_id=None, extra_tags={})
    context = training.TrainingContext(spec, dataset, training.split(spec, dataset), tracking)
    search = training.SearchResult("logistic_regression", {"C": 1.0, "class_weight": None}, 0.5, 1)
    evaluation = training.fit_and_evaluate(context, search)
    return context, evaluation, training.log_model(client, context, search, evaluation)


def test_two_versions_reaching_the_gate_at_once_are_compared_in_turn(platform, tmp_path):
    """Given two versions of one model logged side by side, each having scored the champion
    before the gate (there was none), when both enter the gate at the same instant, then one
    becomes champion with nothing to beat and the other is compared with it, so the history
    stays one chain."""
    from flows.train import promote

    spec = parse_spec(write_spec(tmp_path, "it-gate-race"), "it-gate-race.yaml")
    dataset, client = load_dataset(spec), MlflowClient()
    storage = journal_storage(tmp_path / "studies.journal")
    candidates = [candidate(client, storage, spec, dataset) for _ in range(2)]
    barrier = threading.Barrier(2)

    def at_once(context, evaluation, model):
        barrier.wait()
        return promote(client, context, evaluation, model, None, {"mlops.trigger": "manual"})

    # Each thread runs in a copy of this context: Prefect's settings (the platform's address)
    # live in a context variable, which a new thread does not inherit.
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, at_once, *c) for c in candidates]
        gates = [f.result() for f in futures]

    reasons = sorted(g.decision.reason for g in gates)
    assert reasons[0] == "no champion yet" and reasons[1].startswith("not better"), reasons
    champion = next(g.version for g in gates if g.promoted)
    challenger = next(g.version for g in gates if not g.promoted)
    assert client.get_model_version_by_alias("it-gate-race", "challenger").version == challenger
    assert [h["version"] for h in champion_history(client, "it-gate-race")] == [champion]
    assert_one_chain(client, "it-gate-race")
    with get_client(sync_client=True) as prefect:  # the lock was the platform's, not a private one
        assert prefect.read_global_concurrency_limit_by_name("mlops-promote-it-gate-race").limit == 1


def test_a_promotion_lock_with_more_than_one_slot_is_refused(platform):
    """Given the promotion lock widened to two slots by hand, entering it fails with what to do,
    rather than letting two promotions run at once."""
    from flows import locks

    name = locks.promotion_lock("it-widened")
    locks.ensure_lock(name)
    with get_client(sync_client=True) as prefect:
        prefect.upsert_global_concurrency_limit_by_name(name, 2)

    with pytest.raises(RuntimeError, match="must be active with 1 slot"), locks.held(name):
        pass


def test_locks_made_at_once_are_one_and_taking_one_again_writes_nothing(platform):
    """Given four holders making a new lock at the same moment, there is one limit of one slot;
    taking an existing lock leaves no failed create in the Prefect server's log."""
    from flows import locks

    name = locks.promotion_lock("it-lock-once")
    contexts = [contextvars.copy_context() for _ in range(4)]  # this test's: the platform's API
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda context: context.run(locks.ensure_lock, name), contexts))
    with get_client(sync_client=True) as prefect:
        made = [limit for limit in prefect.read_global_concurrency_limits(limit=200)
                if limit.name == name]
    assert [(limit.limit, limit.active) for limit in made] == [(1, True)]
    server_log = platform.home / "logs" / "prefect.log"
    before = server_log.read_text().count("UNIQUE constraint failed: concurrency_limit_v2.name")

    with locks.held(name):
        pass

    after = server_log.read_text().count("UNIQUE constraint failed: concurrency_limit_v2.name")
    assert after == before


def test_a_lock_not_free_in_time_is_one_clear_error(platform, monkeypatch):
    """Given the lock held by another holder for longer than the wait, entering it fails with
    a PlatformError naming the lock (one line in the CLI), and the block never runs."""
    import contextvars
    import threading

    from flows import locks
    from infra.errors import PlatformError

    name = locks.promotion_lock("it-lock-busy")
    taken, release = threading.Event(), threading.Event()

    def holder():
        with locks.held(name):
            taken.set()
            release.wait(60)

    # In this test's context: Prefect's settings (the platform's API) are context variables,
    # and a bare thread would use a temporary server of Prefect's own.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(holder,))
    thread.start()
    ran = []
    try:
        assert taken.wait(60)
        monkeypatch.setattr(locks, "WAIT_S", 2.0)
        with pytest.raises(PlatformError, match=f"the lock {name} was not free within 2 s"), locks.held(name):
            ran.append(True)
    finally:
        release.set()
        thread.join(60)
    assert ran == []
