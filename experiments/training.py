"""The training stages as plain functions; the Prefect flow wires them as tasks.

Every stage after the split takes the TrainingContext (spec, data, split, MLflow run) plus
an MlflowClient or a storage and what is its own, and returns a small value; none reads
the environment or global state.
"""

import getpass
import hashlib
import json
import logging
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import optuna
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient
from sklearn.base import clone

from experiments import lease
from experiments.artifacts import CONTRACT_ARTIFACT, REFERENCE_ARTIFACT, SPEC_ARTIFACT
from experiments.card import (
    CARD_ARTIFACT,
    CardData,
    CardDecision,
    CardFacts,
    CardSearch,
    build_card,
    target_counts,
)
from experiments.contract import DataContract
from experiments.data import Split, sample_rows, split_holdout
from experiments.diagnostics import FitScores
from experiments.evaluation import (
    LEARNING_CURVE_FOLDS,
    LEARNING_CURVE_MIN_S,
    LEARNING_CURVE_SHARE,
    feature_importance,
    holdout_pngs,
    importance_png,
    importance_scorer,
    learning_curve_png,
    metric_scorer,
    search_plot_pngs,
)
from experiments.metrics import holdout_metrics, model_output, score
from experiments.objective import Problem, cv_folds, make_objective
from experiments.pipelines import build_pipeline, feature_frame
from experiments.search import best_trial, finished_trials, open_study, run_search
from experiments.spaces import split_params
from experiments.spec import ExperimentSpec
from experiments.threads import fit_threads, threads_per_trial
from experiments.tracking import (
    LoggedPipeline,
    TrialRecorder,
    ensure_experiment,
    log_batch,
    log_dataset,
    log_sklearn_model,
    record_missing,
)
from experiments.validation import Dataset

log = logging.getLogger(__name__)

REFERENCE_MAX_ROWS = 50_000
MAX_ATTEMPT_RACES = 20  # each lost race means another training took that number: 20 is far past use


class Later(Protocol):
    def result(self): ...


# beside(fn, *args, **kwargs): fn's result to come, maybe computed in another process
# (flows.spare.beside); run_now computes it at once, here.
Beside = Callable[..., Later]


@dataclass(frozen=True)
class Tracking:
    experiment_id: str
    run_id: str
    study_name: str
    owner: str = ""  # who holds the study's lease (experiments.lease)


@dataclass(frozen=True)
class TrainingContext:
    """What every step after the split works on: the spec, the data, its split, the MLflow run."""

    spec: ExperimentSpec
    dataset: Dataset
    data: Split
    tracking: Tracking

    @property
    def contract(self) -> DataContract:
        return self.dataset.contract


@dataclass(frozen=True)
class SearchResult:
    family: str
    params: dict
    cv_score: float
    trials: int
    fit_seconds: float = 0.0  # the trials' fitting and scoring time, all added up
    fold_scores: tuple[float, ...] = ()  # the best trial's score on each fold
    family_best: dict = field(default_factory=dict)  # the best score each family reached


@dataclass(frozen=True)
class Evaluation:
    pipeline: object
    metrics: dict[str, float]
    output: np.ndarray = field(repr=False)
    classes: tuple | None


def split(spec: ExperimentSpec, dataset: Dataset) -> Split:
    t = spec.tuning
    return split_holdout(dataset.frame, spec.data.target, spec.task, t.holdout_fraction, t.seed)


def expected_classes(context: TrainingContext) -> tuple | None:
    """The classes a pipeline refitted on the training split will know, before it is fitted:
    a classifier's `classes_` are its training labels, sorted. None for regression."""
    if context.spec.task != "classification":
        return None
    return tuple(np.unique(context.data.train[context.contract.target]))


def features_and_target(frame: pd.DataFrame, contract: DataContract) -> tuple[pd.DataFrame, pd.Series]:
    features = feature_frame(frame, contract.numeric, contract.categorical)
    return features, frame[contract.target].reset_index(drop=True)


