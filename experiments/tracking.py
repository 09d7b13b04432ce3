"""MLflow tracking: experiments, batched logging, and one nested run per Optuna trial."""

import importlib
import json
import logging
import queue
import threading
import time
import types
import warnings
from collections.abc import Mapping

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

log = logging.getLogger(__name__)

MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAIL: "FAILED",
}


def ensure_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        # Opens the MLflow UI on runs and models rather than its GenAI (traces) view.
        return client.create_experiment(name, tags={"mlflow.experimentKind": "custom_model_development"})
    except MlflowException as error:
        # Another training of the same spec created it between our look and our create.
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _now_ms() -> int:
    return int(time.time() * 1000)


def log_batch(
    client: MlflowClient,
    run_id: str,
    params: Mapping[str, object] = {},
    metrics: Mapping[str, float] = {},
    tags: Mapping[str, object] = {},
    step: int = 0,
) -> None:
    """Params, metrics and tags in as few requests as MLflow's per-request limits allow."""
    now = _now_ms()
    param_list = [Param(k, _text(v)) for k, v in params.items()]
    tag_list = [RunTag(k, _text(v)) for k, v in tags.items()]
    metric_list = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    while param_list or tag_list or metric_list:
        client.log_batch(
            run_id,
            params=param_list[:MAX_PARAMS_PER_BATCH],
            tags=tag_list[:MAX_PARAMS_PER_BATCH],
            metrics=metric_list[:MAX_METRICS_PER_BATCH],
            synchronous=True,
        )
        param_list = param_list[MAX_PARAMS_PER_BATCH:]
        tag_list = tag_list[MAX_PARAMS_PER_BATCH:]
        metric_list = metric_list[MAX_METRICS_PER_BATCH:]


def _text(value: object) -> str:
    return "None" if value is None else str(value)


class TrialRecorder:
    """An Optuna callback that records each finished trial as a child run of the parent.

    The MLflow requests (create, one batch, terminate) happen on a background thread so
    the search never waits on the tracking server; `close()` waits for the backlog. After
    the first failure nothing more is sent and the search stops at the end of its current
    trial: the trials not recorded are in the study, and `record_missing` logs them when the
    search is resumed.
    """

    def __init__(
        self, client: MlflowClient, experiment_id: str, parent_run_id: str, metric: str
    ) -> None:
        self._client = client
        self._experiment_id = experiment_id
        self._parent_run_id = parent_run_id
        self._metric = metric
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        # The parent's best_cv_score gets a point where the best changed, not at every trial:
        # one request a trial less, of the four each trial sends (the search's whole overhead).
        self._logged_best: float | None = None
        self._thread = threading.Thread(target=self._drain, name="trial-recorder", daemon=True)
        self._thread.start()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = study.best_value if _has_complete(study) else None
        self._queue.put((trial, best))
        if self._errors:  # the tracking server is gone: more trials would go unrecorded
            study.stop()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._errors:
            raise RuntimeError(f"recording trials in MLflow failed: {self._errors[0]}")

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._errors:
                continue  # each would wait out the same retries; the resumed search logs them
            try:
                self._record(*item)
            except Exception as error:  # noqa: BLE001 - reported by close(), not lost
                log.info("could not record trial in MLflow: %s", error)
                self._errors.append(error)

    def _record(self, trial: optuna.trial.FrozenTrial, best: float | None) -> None:
        start_ms = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
        end_ms = (
            int(trial.datetime_complete.timestamp() * 1000)
            if trial.datetime_complete
            else _now_ms()
        )
        run = self._client.create_run(
            self._experiment_id,
            start_time=start_ms,
            run_name=f"trial-{trial.number:03d}",
            tags={"mlflow.parentRunId": self._parent_run_id},
        )
        folds = trial.user_attrs.get("fold_scores", [])
        metrics = [
            Metric(f"cv_{self._metric}_fold", float(s), end_ms, step)
            for step, s in enumerate(folds)
        ]
        if folds:
            mean = sum(folds) / len(folds)
            spread = (sum((s - mean) ** 2 for s in folds) / len(folds)) ** 0.5
            metrics += [
                Metric(f"cv_{self._metric}_mean", mean, end_ms, 0),
                Metric(f"cv_{self._metric}_std", spread, end_ms, 0),
            ]
        if start_ms is not None:
            metrics.append(Metric("duration_s", (end_ms - start_ms) / 1000, end_ms, 0))
        tags = [
            RunTag("mlops.trial_number", str(trial.number)),
            RunTag("mlops.trial_state", trial.state.name),
            RunTag("mlops.folds_completed", str(len(folds))),
        ]
        if "one_thread" in trial.user_attrs:  # its fits were limited to one native thread
            tags.append(RunTag("mlops.one_thread", str(trial.user_attrs["one_thread"]).lower()))
        if trial.state == TrialState.FAIL:
            tags.append(RunTag("mlops.fail_reason", str(trial.user_attrs.get("fail_reason", ""))[:5000]))
        params = [Param(k, _text(v)) for k, v in trial.params.items()]
        self._client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        self._client.set_terminated(
            run.info.run_id, status=_STATUS.get(trial.state, "FAILED"), end_time=end_ms
        )
        if best is not None and best != self._logged_best:  # the best-so-far curve's steps
            self._client.log_metric(
                self._parent_run_id, "best_cv_score", best, timestamp=end_ms, step=trial.number
            )
            self._logged_best = best


