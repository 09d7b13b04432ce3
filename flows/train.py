"""The training flow: load, validate, split, tune, fit, log, register and promote, link.

Each task is a thin adapter over a plain function in `experiments/` or `registry/`.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for
from pydantic import BaseModel, Field

from experiments import training
from experiments.card import CARD_ARTIFACT, CardDecision
from experiments.data import Split
from experiments.diagnostics import FitScores, gap_sentence
from experiments.profile import (
    PROFILE_ARTIFACT,
    PendingProfile,
    Profile,
    close_profile,
    collect_profile,
    no_profile,
    start_profile,
)
from experiments.spec import ExperimentSpec, load_spec, with_overrides
from experiments.threads import fit_threads
from experiments.tracking import LoggedPipeline, ensure_experiment, preload_model_logging
from experiments.validation import Dataset, load_dataset
from flows import locks, spare
from flows.events import announce_promotion
from flows.links import artifact_url, experiment_url, run_url
from flows.naming import name_this_run
from flows.recovery import label_this_process
from flows.schedules import schedule_monitoring
from flows.studies import storage_of, study_storage
from infra.errors import PlatformError
from monitoring.record import monitoring_experiment
from registry.approval import hold_for_approval
from registry.champion import point_to_card
from registry.gate import (
    ChampionOutput,
    GateResult,
    apply_gate,
    champion_now,
    decide_gate,
    score_champion,
)
from registry.promotion import HoldoutMetric


class TrainParameters(BaseModel):
    """What a person fills in to launch training (the form in the Prefect UI)."""

    experiment: str = Field(
        "penguins",
        description="A spec file's path, or the name of a spec under experiments/specs",
    )
    data: str | None = Field(
        None, description="Data to train on instead of the spec's data.source (path or URI)"
    )
    trials: int | None = Field(None, ge=1, description="Optuna trials (default: the spec's)")
    trigger: Literal["manual", "drift", "quality", "schedule"] = Field(
        "manual", description="Why this training runs; recorded as the tag mlops.trigger"
    )
    monitoring_run_id: str | None = Field(
        None, description="The drift check that caused this training, if any"
    )
    warm_start: dict | None = Field(
        None, description="Trial parameters to try first (retraining passes the champion's)"
    )
    workers: int = Field(
        1, ge=1, le=64,
        description="Search batches run at once on the work pool (full profile; 1 = in this run)",
    )


def resolve_spec(params: TrainParameters) -> ExperimentSpec:
    """The spec with this run's overrides applied."""
    return with_overrides(load_spec(params.experiment), params.data, params.trials)


def _client() -> MlflowClient:
    # MLFLOW_TRACKING_URI is read by MLflow itself; the CLI sets it from `mlops status`.
    return MlflowClient()


def _run_url(experiment_id: str, run_id: str) -> str:
    return run_url(_client().tracking_uri, experiment_id, run_id)


@task(cache_policy=NO_CACHE)
def load_and_validate(spec: ExperimentSpec) -> Dataset:
    dataset = load_dataset(spec)
    get_run_logger().info(
        "%s: %d rows, %d numeric and %d categorical features, digest %s",
        spec.data.source, len(dataset.frame), len(dataset.contract.numeric),
        len(dataset.contract.categorical), dataset.digest,
    )
    return dataset


@task(cache_policy=NO_CACHE)
def split(spec: ExperimentSpec, dataset: Dataset) -> Split:
    return training.split(spec, dataset)


@task(cache_policy=NO_CACHE)
def start_tracking(
    spec: ExperimentSpec, dataset: Dataset, params: TrainParameters
) -> training.Tracking:
    extra = {"mlops.monitoring_run_id": params.monitoring_run_id} if params.monitoring_run_id else {}
    tracking = training.start_tracking(
        _client(), study_storage(training.study_base(spec, dataset)), spec, dataset,
        trigger=params.trigger, flow_run_id=flow_run.get_id(), extra_tags=extra,
    )
    get_run_logger().info("MLflow run: %s", _run_url(tracking.experiment_id, tracking.run_id))
    return tracking


class StartingProfile:
    """The profile, started from a thread: as a job of this process's helper
    (flows/spare.py), sent once its data is pickled; without a helper, in a spawned child,
    which returns only once the child has read its arguments, which it does after importing
    pandas and scikit-learn (1-2 s quiet, 9 s on a busy machine). The flow waits for neither."""

    def __init__(self, spec: ExperimentSpec, dataset: Dataset) -> None:
        contract = dataset.contract
        pool = ThreadPoolExecutor(1, thread_name_prefix="mlops-profile-start")
        self._future = pool.submit(start_profile, dataset.frame, contract.target, spec.task,
                                   contract.numeric, contract.categorical, spec.tuning.seed,
                                   behind=spare.behind)
        pool.shutdown(wait=False)  # the thread ends once the child has started

    def pending(self) -> PendingProfile:
        """The started profile (an error starting it is raised here, in the flow)."""
        return self._future.result()


