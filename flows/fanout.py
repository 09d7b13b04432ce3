"""Fan a search out over the work pool and see it through to the requested trial count.

The parent (the training flow) starts N `search-batch` flow runs on one study. A batch
whose worker dies stops beating: Optuna fails its running trial and queues a retry, and
the parent, seeing the batch idle past the grace period, marks it crashed and starts
another. The search ends when the study holds the requested number of finished trials.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import optuna
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelled, Crashed

from experiments.search import finished_trials, open_study
from experiments.training import TrainingContext
from flows.search_batch import BATCH_DEPLOYMENT


@dataclass
class Batch:
    flow_run_id: str
    submitted_at: float
    lost: bool = False
    state: str = "SCHEDULED"
    final: bool = False
    trials: list = field(default_factory=list)


def is_lost(batch: Batch, now: float, idle_grace_s: float, startup_grace_s: float) -> bool:
    """A batch is lost when it is still RUNNING in Prefect but has done nothing for longer
    than its heartbeat could explain: no trial running, none finished within the grace."""
    if batch.final or batch.state != "RUNNING":
        return False
    if any(t.state == TrialState.RUNNING for t in batch.trials):
        return False
    ends = [t.datetime_complete.timestamp() for t in batch.trials if t.datetime_complete]
    if ends:
        return now - max(ends) > idle_grace_s
    return now - batch.submitted_at > startup_grace_s


@dataclass(frozen=True)
class FanOutSettings:
    """How many batches run at once, and how long the parent waits on a batch or the search."""

    workers: int
    timeout_s: float = 3600.0
    idle_grace_s: float = 40.0
    startup_grace_s: float = 240.0
    poll_s: float = 2.0


def fan_out(
    storage,
    context: TrainingContext,
    settings: FanOutSettings,
    warm_start: list[dict],
    log: Callable[..., None],
) -> dict:
    """Run the context's search as batches on the work pool until its study holds the trials."""
    spec, trials = context.spec, context.spec.tuning.trials
    study = open_study(storage, context.tracking.study_name, spec.greater_is_better, spec.tuning.seed)
    for params in warm_start:
        study.enqueue_trial(params, skip_if_exists=True)
    batches: list[Batch] = []
    deadline = time.monotonic() + settings.timeout_s
    with get_client(sync_client=True) as client:
        while finished_trials(study) < trials:
            _refresh(client, study, batches)
            _give_up_on_lost(client, batches, settings, log)
            live = _launch(batches, settings.workers, context.tracking.run_id, log)
            if not live:
                raise RuntimeError(
                    f"the search stopped at {finished_trials(study)} of {trials} trials: "
                    f"{len(batches)} batches ended or were lost ({_summary(batches)})"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the search did not reach {trials} trials in {settings.timeout_s:.0f} s")
            time.sleep(settings.poll_s)
        _wait_for_batches(client, study, batches, settings.idle_grace_s, settings.poll_s)
    return {"batches": len(batches), "lost": sum(b.lost for b in batches), "summary": _summary(batches)}


def _give_up_on_lost(client, batches: list[Batch], settings: FanOutSettings, log) -> None:
    now = datetime.now(UTC).timestamp()
    for batch in batches:
        if not batch.lost and is_lost(batch, now, settings.idle_grace_s, settings.startup_grace_s):
            batch.lost = True
            log("batch %s stopped responding (its worker died?); starting another",
                batch.flow_run_id)
            _mark_crashed(client, batch)


def _launch(batches: list[Batch], workers: int, parent_run_id: str, log) -> list[Batch]:
    """Start batches until `workers` are live, at most three launches a worker; the live ones."""
    live = [b for b in batches if not b.final and not b.lost]
    while len(live) < workers and len(batches) < workers * 3:
        run = run_deployment(BATCH_DEPLOYMENT, parameters={
            "params": {"parent_run_id": parent_run_id}}, timeout=0, as_subflow=True)
        batch = Batch(str(run.id), datetime.now(UTC).timestamp())
        batches.append(batch)
        live.append(batch)
        log("started search batch %s (%d of %d live)", run.id, len(live), workers)
    return live


def _refresh(client, study: optuna.Study, batches: list[Batch]) -> None:
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)  # a dead worker's running trial becomes FAIL, and is retried
    by_batch: dict[str, list] = {}
    for trial in study.get_trials(deepcopy=False):
        by_batch.setdefault(trial.user_attrs.get("batch"), []).append(trial)
    for batch in batches:
        if batch.final:
            continue
        state = client.read_flow_run(batch.flow_run_id).state
        batch.state = state.type.value if state else "SCHEDULED"
        batch.final = bool(state and state.is_final())
        batch.trials = by_batch.get(batch.flow_run_id, [])


def _mark_crashed(client, batch: Batch) -> None:
    client.set_flow_run_state(
        batch.flow_run_id,
        Crashed(message="no heartbeat from this batch's trials: its worker stopped"),
        force=True,
    )
    batch.final = True


def _wait_for_batches(client, study, batches: list[Batch], idle_grace_s: float, poll_s: float) -> None:
    """Batches stop at the end of their current trial once the count is reached."""
    deadline = time.monotonic() + idle_grace_s * 3
    while time.monotonic() < deadline:
        _refresh(client, study, batches)
        now = datetime.now(UTC).timestamp()
        pending = [b for b in batches if not b.final and not b.lost]
        for batch in pending:
            if batch.state in ("SCHEDULED", "PENDING"):  # never started: no longer needed
                client.set_flow_run_state(batch.flow_run_id, Cancelled(
                    message="the search reached its trial count without this batch"), force=True)
                batch.final = True
                continue
            if is_lost(batch, now, idle_grace_s, startup_grace_s=idle_grace_s):
                batch.lost = True
                _mark_crashed(client, batch)
        if not [b for b in batches if not b.final and not b.lost]:
            return
        time.sleep(poll_s)


def _summary(batches: list[Batch]) -> str:
    states: dict[str, int] = {}
    for batch in batches:
        key = "LOST" if batch.lost else batch.state
        states[key] = states.get(key, 0) + 1
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(states.items()))
