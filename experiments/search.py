"""The Optuna study: persisted, resumable, run to the requested number of finished trials."""

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def journal_storage(path: Path) -> JournalStorage:
    """A file journal: ~2 ms a trial against SQLite's ~17 ms, and safe for parallel writers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def database_storage(url: str, heartbeat_s: int = 5, grace_s: int = 20) -> RDBStorage:
    """A study in a database, for workers on several machines. A trial whose process stops
    beating for `grace_s` is failed, and a copy of it is queued for whoever runs next."""
    # Here, not at the top: SQLAlchemy (0.25 s to import) serves only a database's studies.
    from experiments.idle_ping import ping_when_idle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(
            url,
            heartbeat_interval=heartbeat_s,
            grace_period=grace_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
        )
    ping_when_idle(storage.engine)  # not pool_pre_ping: a round trip at every storage call
    return storage


def open_study(
    storage, name: str, greater_is_better: bool, seed: int
) -> optuna.Study:
    """Create the study or load it to resume; RUNNING trials of a dead process become FAIL.

    With heartbeats (several workers on one study) only trials whose heartbeat stopped are
    failed; without them the caller is the study's only process, so every RUNNING trial is
    a leftover.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group=True lets TPE model each model family's parameters together.
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize" if greater_is_better else "minimize",
        sampler=sampler,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        load_if_exists=True,
    )
    if is_heartbeat_enabled(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        return study
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE))


def run_search(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    timeout_s: float,
    callbacks: Sequence[Callable] = (),
    warm_start: Sequence[dict] = (),
    max_failures_in_a_row: int = 5,
) -> None:
    """Run until the study holds n_trials finished trials, the timeout passes, or trials
    keep failing; failed trials (a model that cannot fit these data) do not count."""
    if finished_trials(study) >= n_trials:
        return
    for params in warm_start:
        study.enqueue_trial(params, skip_if_exists=True)
    failures = 0

    def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal failures
        failures = failures + 1 if trial.state == TrialState.FAIL else 0
        if failures >= max_failures_in_a_row or finished_trials(study) >= n_trials:
            study.stop()

    def recording_failures(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except ValueError as error:
            # Optuna 5 keeps no failure reason on the trial; keep ours for the report.
            trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}"[:2000])
            raise

    study.optimize(
        recording_failures,
        timeout=timeout_s,
        callbacks=[*callbacks, stop_when_done],
        catch=(ValueError,),
    )


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        reason = failed[-1].user_attrs.get("fail_reason", "") if failed else ""
        raise RuntimeError(f"no trial completed{': ' + reason if reason else ''}")
    return study.best_trial