def begin_profile(spec: ExperimentSpec, dataset: Dataset) -> StartingProfile | None:
    """Start profiling the training data in a child process, alongside the search; None when
    the spec says `profile: false`."""
    return StartingProfile(spec, dataset) if spec.profile else None


def stop_profile(starting: StartingProfile | None) -> None:
    """End the profile's child process, if one was started."""
    if starting is not None:
        close_profile(starting.pending())


@task(cache_policy=NO_CACHE)
def log_profile(context: training.TrainingContext, starting: StartingProfile | None) -> Profile:
    """The profile as `data/profile.html` on the parent run; its warnings to the flow's log.
    A profile that failed is one more warning, never a failed training."""
    logger, run_id = get_run_logger(), context.tracking.run_id
    if starting is None:
        logger.info("data profile: none (`profile: false` in the spec)")
        return no_profile()
    started = time.perf_counter()
    profile = collect_profile(starting.pending())
    waited = time.perf_counter() - started
    if profile.html is not None:
        _client().log_artifact(run_id, str(profile.html), str(Path(PROFILE_ARTIFACT).parent))
        logger.info("data profile: %s (%.1f s in its own process; the training waited %.1f s)",
                    PROFILE_ARTIFACT, profile.seconds, waited)
    for warning in profile.warnings:
        logger.warning("data profile: %s", warning)
    for note in profile.notes:
        logger.info("data profile: %s", note)
    return profile


def _progress(logger, spec: ExperimentSpec):
    """An Optuna callback logging each finished trial against the best so far."""
    total = spec.tuning.trials

    def progress(study, trial) -> None:
        best = study.best_value if any(t.value is not None for t in study.trials
                                       if t.state.name == "COMPLETE") else float("nan")
        value = "" if trial.value is None else f" {spec.metric}={trial.value:.4f}"
        logger.info("trial %d/%d %s%s | best %.4f", trial.number + 1, total,
                    trial.state.name.lower(), value, best)

    return progress


@task(cache_policy=NO_CACHE)
def tune(
    context: training.TrainingContext, warm_start: dict | None, workers: int = 1
) -> training.SearchResult:
    logger = get_run_logger()
    warm = [warm_start] if warm_start else []
    missing = training.record_missing_trials(_client(), storage_of(context.tracking), context)
    if missing:
        logger.info("logged %d trials the interrupted search had not recorded in MLflow", missing)
    if workers > 1:
        from flows.fanout import FanOutSettings, fan_out
        from infra.settings import process_settings

        settings = FanOutSettings(workers, timeout_s=context.spec.tuning.timeout_s + 600,
                                  idle_grace_s=process_settings().fanout_idle_grace_s)
        outcome = fan_out(storage_of(context.tracking), context, settings, warm, logger.info)
        logger.info("search batches: %s", outcome["summary"])
        _client().set_tag(context.tracking.run_id, "mlops.search_batches", outcome["summary"])
        # A batch whose worker died between a trial's end and its child run left that trial
        # unrecorded: the summary counts the study's trials, so each gets its child run first.
        late = training.record_missing_trials(_client(), storage_of(context.tracking), context)
        if late:
            logger.info("logged %d trials their batches had not recorded in MLflow", late)
    else:
        training.run_trials(_client(), storage_of(context.tracking), context,
                            progress=_progress(logger, context.spec), warm_start=warm,
                            elsewhere=spare.spare_beside())
    return training.summarize_search(_client(), storage_of(context.tracking), context)


@task(cache_policy=NO_CACHE)
def fit_and_evaluate(
    context: training.TrainingContext, search: training.SearchResult
) -> training.Evaluation:
    return training.fit_and_evaluate(context, search)


@task(cache_policy=NO_CACHE)
def diagnose_fit(context: training.TrainingContext, search: training.SearchResult,
                 evaluation: training.Evaluation) -> training.Diagnosis:
    return training.diagnose_fit(_client(), context, search, evaluation, spare.beside)


@task(cache_policy=NO_CACHE)
def log_model(context: training.TrainingContext, search: training.SearchResult,
              evaluation: training.Evaluation) -> LoggedPipeline:
    return training.log_model(_client(), context, search, evaluation)