def spec_digest(spec: ExperimentSpec) -> str:
    """What makes two searches the same search (monitoring settings do not)."""
    relevant = spec.model_dump(mode="json", include={"name", "task", "data", "tuning"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]


def git_commit(directory: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=directory, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def study_base(spec: ExperimentSpec, dataset: Dataset) -> str:
    """What the studies of one spec on one data set are named after: each training of them
    is the study `{base}-{n}`, its n-th attempt."""
    return f"{spec.slug}-{dataset.digest[:12]}-{spec_digest(spec)}"


def base_of(study_name: str) -> str:
    """The base of a training's study name (`{base}-{n}`)."""
    return study_name.rsplit("-", 1)[0]


def start_tracking(
    client: MlflowClient,
    storage,
    spec: ExperimentSpec,
    dataset: Dataset,
    *,
    trigger: str,
    flow_run_id: str | None,
    extra_tags: dict[str, str],
) -> Tracking:
    """Open the parent run, or resume one whose training is gone (its lease ran out)."""
    experiment_id = ensure_experiment(client, spec.name)
    base = study_base(spec, dataset)
    owner = lease.new_owner()
    claimed = _claim_unfinished_study(storage, base, owner)
    if claimed is not None and claimed[1] is not None:
        name, run_id = claimed
        client.update_run(run_id, status="RUNNING")
        log.info("resuming the interrupted search %s (MLflow run %s)", name, run_id)
        _log_inputs(client, run_id, spec, dataset)  # those a training killed early did not
        return Tracking(experiment_id, run_id, name, owner)
    if claimed is not None:  # a training killed before it tied its study: its run, if any
        name, run_id = claimed[0], _run_of_study(client, experiment_id, claimed[0])
        log.info("taking over study %s, left untied by a stopped training (MLflow run %s)",
                 name, run_id or "none yet")
    else:
        name, run_id = _create_attempt(storage, base, spec, owner), None
    if run_id is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        tags = _run_tags(dataset, name, trigger, flow_run_id, extra_tags)
        run_id = client.create_run(experiment_id, run_name=f"{trigger}-{stamp}", tags=tags).info.run_id
    # Tied at once, so a training killed from here on is resumed in this run, not left
    # RUNNING beside a new one; the inputs are logged after (again when resumed: it is a no-op
    # for what is there, as MLflow takes the same params and dataset input twice).
    _tie_study(storage, name, run_id)
    _log_inputs(client, run_id, spec, dataset)
    return Tracking(experiment_id, run_id, name, owner)


def _run_of_study(client: MlflowClient, experiment_id: str, study_name: str) -> str | None:
    """The run a training opened for `study_name` (its tag), if it got that far."""
    runs = client.search_runs([experiment_id], f"tags.`mlops.study_name` = '{study_name}'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


def _run_tags(
    dataset: Dataset, study_name: str, trigger: str, flow_run_id: str | None, extra_tags: dict[str, str]
) -> dict[str, str]:
    """Why the run exists, on what data and contract, from which commit."""
    tags = {
        "mlops.flow_run_id": flow_run_id or "",
        "mlops.trigger": trigger,
        "mlops.data_digest": dataset.digest,
        "mlops.study_name": study_name,
        "mlops.contract.columns": ",".join(dataset.contract.feature_names)[:5000],
        "mlops.contract.target": dataset.contract.target,
        "mlops.contract.numeric": str(len(dataset.contract.numeric)),
        "mlops.contract.categorical": str(len(dataset.contract.categorical)),
        **extra_tags,
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {**tags, **run_origin(trigger)}


# Who a run is "Created by" in MLflow's UI when no person started it.
_STARTED_BY = {"drift": "drift retraining", "quality": "quality retraining", "schedule": "schedule"}


def run_origin(trigger: str) -> dict[str, str]:
    """The tags MLflow's fluent API sets on a run it starts (`mlflow.user`, the source), which
    fill the UI's "Created by" and "Source" columns: the person, or what started the run."""
    return {
        "mlflow.user": _STARTED_BY.get(trigger) or getpass.getuser(),
        "mlflow.source.name": "flows/train.py",  # the training flow, as `mlops train` runs it
        "mlflow.source.type": "LOCAL",
    }


def _log_inputs(client: MlflowClient, run_id: str, spec: ExperimentSpec, dataset: Dataset) -> None:
    """The search's settings as params, the data as a dataset input, the contract and spec."""
    log_batch(
        client,
        run_id,
        params={
            "task": spec.task,
            "target": spec.data.target,
            "data_source": spec.data.source,
            "metric": spec.metric,
            "models": ",".join(spec.models),
            "trials": spec.tuning.trials,
            "cv_folds": spec.tuning.cv_folds,
            "holdout_fraction": spec.tuning.holdout_fraction,
            "seed": spec.tuning.seed,
            "rows": len(dataset.frame),
        },
    )
    log_dataset(client, run_id, dataset.frame, dataset.source, spec.data.target, f"{spec.name}-data")
    client.log_text(run_id, dataset.contract.to_json(), CONTRACT_ARTIFACT)
    # Monitoring and retraining read the spec back from the champion's run.
    client.log_text(run_id, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
                    SPEC_ARTIFACT)


def _create_attempt(storage, base: str, spec: ExperimentSpec, owner: str) -> str:
    """The next attempt's study, leased to `owner`. Creating a study is atomic in every
    storage: of two trainings that pick the same number, the later one takes the next."""
    for _ in range(MAX_ATTEMPT_RACES):
        name = f"{base}-{_next_attempt(storage, base)}"
        try:
            optuna.create_study(study_name=name, storage=storage,
                                direction="maximize" if spec.greater_is_better else "minimize")
        except optuna.exceptions.DuplicatedStudyError:
            continue
        lease.grant(storage, storage.get_study_id_from_name(name), owner)
        return name
    raise RuntimeError(f"lost the race for a new study of {base} {MAX_ATTEMPT_RACES} times")


def _tie_study(storage, name: str, run_id: str) -> None:
    """Tie the study to its run and mark it unfinished, so an interruption can resume it.

    Written after the lease, so no other training ever sees it unfinished and unowned."""
    study_id = storage.get_study_id_from_name(name)
    storage.set_study_user_attr(study_id, "mlflow_run_id", run_id)
    storage.set_study_user_attr(study_id, "finished", False)


def _studies_of(storage, base: str) -> list:
    return [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if s.study_name.startswith(f"{base}-")]


def _claim_unfinished_study(storage, base: str, owner: str) -> tuple[str, str | None] | None:
    """The newest unfinished study whose training is gone, taken over by `owner`, with its
    run; the run is None for a study its training never tied to one (killed in between)."""
    for summary in sorted(_studies_of(storage, base), key=lambda s: s.study_name, reverse=True):
        attrs = summary.user_attrs
        tied = attrs.get("finished") is False and bool(attrs.get("mlflow_run_id"))
        # Leased, so its creation is over (a study is created, then leased, then tied).
        untied = "finished" not in attrs and lease.LEASE_UNTIL in attrs
        if ((tied or untied) and not lease.is_live(attrs)
                and lease.take_over(storage, summary.study_name, attrs, owner)):
            return summary.study_name, attrs["mlflow_run_id"] if tied else None
    return None


def _next_attempt(storage, base: str) -> int:
    attempts = [int(s.study_name.rsplit("-", 1)[-1]) for s in _studies_of(storage, base)
                if s.study_name.rsplit("-", 1)[-1].isdigit()]
    return max(attempts, default=0) + 1


def problem_of(spec: ExperimentSpec, contract: DataContract) -> Problem:
    """What the spec's search fits and scores, on the contract's columns."""
    return Problem(spec.task, spec.metric, tuple(spec.models), tuple(contract.numeric),
                   tuple(contract.categorical), spec.tuning.seed, spec.tuning.feature_engineering)


def run_trials(
    client: MlflowClient,
    storage,
    context: TrainingContext,
    *,
    warm_start: Sequence[dict] = (),
    progress=None,
    batch: str | None = None,
    elsewhere: Beside | None = None,
) -> None:
    """Run trials of the study until it holds the spec's number of finished trials.

    The in-process search runs this once, then summarises; a fanned-out search runs it in
    several batches on one study at once, each in its own process: `batch` names the one
    this is (a user attribute of its trials) and seeds its sampler (the same seed in every
    batch would propose the same parameters). With `elsewhere` (a spare process's `beside`),
    the trials' child runs are written there.
    """
    trial_attrs = {"batch": batch} if batch is not None else {}
    spec, contract, tracking = context.spec, context.contract, context.tracking
    features, y = features_and_target(context.data.train, contract)
    objective = threads_per_trial(make_objective(
        features, y, problem_of(spec, contract),
        cv_folds(y, spec.task, spec.tuning.cv_folds, spec.tuning.seed),
    ), rows=len(features))
    if trial_attrs:
        inner = objective

        def objective(trial: optuna.Trial) -> float:
            for key, value in trial_attrs.items():
                trial.set_user_attr(key, value)
            return inner(trial)

    seed = spec.tuning.seed if batch is None else spec.tuning.seed + zlib.crc32(batch.encode())
    study = open_study(storage, tracking.study_name, spec.greater_is_better, seed)
    recorder = TrialRecorder(client, tracking.experiment_id, tracking.run_id, spec.metric,
                             elsewhere=elsewhere)
    callbacks = [recorder] + ([progress] if progress else [])
    try:
        run_search(study, objective, spec.tuning.trials, spec.tuning.timeout_s,
                   callbacks=callbacks, warm_start=warm_start)
    finally:
        recorder.close()


def record_missing_trials(client: MlflowClient, storage, context: TrainingContext) -> int:
    """Before a search (re)starts: log the study's finished trials that have no child run
    (MLflow stopped mid-search, or the training was killed), so no trial is lost."""
    spec, tracking = context.spec, context.tracking
    study = open_study(storage, tracking.study_name, spec.greater_is_better, spec.tuning.seed)
    recorder = TrialRecorder(client, tracking.experiment_id, tracking.run_id, spec.metric)
    try:
        return record_missing(recorder, client, study, tracking.experiment_id, tracking.run_id)
    finally:
        recorder.close()


def run_now(fn, /, *args, **kwargs) -> Future:
    """fn(*args, **kwargs) in this thread, as a finished Future (its error kept in it)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args, **kwargs))
    except Exception as error:  # noqa: BLE001 - raised again by result()
        future.set_exception(error)
    return future


def summarize_search(client: MlflowClient, storage, context: TrainingContext) -> SearchResult:
    """The best trial, logged on the parent run (its plots: plot_search)."""
    spec, tracking = context.spec, context.tracking
    study = optuna.load_study(study_name=tracking.study_name, storage=storage)
    best = best_trial(study)
    family, params = split_params(best.params)
    log_batch(
        client, tracking.run_id,
        params={f"best.{k}": v for k, v in best.params.items()},
        metrics={f"cv_{spec.metric}": best.value, "trials_finished": finished_trials(study)},
        tags={"mlops.best_trial": best.number},
    )
    trials = study.get_trials(deepcopy=False)
    fit_seconds = sum(t.user_attrs.get("fit_seconds", 0.0) for t in trials)
    return SearchResult(family, params, float(best.value), finished_trials(study), fit_seconds,
                        tuple(best.user_attrs.get("fold_scores", ())),
                        family_best(trials, spec.greater_is_better))


def plot_search(storage, context: TrainingContext, beside: Beside = run_now) -> Later:
    """The search's plots (optimisation history, parameter importances) as PNGs, drawn by
    `beside`; log_pngs logs them."""
    study = optuna.load_study(study_name=context.tracking.study_name, storage=storage)
    return beside(search_plot_pngs, study.get_trials(deepcopy=False),
                  context.spec.greater_is_better)


def log_pngs(client: MlflowClient, run_id: str, pngs: dict[str, bytes]) -> None:
    """Each PNG as plots/NAME.png on the run."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in pngs.items():
            (Path(tmp) / f"{name}.png").write_bytes(data)
        client.log_artifacts(run_id, tmp, "plots")


def family_best(trials, greater_is_better: bool) -> dict[str, float]:
    """The best cross-validated score each model family reached in the search's complete trials."""
    best: dict[str, float] = {}
    pick = max if greater_is_better else min
    for trial in trials:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            family = split_params(trial.params)[0]
            best[family] = pick(best.get(family, trial.value), trial.value)
    return best


def fit_and_evaluate(context: TrainingContext, search: SearchResult) -> Evaluation:
    """Refit the best pipeline on the whole training split and score it on the holdout
    (nothing logged: the gate needs only this, the plots and scores come beside it)."""
    spec, data, contract = context.spec, context.data, context.contract
    features, y = features_and_target(data.train, contract)
    pipeline = build_pipeline(spec.task, search.family, search.params,
                              contract.numeric, contract.categorical, spec.tuning.seed)
    holdout_x, holdout_y = features_and_target(data.holdout, contract)
    with fit_threads(len(features)):
        pipeline.fit(features, y)
        output = model_output(pipeline, holdout_x, spec.task)
    classes = tuple(pipeline.classes_) if spec.task == "classification" else None
    # The search's metric among them always (balanced_accuracy is not in the usual set).
    metrics = {**holdout_metrics(spec.task, holdout_y, output, classes),
               spec.metric: score(spec.metric, holdout_y, output, classes)}
    return Evaluation(pipeline, metrics, output, classes)


@dataclass(frozen=True)
class Diagnosis:
    """How the refitted pipeline fits: its scores beside each other, and the metrics to log
    (permutation importance per feature, the score on its own training data)."""

    fit: FitScores
    metrics: dict[str, float]


def diagnose_fit(client: MlflowClient, context: TrainingContext, search: SearchResult,
                 evaluation: Evaluation, beside: Beside = run_now) -> Diagnosis:
    """The holdout's plots, permutation importance, the score on the training data
    (`train_<metric>`, beside `cv_<metric>` and `holdout_<metric>`) and the learning curve;
    the figures (drawn by `beside`, the curve's fits the largest part) on the parent run, the
    metrics returned for `log_scores`."""
    spec, run_id = context.spec, context.tracking.run_id
    holdout_x, holdout_y = features_and_target(context.data.holdout, context.contract)
    features, y = features_and_target(context.data.train, context.contract)
    folds = cv_folds(y, spec.task, min(LEARNING_CURVE_FOLDS, spec.tuning.cv_folds), spec.tuning.seed)
    curve = beside(learning_curve_png, clone(evaluation.pipeline), features, y, folds,
                   metric_scorer(spec.task, spec.metric), seed=spec.tuning.seed,
                   budget_s=max(LEARNING_CURVE_MIN_S, LEARNING_CURVE_SHARE * search.fit_seconds))
    plots = beside(holdout_pngs, spec.task, holdout_y, evaluation.output, evaluation.classes)
    scorer = importance_scorer(spec.task, spec.metric, spec.greater_is_better, evaluation.classes)
    with fit_threads(len(features)):
        importances, spread = feature_importance(evaluation.pipeline, holdout_x, holdout_y, scorer,
                                                 seed=spec.tuning.seed)
        importance_chart = importance_png(importances, spread, spec.metric)
        train_score = score(spec.metric, y, model_output(evaluation.pipeline, features, spec.task),
                            evaluation.classes)
    log_pngs(client, run_id, {**plots.result(), "feature_importance": importance_chart,
                              "learning_curve": curve.result()})
    fit = FitScores(spec.metric, spec.greater_is_better, train_score, search.cv_score,
                    evaluation.metrics[spec.metric])
    return Diagnosis(fit, {**{f"importance.{k}": v for k, v in importances.items()},
                           f"train_{spec.metric}": train_score})


def log_scores(client: MlflowClient, context: TrainingContext, evaluation: Evaluation,
               diagnosis: Diagnosis, model: LoggedPipeline) -> None:
    """The holdout metrics and the diagnosis's on the parent run, linked to the logged model
    (MLflow's model page lists them). Logged after the model: MLflow's log_model reads back
    the history of every metric the run already has, one request each (40 on 30 features)."""
    log_batch(client, context.tracking.run_id, model_id=model.model_id,
              metrics={**{f"holdout_{k}": v for k, v in evaluation.metrics.items()},
                       **diagnosis.metrics})


def write_card(client: MlflowClient, context: TrainingContext, search: SearchResult,
               evaluation: Evaluation, fit: FitScores, warnings: Sequence[str],
               decision: CardDecision) -> str:
    """The version's model card as `model_card.md` on the parent run; returns its text."""
    spec, dataset = context.spec, context.dataset
    data = CardData(dataset.source, len(dataset.frame), dataset.digest,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    target_counts(dataset.frame, spec.data.target, spec.task))
    found = CardSearch(search.family, search.params, search.trials, spec.tuning.cv_folds,
                       search.fold_scores, search.family_best)
    card = build_card(CardFacts(spec, context.contract, data, found, fit, evaluation.metrics,
                                tuple(warnings), decision))
    client.log_text(context.tracking.run_id, card, CARD_ARTIFACT)
    return card


def log_model(client: MlflowClient, context: TrainingContext, search: SearchResult,
              evaluation: Evaluation) -> LoggedPipeline:
    """The model (signature, example, pinned requirements, contract, the search's best
    parameters) and its reference data."""
    spec, data, contract, run_id = context.spec, context.data, context.contract, context.tracking.run_id
    features, _ = features_and_target(data.train, contract)
    complete = features.dropna()
    example = (complete if len(complete) else features).head(5)
    model = log_sklearn_model(
        run_id, evaluation.pipeline, example,
        metadata={"mlops_contract": contract.to_dict(), "mlops_metric": spec.metric},
        experiment_id=context.tracking.experiment_id,
        params={"model": search.family, **search.params},
    )
    reference = sample_rows(data.train, REFERENCE_MAX_ROWS, spec.tuning.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        reference.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), str(Path(REFERENCE_ARTIFACT).parent))
    client.set_tag(run_id, "mlops.reference_rows", str(len(reference)))
    return model


def finish(client: MlflowClient, storage, tracking: Tracking) -> None:
    """Close the parent run, mark its study done and give up its lease."""
    study = optuna.load_study(study_name=tracking.study_name, storage=storage)
    study.set_user_attr("finished", True)
    lease.release(storage, tracking.study_name, tracking.owner)
    client.set_terminated(tracking.run_id, status="FINISHED")


def keep_lease(storage, tracking: Tracking) -> lease.LeaseKeeper:
    """A context that renews the training's lease on its study while the block runs."""
    return lease.LeaseKeeper(storage, tracking.study_name, tracking.owner)


def give_up(client: MlflowClient, storage, tracking: Tracking) -> None:
    """End the lease, so the next training resumes the study at once, and mark the run
    failed if MLflow still answers (when it does not, the resumed training reopens it)."""
    lease.release(storage, tracking.study_name, tracking.owner)
    try:
        client.set_terminated(tracking.run_id, status="FAILED")
    except Exception as error:  # noqa: BLE001 - the failure being handled is the one to report
        log.info("could not mark MLflow run %s failed: %s", tracking.run_id, error)


def holdout_output_fn(features: pd.DataFrame, task: str, classes: tuple | None):
    """output(model) on the holdout, for the champion; ValueError if it knows other classes."""

    def output(model) -> np.ndarray:
        if classes is not None and tuple(model.classes_) != classes:
            raise ValueError(f"its classes {tuple(model.classes_)} differ from {classes}")
        return model_output(model, features, task)

    return output
