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
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from experiments.model_files import model_digest
from experiments.trial_writer import (
    WriterProcess,
    text_value,
    trial_record,
    write_trial_run,
    write_trial_run_to,
)

log = logging.getLogger(__name__)

MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000


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
    model_id: str | None = None,
) -> None:
    """Params, metrics and tags in as few requests as MLflow's per-request limits allow;
    metrics of the logged model `model_id` are linked to it (its page in MLflow's UI)."""
    now = _now_ms()
    param_list = [Param(k, text_value(v)) for k, v in params.items()]
    tag_list = [RunTag(k, text_value(v)) for k, v in tags.items()]
    metric_list = [Metric(k, float(v), now, step, model_id=model_id) for k, v in metrics.items()]
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


# A search still running after this long hands its trials to a writer process: ~1 s to
# start (importing MLflow), worth it beyond a few seconds of trials (experiments/trial_writer.py).
WRITER_AFTER_S = 2.0


class TrialRecorder:
    """An Optuna callback that records each finished trial as a child run of the parent.

    The MLflow requests (create, one batch, terminate) happen on a background thread so
    the search never waits on the tracking server; `close()` waits for the backlog. A search
    still running after `writer_after_s` hands its trials to a writer process
    (experiments/trial_writer.py: the requests' Python no longer takes the search's GIL);
    until that process is ready, and if it cannot start, they are written here. Given
    `elsewhere` (a process with MLflow imported: flows.spare.beside), every trial is written
    there from the first, and no writer process is started. After the
    first failure nothing more is sent and the search stops at the end of its current
    trial: the trials not recorded are in the study, and `record_missing` logs them when the
    search is resumed.
    """

    def __init__(
        self, client: MlflowClient, experiment_id: str, parent_run_id: str, metric: str,
        writer_after_s: float | None = WRITER_AFTER_S, elsewhere=None,
    ) -> None:
        self._client = client
        self._elsewhere = elsewhere
        self._experiment_id = experiment_id
        self._parent_run_id = parent_run_id
        self._metric = metric
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        # The parent's best_cv_score gets a point where the best changed, not at every trial:
        # one request a trial less, of the four each trial sends (the search's whole overhead).
        self._logged_best: float | None = None
        self._writer_at = (None if writer_after_s is None or elsewhere is not None
                           else time.monotonic() + writer_after_s)
        self._writer: WriterProcess | None = None
        self.written_by_writer = 0
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
        try:
            while (item := self._queue.get()) is not None:
                if self._errors:
                    continue  # each would wait out the same retries; the resumed search logs them
                try:
                    self._record(*item)
                except Exception as error:  # noqa: BLE001 - reported by close(), not lost
                    log.info("could not record trial in MLflow: %s", error)
                    self._errors.append(error)
        finally:
            if self._writer is not None:
                self._writer.close()

    def _record(self, trial: optuna.trial.FrozenTrial, best: float | None) -> None:
        record = trial_record(trial, self._metric, best)
        log_best = best is not None and best != self._logged_best  # the best-so-far curve's steps
        writer = self._ready_writer()
        if self._elsewhere is not None:
            self._elsewhere(write_trial_run_to, self._client.tracking_uri, self._experiment_id,
                            self._parent_run_id, record, log_best).result()
        elif writer is not None:
            writer.write(record, log_best)
            self.written_by_writer += 1
        else:
            write_trial_run(self._client, self._experiment_id, self._parent_run_id, record, log_best)
        if log_best:
            self._logged_best = best

    def _ready_writer(self) -> WriterProcess | None:
        """The writer process once it is ready; started once the search has run long enough."""
        if self._writer is None and self._writer_at is not None and time.monotonic() >= self._writer_at:
            self._writer_at = None
            try:
                self._writer = WriterProcess(self._client.tracking_uri, self._experiment_id,
                                             self._parent_run_id)
            except OSError as error:
                log.info("trials are written in this process (no writer process: %s)", error)
        if self._writer is None:
            return None
        try:
            return self._writer if self._writer.ready() else None
        except RuntimeError as error:  # it died before it was ready: this process writes on
            log.info("trials are written in this process (%s)", error)
            self._writer.close()
            self._writer = None
            return None


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
    from experiments.fast_skops import skops_io

    _persist = skops_io._persist  # through fast_skops: importing it directly imports skops.io slowly
    if getattr(_persist, "json", None) is json:
        _persist.json = _CompactJson()


# What log_sklearn_model needs, and pyplot for the plots (experiments.evaluation imports it
# at the first figure).
MODEL_LOGGING_MODULES = ("experiments.fast_skops", "mlflow.sklearn", "mlflow.models", "matplotlib.pyplot")


def preload_model_logging() -> threading.Thread:
    """Import what the steps after the search need in a background thread, alongside the
    search (skops.io, MLflow's model logging, pyplot: 0.5 s quiet), serially after the search
    otherwise. A failed import is left to happen again, and be reported, where the module is
    used."""

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


@dataclass(frozen=True)
class LoggedPipeline:
    """A logged model: its URI, its MLflow model id, and the digest of the files uploaded."""

    uri: str
    model_id: str
    digest: str


def _sklearn_flavor(digests: list[str]) -> types.SimpleNamespace:
    """The flavor Model.log records and saves with: mlflow.sklearn by name, its save_model.
    Model.log hands it every keyword it takes, `validate_serving_input` too (sklearn's
    save_model takes no others), and uploads the folder as saved: the digest of that folder
    is the digest of what is stored (nothing downloaded back to take it)."""

    def save_model(validate_serving_input: bool = True, **kwargs) -> None:
        import mlflow.sklearn

        mlflow.sklearn.save_model(**kwargs)
        digests.append(model_digest(Path(kwargs["path"])))

    return types.SimpleNamespace(__name__="mlflow.sklearn", save_model=save_model)


def log_sklearn_model(run_id: str, pipeline, input_example, metadata: dict, *,
                      experiment_id: str | None = None,
                      params: Mapping[str, object] | None = None) -> LoggedPipeline:
    """Log the pipeline with skops, a signature and pinned requirements, as a logged model
    of the run's experiment (`experiment_id`, else looked up) with `params` as its own."""
    from mlflow.models import Model, infer_signature

    from experiments.fast_skops import skops_io
    from experiments.pipelines import skops_trusted_types

    compact_skops_schema()
    # The types this very pipeline is made of: trusted because we just built it.
    trusted = skops_trusted_types(pipeline)
    if trusted is None:
        trusted = skops_io.get_untrusted_types(data=skops_io.dumps(pipeline))
    signature = infer_signature(input_example, pipeline.predict(input_example))
    # mlflow.sklearn.log_model, less one step: MLflow loads the logged model back a second
    # time to predict the input example through pyfunc (a third of the call's time), and
    # only warns if that fails. Its own save already loads model.skops back with the
    # trusted types, and the example was just predicted to infer the signature.
    client = MlflowClient()
    # Created here: Model.log would file it under the active experiment, else Default.
    home = client.create_logged_model(
        experiment_id or client.get_run(run_id).info.experiment_id, name="model",
        source_run_id=run_id, params={k: text_value(v) for k, v in (params or {}).items()})
    digests: list[str] = []
    info = Model.log(
        model_id=home.model_id,
        artifact_path=None,
        flavor=_sklearn_flavor(digests),
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
    return LoggedPipeline(info.model_uri, info.model_id, digests[-1])


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