def _output_fn(context: training.TrainingContext, evaluation: training.Evaluation):
    holdout_x, _ = training.features_and_target(context.data.holdout, context.contract)
    return training.holdout_output_fn(holdout_x, context.spec.task, evaluation.classes)


def champion_output(tracking_uri: str, name: str, holdout_x, task: str,
                    classes: tuple | None) -> ChampionOutput | None:
    """The champion's output on a holdout (a download, a load and a prediction): a job for
    the spare process."""
    return score_champion(MlflowClient(tracking_uri), name,
                          training.holdout_output_fn(holdout_x, task, classes))


@dataclass(frozen=True)
class EarlyChampion:
    """The champion's output asked of the spare process before the search, for the classes
    the refit was expected to know."""

    classes: tuple | None
    output: spare.Pending


def score_champion_early(context: training.TrainingContext) -> EarlyChampion | None:
    """The champion scored by the spare process while the search runs, off the steps after
    it (~0.35 s on the bench's data, more with the diagnosis beside it); None without a
    spare. The gate scores it again if `champion` moves meanwhile."""
    beside = spare.spare_beside()
    if beside is None:
        return None
    holdout_x, _ = training.features_and_target(context.data.holdout, context.contract)
    classes = training.expected_classes(context)
    return EarlyChampion(classes, beside(champion_output, _client().tracking_uri,
                                         context.spec.name, holdout_x, context.spec.task, classes))


@task(cache_policy=NO_CACHE)
def score_the_champion(
    context: training.TrainingContext, evaluation: training.Evaluation,
    early: EarlyChampion | None,
) -> ChampionOutput | None:
    """The champion's output on this holdout: the spare's, taken during the search, or taken
    here beside the diagnosis; the gate scores it again only if `champion` moves meanwhile.
    Not under `fit_threads`: the diagnosis holds that limit in the flow's thread, and two
    threads' limits overlapping would restore the native pools in the wrong order."""
    if early is not None and early.classes == evaluation.classes:
        return early.output.result()
    return score_champion(_client(), context.spec.name, _output_fn(context, evaluation))


@task(cache_policy=NO_CACHE)
def log_scores(context: training.TrainingContext, evaluation: training.Evaluation,
               diagnosis: training.Diagnosis, model: LoggedPipeline) -> None:
    training.log_scores(_client(), context, evaluation, diagnosis, model)


def promote(
    client: MlflowClient, context: training.TrainingContext, evaluation: training.Evaluation,
    model: LoggedPipeline, scored: ChampionOutput | None, tags: dict[str, str],
) -> GateResult:
    """Register the version and compare it with the champion of this moment, as one step.

    A compare-and-swap under the model's lock: the champion compared with is the one
    replaced, even when another training of this model reaches the gate at the same time
    (`scored`, the champion's output taken before, is used only if it still is the champion).
    """
    spec, classes = context.spec, evaluation.classes
    _, holdout_y = training.features_and_target(context.data.holdout, context.contract)
    metric = HoldoutMetric.named(spec.metric, spec.greater_is_better, classes)
    with locks.held(locks.promotion_lock(spec.name)), fit_threads(len(holdout_y)):
        champion = champion_now(client, spec.name, scored, _output_fn(context, evaluation))
        decision = decide_gate(holdout_y.to_numpy(), evaluation.output, champion, metric,
                               seed=spec.tuning.seed)
        if spec.promotion.mode == "approve":  # a winner waits for a person, as challenger
            decision = hold_for_approval(decision)
        return apply_gate(client, spec.name, model, context.tracking.run_id, tags,
                          decision, None if champion is None else champion.version)


@task(cache_policy=NO_CACHE)
def register_and_promote(
    context: training.TrainingContext, evaluation: training.Evaluation, model: LoggedPipeline,
    scored: ChampionOutput | None, params: TrainParameters,
) -> GateResult:
    tags = {"mlops.trigger": params.trigger, "mlops.data_digest": context.dataset.digest,
            "mlops.flow_run_id": flow_run.get_id() or ""}
    result = promote(_client(), context, evaluation, model, scored, tags)
    _client().set_tag(context.tracking.run_id, "mlops.model_version", result.version)
    _client().update_registered_model(context.spec.name, description=model_description(context))
    if result.promoted:
        announce_promotion(_client().tracking_uri, context.spec.name, result, params.trigger,
                           _run_url(context.tracking.experiment_id, context.tracking.run_id))
    get_run_logger().info(
        "version %s %s: %s", result.version,
        "is the new champion" if result.promoted else "is a challenger", result.decision.reason,
    )
    if awaits_approval(result):
        ask_for_approval(context.spec, result, params.trigger)
    return result


