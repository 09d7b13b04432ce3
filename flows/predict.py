"""The batch-scoring flow: a version of a model (its champion unless told) scores a file.

The data is read and scored in chunks (bounded memory) into a staging file that takes the
output's place only once every row is scored: a bad row under `--bad-rows fail`, or any
other failure, leaves nothing at the output, no run in MLflow and nothing in the live-data
store. Then one run in the experiment `<name>-predictions` records it, and the scored rows
join the live-data store (request id `batch-<flow run id>`, also the run's tag
`mlops.batch_id`), which monitoring reads as it reads served traffic.
"""

import json
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.errors import InputError
from experiments.tracking import ensure_experiment
from flows.links import run_url
from flows.naming import name_this_run
from flows.preflight import require_version
from flows.recovery import label_this_process
from infra.settings import process_settings
from monitoring.traffic import LocalFiles, TrafficWriter, open_files
from serving.batch import BATCH_PREFIX, BatchJob, Scoring, publish_traffic, score_file
from serving.model import ModelLoadError, ServedModel, load_version
from serving.tables import StagedOutput

TRIGGER = "manual"


def predictions_experiment(name: str) -> str:
    return f"{name}-predictions"


class PredictParameters(BaseModel):
    """What a batch scoring reads, with which model version, and where it writes."""

    model: str = Field(..., description="The registered model that scores the data")
    data: str = Field(..., description="The data to score: a CSV or Parquet file, local or s3://")
    out: str = Field(..., description="Where the scored rows go: a .csv or .parquet file, local or s3://")
    version: int | None = Field(None, ge=1, description="The model version; empty: the champion")
    bad_rows: Literal["fail", "skip"] = Field(
        "fail", description="A row that breaks the model's data contract fails the run, or is left out")
    overwrite: bool = Field(False, description="Replace an output that exists")
    chunk_rows: int = Field(100_000, ge=1, description="Rows scored at a time (bounds the memory)")


@task(cache_policy=NO_CACHE)
def load_model(model: str, version: int | None) -> ServedModel:
    client = MlflowClient()
    found = require_version(client, model, version)
    try:
        return load_version(found, client)
    except ModelLoadError as error:
        raise InputError(str(error)) from error


@task(cache_policy=NO_CACHE)
def score(params: PredictParameters, model: ServedModel, output: StagedOutput,
          traffic: LocalFiles) -> Scoring:
    """Every chunk checked, scored and staged (serving/batch.py); InputError on bad data."""
    logger = get_run_logger()
    with progress() as bar:
        def scored(done: int, total: int | None) -> None:
            bar(done, total)
            logger.info("scored %d of %s rows of %s", done, total or "?", params.data)

        job = BatchJob(params.data, batch_id(), params.chunk_rows, params.bad_rows == "skip")
        scoring = score_file(model, job, output, TrafficWriter(traffic, model.name), scored)
    bad = scoring.bad
    if bad.total:
        logger.warning("%d rows of %s break %s's contract and were left out: %s; %s", bad.total,
                       params.data, model.name, bad.by_column, "; ".join(bad.examples[:5]))
    return scoring


def batch_id() -> str:
    """The request id of this scoring's rows in the live-data store."""
    return f"{BATCH_PREFIX}{flow_run.get_id()}"


@contextmanager
def progress():
    """A progress bar on a terminal; elsewhere (the Prefect UI, a pipe) the log says it."""
    bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
    task_id = bar.add_task("scoring", total=None)
    with bar:
        yield lambda done, total: bar.update(task_id, completed=done, total=total)


@task(cache_policy=NO_CACHE)
def start_record(params: PredictParameters, model: ServedModel, scoring: Scoring) -> str:
    """The scoring's run in `<name>-predictions`: what scored what, and where it went."""
    client = MlflowClient()
    experiment_id = ensure_experiment(client, predictions_experiment(model.name))
    run = client.create_run(experiment_id, run_name=f"predict-v{model.version}", tags={
        "mlops.model_name": model.name, "mlops.model_version": model.version,
        "mlops.flow_run_id": str(flow_run.get_id() or ""), "mlops.trigger": TRIGGER,
        "mlops.input_digest": scoring.input_digest, "mlops.output_uri": params.out,
        "mlops.model_run_id": model.run_id, "mlops.batch_id": batch_id(),
    })
    run_id = run.info.run_id
    now = now_ms()
    client.log_batch(run_id, params=[
        Param("model_version", model.version), Param("data", params.data[:6000]),
        Param("out", params.out[:6000]), Param("bad_rows", params.bad_rows),
    ], metrics=[Metric("rows", scoring.rows, now, 0), Metric("bad_rows", scoring.bad.total, now, 0)],
        tags=[RunTag(f"mlops.bad_rows.{name}", str(n)) for name, n in scoring.bad.by_column.items()])
    if scoring.bad.total:
        client.log_text(run_id, json.dumps({"total": scoring.bad.total, "by_column": scoring.bad.by_column,
                                            "examples": scoring.bad.examples}, indent=2), "bad_rows.json")
    return run_id


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@task(cache_policy=NO_CACHE)
def add_to_live_store(model: ServedModel, traffic: LocalFiles) -> int:
    """The staged rows join the live-data store (parts copied as they are)."""
    return publish_traffic(traffic, open_files(process_settings().traffic_base), model.name)


@flow(name="predict")
def predict(params: PredictParameters) -> dict:
    """Score a file with MODEL's champion (or a version); write it with predictions."""
    label_this_process()
    name_this_run("predict", params.model, TRIGGER)
    model = load_model(params.model, params.version)
    output = StagedOutput(params.out, params.overwrite)
    client, run_id = MlflowClient(), None
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-predict-") as tmp:
            traffic = LocalFiles(Path(tmp) / "traffic")
            scoring = score(params, model, output, traffic)
            run_id = start_record(params, model, scoring)
            output.publish()
            add_to_live_store(model, traffic)
    except BaseException:
        output.discard()
        if run_id is not None:
            client.set_terminated(run_id, status="FAILED")
        raise
    output.close()
    client.set_terminated(run_id, status="FINISHED")
    return result(client, params, model, scoring, run_id)


def result(client: MlflowClient, params: PredictParameters, model: ServedModel, scoring: Scoring,
           run_id: str) -> dict:
    run = client.get_run(run_id)
    url = run_url(client.tracking_uri, run.info.experiment_id, run_id)
    create_markdown_artifact(
        key="".join(c if c.isalnum() else "-" for c in model.name.lower()) + "-predict",
        markdown=(f"# Batch scoring with {model.name} v{model.version}\n\n[MLflow run]({url})\n\n"
                  f"{scoring.rows} rows of `{params.data}` scored into `{params.out}`; "
                  f"{scoring.bad.total} left out for breaking the contract\n"),
        description=f"Batch scoring with {model.name}",
    )
    return {
        "model_name": model.name, "model_version": model.version, "rows": scoring.rows,
        "bad_rows": scoring.bad.total, "out": params.out, "run_id": run_id,
        "flow_run_id": str(flow_run.get_id()), "run_url": url, "input_digest": scoring.input_digest,
        "bad_rows_by_column": scoring.bad.by_column,
    }


if __name__ == "__main__":
    predict(PredictParameters(model="penguins", data="package://palmerpenguins/data/penguins.csv",
                              out="penguins-scored.parquet"))