def record_missing(recorder: TrialRecorder, client: MlflowClient, study: optuna.Study,
                   experiment_id: str, parent_run_id: str) -> int:
    """Give every finished trial of the study a child run, as `recorder` would have: those
    the search ran while MLflow was gone. A child run left half-written is replaced."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                        TrialState.FAIL))
    if not finished:
        return 0
    recorded = set()
    for run in child_runs(client, experiment_id, parent_run_id):
        number = run.data.tags.get("mlops.trial_number")
        if run.info.status == "RUNNING" or number is None or int(number) in recorded:
            client.delete_run(run.info.run_id)
        else:
            recorded.add(int(number))
    missing = [trial for trial in finished if trial.number not in recorded]
    for trial in missing:
        recorder(study, trial)
    return len(missing)


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list:
    """Every run nested under the parent, all pages."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _has_complete(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")


def pinned_requirements(distributions=MODEL_REQUIREMENTS) -> list[str]:
    """Exact versions of what the model needs, from this environment: MLflow's own
    inference of requirements runs the model in a subprocess (~12 s per model)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in distributions]


class _CompactJson:
    """`json` for skops's writer, minus the indent: skops writes its schema with
    `json.dumps(state, indent=2)`, and an indent makes Python encode in pure Python. For a
    100-tree forest that was 0.11 of the 0.13 s of `skops.io.dump` and half the file
    (2.8 MB against 1.3 MB compact); the content, and what `skops.io.load` reads, is the same."""

    def __getattr__(self, name: str):
        return getattr(json, name)

    @staticmethod
    def dumps(obj, **kwargs) -> str:
        kwargs.pop("indent", None)
        return json.dumps(obj, **kwargs)


def compact_skops_schema() -> None:
    """Make skops write its schema.json compact (idempotent; a no-op if skops changed)."""
    from skops.io import _persist

    if getattr(_persist, "json", None) is json:
        _persist.json = _CompactJson()


# What log_sklearn_model needs, and pyplot for the plots (experiments.evaluation imports it
# at the first figure).
MODEL_LOGGING_MODULES = ("skops.io", "mlflow.sklearn", "mlflow.models", "matplotlib.pyplot")


def preload_model_logging() -> threading.Thread:
    """Import what the steps after the search need in a background thread, alongside the
    search: skops imports every scikit-learn estimator to list the types it trusts (1-2 s
    quiet, 13 s on a busy machine), serially after the search otherwise. A failed import is
    left to happen again, and be reported, where the module is used."""

    def load() -> None:
        for name in MODEL_LOGGING_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - raised again, visibly, at its real import
                continue
        try:
            # The first log_model of a process maps every installed module to its package
            # (importlib.metadata over ~300 distributions, 0.8 s) to check the pinned
            # requirements against this environment; MLflow keeps the map for the process.
            from mlflow.utils.requirements_utils import _init_packages_to_modules_map

            _init_packages_to_modules_map()
        except Exception:  # noqa: BLE001, S110 - only a head start: log_model builds it anyway
            pass

    thread = threading.Thread(target=load, name="mlops-preload-model-logging", daemon=True)
    thread.start()
    return thread


def _save_sklearn_model(validate_serving_input: bool = True, **kwargs) -> None:
    """mlflow.sklearn.save_model for Model.log, which hands its flavor every keyword it
    takes, `validate_serving_input` too (sklearn's save_model takes no others)."""
    import mlflow.sklearn

    mlflow.sklearn.save_model(**kwargs)


# The flavor Model.log records and saves with: mlflow.sklearn by name, its save_model.
_SKLEARN_FLAVOR = types.SimpleNamespace(__name__="mlflow.sklearn", save_model=_save_sklearn_model)


def log_sklearn_model(
    run_id: str, pipeline, input_example, metadata: dict
) -> str:
    """Log the pipeline with skops, a signature and pinned requirements; return its URI."""
    import skops.io
    from mlflow.models import Model, infer_signature

    from experiments.pipelines import skops_trusted_types

    compact_skops_schema()
    # The types this very pipeline is made of: trusted because we just built it.
    trusted = skops_trusted_types(pipeline)
    if trusted is None:
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    signature = infer_signature(input_example, pipeline.predict(input_example))
    # mlflow.sklearn.log_model, less one step: MLflow loads the logged model back a second
    # time to predict the input example through pyfunc (a third of the call's time), and
    # only warns if that fails. Its own save already loads model.skops back with the
    # trusted types, and the example was just predicted to infer the signature.
    info = Model.log(
        artifact_path=None,
        flavor=_SKLEARN_FLAVOR,
        validate_serving_input=False,
        sk_model=pipeline,
        name="model",
        run_id=run_id,
        signature=signature,
        input_example=input_example,
        pip_requirements=pinned_requirements(),
        serialization_format="skops",
        skops_trusted_types=trusted,
        metadata=metadata,
    )
    return info.model_uri


def log_dataset(client: MlflowClient, run_id: str, frame, source: str, target: str, name: str,
                context: str = "training") -> None:
    """The training data as an MLflow dataset input (name, digest, source, schema)."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():
        # The dataset's schema is descriptive; the model's own signature is what serving
        # enforces, so MLflow's hint about integer columns does not apply here.
        warnings.simplefilter("ignore", UserWarning)
        try:
            dataset = mlflow.data.from_pandas(frame, source=source, targets=target, name=name)
        except MlflowException:
            # Sources MLflow cannot resolve (package://) are described rather than dropped.
            dataset = mlflow.data.from_pandas(
                frame, source=CodeDatasetSource({"uri": source}), targets=target, name=name
            )
        entity = dataset._to_mlflow_entity()  # the schema is inferred here, lazily
    client.log_inputs(
        run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
    )