def decide_and_register(
    context: training.TrainingContext, search: training.SearchResult, params: TrainParameters,
    early: EarlyChampion | None = None,
) -> tuple[training.Evaluation, training.Diagnosis, GateResult]:
    """After the search: refit and score on the holdout, then three things side by side (the
    model's upload, the champion's scoring, and the plots and diagnosis on this process's
    CPU, the search's plots and the learning curve in the spare process when there is one),
    then the scores, the registration and the gate. Nothing is registered before all three
    have succeeded, and none is left running when one fails."""
    search_plots = training.plot_search(storage_of(context.tracking), context, spare.beside)
    evaluation = fit_and_evaluate(context, search)
    model = log_model.submit(context, search, evaluation)
    champion = score_the_champion.submit(context, evaluation, early)
    try:
        diagnosis = diagnose_fit(context, search, evaluation)
        training.log_pngs(_client(), context.tracking.run_id, search_plots.result())
    finally:
        wait([model, champion])
    log_scores(context, evaluation, diagnosis, model.result())
    gate = register_and_promote(context, evaluation, model.result(), champion.result(), params)
    return evaluation, diagnosis, gate


def awaits_approval(gate: GateResult) -> bool:
    return gate.decision.awaiting_approval


def ask_for_approval(spec: ExperimentSpec, gate: GateResult, trigger: str) -> None:
    """The version's own approval flow run, started and left waiting for a person."""
    from flows.approval import ApproveParameters, request_approval

    try:
        run_id = request_approval(ApproveParameters(
            model=spec.name, version=gate.version, gate_reason=gate.decision.reason,
            timeout_hours=spec.promotion.approval_timeout_hours, trigger=trigger))
    except ObjectNotFound as error:
        raise PlatformError(
            f"the `approve` deployment is not served, so version {gate.version} of {spec.name} "
            "cannot wait for approval (it stays challenger): start the platform with `mlops up`, "
            f"or promote it with `mlops promote {spec.name} {gate.version} --reason ...`") from error
    get_run_logger().info("version %s awaits approval: %s", gate.version,
                          url_for("flow-run", obj_id=run_id, url_type="ui") or run_id)


@task(cache_policy=NO_CACHE)
def write_card(context: training.TrainingContext, search: training.SearchResult,
               evaluation: training.Evaluation, fit: FitScores, profile: Profile,
               gate: GateResult) -> None:
    """The version's model card on the parent run, and its link in the version's description."""
    decision = CardDecision(gate.version, gate.promoted, gate.decision.reason, gate.champion_version)
    training.write_card(_client(), context, search, evaluation, fit, profile.warnings, decision)
    tracking = context.tracking
    point_to_card(_client(), context.spec.name, gate.version,
                  artifact_url(_client().tracking_uri, tracking.experiment_id, tracking.run_id,
                               CARD_ARTIFACT))


def model_description(context: training.TrainingContext) -> str:
    """The registered model's description in MLflow's UI: what it predicts, from which data,
    how versions are compared, and where its checks are."""
    spec, client = context.spec, _client()
    checks = client.get_experiment(ensure_experiment(client, monitoring_experiment(spec.name)))
    return (
        f"Predicts `{spec.data.target}` ({spec.task}) from `{spec.data.source}` "
        f"({len(context.dataset.frame)} rows at the latest training). A new version takes "
        f"`champion` only when it beats the champion on the same holdout by {spec.metric} "
        f"({'higher' if spec.greater_is_better else 'lower'} is better) beyond noise"
        f"{' and a person approves it' if spec.promotion.mode == 'approve' else ''}; otherwise "
        f"it waits as `challenger`. Drift and live-quality checks: [{checks.name}]"
        f"({experiment_url(client.tracking_uri, checks.experiment_id)})."
    )


