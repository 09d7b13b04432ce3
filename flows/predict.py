"""The batch-scoring flow: a version of a model (its champion unless told) scores a file.

The data is read and scored in chunks (bounded memory) into a staging file that takes the
output's place only once every row is scored: a bad row under `--bad-rows fail`, or any
other failure, leaves nothing at the output, no run in MLflow and nothing in the live-data
store. Then one run in the experiment `<name>-predictions` records it, and the scored rows
join the live-data store (request id `batch-<run id>`), which monitoring reads as it reads
served traffic.
"""

import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
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
from flows.events import run_url
from flows.naming import name_this_run
from flows.preflight import require_version
from flows.recovery import label_this_process
from infra.settings import process_settings
from monitoring.traffic import TRAFFIC, TrafficWriter, hour_of, open_files
from serving.batch import (
    BATCH_PREFIX,
    BadRows,
    output_schema,
    require_columns,
    score_chunk,
    staged_traffic,
    traffic_columns,
)
from serving.model import ModelLoadError, ServedModel, load_version
from serving.tables import Digest, StagedOutput, open_input

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


@dataclass(frozen=True)
class Scoring:
    rows: int
    bad: BadRows
    input_digest: str


@task(cache_policy=NO_CACHE)
def load_model(model: str, version: int | None) -> ServedModel:
    client = MlflowClient()
    found = require_version(client, model, version)
    try:
        return load_version(found, client)
    except ModelLoadError as error:
        raise InputError(str(error)) from error


@task(cache_policy=NO_CACHE)
def score(params: PredictParameters, model: ServedModel, output: StagedOutput, traffic: Path) -> Scoring:
    """Every chunk checked, scored and appended to the staging files; InputError on bad data."""
    logger = get_run_logger()
    bad, digest, rows = BadRows(), Digest(), 0
    with open_input(params.data, model.contract.numeric) as table, progress(table.rows) as bar:
        require_columns(table.columns, model.contract, model.name, params.data)
        schema, traffic_writer, read = None, None, 0
        try:
            for chunk in table.chunks(params.chunk_rows):
                digest.update(chunk)
                scored = score_chunk(model, chunk, read, bad, params.bad_rows == "skip")
                read += len(chunk)
                if schema is None:
                    schema = output_schema(scored, model.contract, table.schema)
                output.append(scored.output, schema)
                staged = pyarrow_table(staged_traffic(scored))
                traffic_writer = traffic_writer or pq.ParquetWriter(traffic, staged.schema)
                traffic_writer.write_table(staged.cast(traffic_writer.schema))
                rows += len(scored.output)
                bar(read)
                logger.info("scored %d rows of %s", read, params.data)
        finally:
            if traffic_writer is not None:
                traffic_writer.close()
    if bad.total:
        logger.warning("%d rows of %s break %s's contract and were left out: %s; %s", bad.total,
                       params.data, model.name, bad.by_column, "; ".join(bad.examples[:5]))
    if not rows:
        raise InputError(f"data file {params.data} has no rows to score")
    return Scoring(rows, bad, digest.hexdigest())


def pyarrow_table(frame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def progress(total: int | None):
    """A progress bar on a terminal; elsewhere (the Prefect UI, a pipe) the log says it."""
    bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())

    class Bar:
        def __enter__(self):
            bar.start()
            self.task = bar.add_task("scoring", total=total)
            return lambda done: bar.update(self.task, completed=done)

        def __exit__(self, *exc):
            bar.stop()

    return Bar()


@task(cache_policy=NO_CACHE)
def start_record(params: PredictParameters, model: ServedModel, scoring: Scoring) -> str:
    """The scoring's run in `<name>-predictions`: what scored what, and where it went."""
    client = MlflowClient()
    experiment_id = ensure_experiment(client, predictions_experiment(model.name))
    run = client.create_run(experiment_id, run_name=f"predict-v{model.version}", tags={
        "mlops.model_name": model.name, "mlops.model_version": model.version,
        "mlops.flow_run_id": str(flow_run.get_id() or ""), "mlops.trigger": TRIGGER,
        "mlops.input_digest": scoring.input_digest, "mlops.output_uri": params.out,
        "mlops.model_run_id": model.run_id,
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
def add_to_live_store(model: ServedModel, traffic: Path, run_id: str) -> int:
    """The scored rows join the live-data store, one part per chunk, marked as a batch's."""
    writer = TrafficWriter(open_files(process_settings().traffic_base), model.name)
    served_at, written = datetime.now(UTC), 0
    staged = pq.ParquetFile(traffic)
    for group in range(staged.num_row_groups):
        rows = staged.read_row_group(group).to_pandas()
        writer.add(TRAFFIC, hour_of(served_at), traffic_columns(rows, model.version, served_at,
                                                               f"{BATCH_PREFIX}{run_id}"))
        written += writer.flush()
    return written


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
            traffic = Path(tmp) / "traffic.parquet"
            scoring = score(params, model, output, traffic)
            run_id = start_record(params, model, scoring)
            output.publish()
            add_to_live_store(model, traffic, run_id)
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
    predict(PredictParameters(model="penguins", data="data/penguins.csv", out="penguins-scored.parquet"))