@task(cache_policy=NO_CACHE)
def link(context: training.TrainingContext, evaluation: training.Evaluation,
         search: training.SearchResult, fit: FitScores, profile: Profile, gate: GateResult,
         params: TrainParameters) -> None:
    spec, tracking = context.spec, context.tracking
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in evaluation.metrics.items())
    gap = gap_sentence(fit)
    address = artifact_url(_client().tracking_uri, tracking.experiment_id, tracking.run_id,
                           PROFILE_ARTIFACT)
    data = f"[Data profile]({address})" if profile.html is not None else "Data profile: none"
    card = artifact_url(_client().tracking_uri, tracking.experiment_id, tracking.run_id, CARD_ARTIFACT)
    markdown = (
        f"# {spec.name}: version {gate.version}\n\n"
        f"[MLflow run]({_run_url(tracking.experiment_id, tracking.run_id)})\n\n"
        f"**{_standing(gate)}**: "
        f"{gate.decision.reason}\n\n"
        f"Best model: `{search.family}` {search.params} "
        f"(cv {spec.metric} {search.cv_score:.4f} over {search.trials} trials)\n\n"
        f"{fit.line()}{f' {gap}' if gap else ''}\n\n"
        f"| holdout metric | value |\n|---|---|\n{rows}\n\n"
        f"[Model card]({card}) | {data}\n\n{profile.markdown()}\n\n"
        f"Trigger: {params.trigger}{_cause(params.monitoring_run_id)}\n"
    )
    # The same summary is the MLflow run's description (the UI's "Description" box).
    _client().set_tag(tracking.run_id, "mlflow.note.content", markdown)
    create_markdown_artifact(
        markdown=markdown, key=f"{spec.slug}-training",
        description=f"Training of {spec.name}: MLflow run and champion decision",
    )


def _standing(gate: GateResult) -> str:
    if gate.promoted:
        return "Promoted to champion"
    return "Challenger, awaiting approval" if awaits_approval(gate) else "Challenger"


def _cause(monitoring_run_id: str | None) -> str:
    """A retraining's link to the check that caused it."""
    if not monitoring_run_id:
        return ""
    try:
        check = _client().get_run(monitoring_run_id)
    except MlflowException:  # not a run of this server (an event sent by hand): named only
        return f" (after check {monitoring_run_id})"
    return f" (after [the check]({_run_url(check.info.experiment_id, monitoring_run_id)}))"


@task(cache_policy=NO_CACHE)
def schedule_checks(spec: ExperimentSpec, gate: GateResult) -> None:
    """Whenever the model has a champion, its monitoring schedule follows this training's spec."""
    if gate.champion_version is None:
        return
    try:
        with get_client(sync_client=True) as prefect:
            schedule_monitoring(prefect, spec.name, spec.monitoring.every_minutes)
    except PlatformError as error:  # no runner has registered `monitor`: the training stands
        get_run_logger().warning("%s is not scheduled for monitoring: %s", spec.name, error)


@flow(name="train", log_prints=False)
def train(params: TrainParameters) -> dict:
    """Train EXPERIMENT: search, fit, register, and promote the winner."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    label_this_process()
    spec = resolve_spec(params)
    name_this_run("train", spec.name, params.trigger)
    dataset = load_and_validate(spec)
    starting = begin_profile(spec, dataset)  # alongside everything up to the gate
    preload_model_logging()  # alongside the search
    try:
        data = split(spec, dataset)
        tracking = start_tracking(spec, dataset, params)
        context = training.TrainingContext(spec, dataset, data, tracking)
        try:
            # The lease tells a training started meanwhile that this study is not to be resumed.
            with training.keep_lease(storage_of(tracking), tracking):
                early = score_champion_early(context)
                search = tune(context, params.warm_start, params.workers)
                evaluation, diagnosis, gate = decide_and_register(context, search, params, early)
                profile = log_profile(context, starting)
                write_card(context, search, evaluation, diagnosis.fit, profile, gate)
                link(context, evaluation, search, diagnosis.fit, profile, gate, params)
        except BaseException:
            training.give_up(_client(), storage_of(tracking), tracking)
            raise
    finally:
        stop_profile(starting)
    training.finish(_client(), storage_of(tracking), tracking)
    schedule_checks(spec, gate)
    return {
        "experiment": spec.name,
        "run_id": tracking.run_id,
        "run_url": _run_url(tracking.experiment_id, tracking.run_id),
        "model_name": spec.name,
        "model_version": gate.version,
        "promoted": gate.promoted,
        "awaiting_approval": awaits_approval(gate),
        "champion_version": gate.champion_version,
        "reason": gate.decision.reason,
        "metric": {"name": spec.metric, "value": gate.decision.candidate_score},
        "holdout_metrics": evaluation.metrics,
        "best_model": search.family,
        "best_params": search.params,
        "cv_score": search.cv_score,
        "trials": search.trials,
        "trigger": params.trigger,
        "flow_run_id": str(flow_run.get_id()),
    }


if __name__ == "__main__":
    train(TrainParameters())
