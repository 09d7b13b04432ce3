"""Batch scoring, one chunk at a time: rows checked against the model's contract, scored as
`mlops serve` scores them (serving/model.py), laid out as the output table and as live traffic.

A row breaks the contract when a numeric feature holds something that is not a finite number;
nulls and unseen categories are allowed, as they are for served records.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from experiments.contract import DataContract, rows_breaking_contract
from experiments.errors import InputError
from experiments.pipelines import feature_frame
from monitoring.traffic import TRAFFIC, LocalFiles, TrafficWriter, hour_of
from serving.model import ServedModel
from serving.tables import Digest, StagedOutput, open_input

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
BATCH_PREFIX = "batch-"  # the request id of batch rows in the live-data store: batch-<MLflow run>
EXAMPLES = 20  # bad rows described in the report, per scoring


def proba_column(label) -> str:
    return f"{PROBA_PREFIX}{label}"


def require_columns(columns: list[str], contract: DataContract, model: str, uri: str) -> None:
    """One line when the data lacks a feature, or has a column the output adds."""
    missing = [c for c in contract.feature_names if c not in set(columns)]
    if missing:
        raise InputError(f"data file {uri} lacks columns of {model}'s contract: {', '.join(missing)}")
    added = [PREDICTION, *(proba_column(c) for c in contract.classes or ())]
    clash = [c for c in columns if c in added]
    if clash:
        raise InputError(f"data file {uri} has columns the output adds: {', '.join(clash)}; "
                         "rename or drop them")


@dataclass
class BadRows:
    """Rows that broke the contract: how many per column, and the first few described."""

    by_column: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, chunk: pd.DataFrame, first_row: int, masks: dict[str, np.ndarray]) -> np.ndarray:
        """Count the chunk's bad rows; return the mask of rows to drop."""
        drop = np.zeros(len(chunk), dtype=bool)
        for name, mask in masks.items():
            self.by_column[name] = self.by_column.get(name, 0) + int(mask.sum())
            drop |= mask
        for position in np.flatnonzero(drop)[:max(0, EXAMPLES - len(self.examples))]:
            self.examples.append(describe_row(chunk, first_row + int(position), int(position), masks))
        self.total += int(drop.sum())
        return drop


def describe_row(chunk: pd.DataFrame, row: int, position: int, masks: dict[str, np.ndarray]) -> str:
    """`row 12: 'x1' is not a finite number ("abc")`; rows count from 1, the header aside."""
    name = next(n for n, mask in masks.items() if mask[position])
    shown = str(chunk[name].iat[position])
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"row {row + 1}: '{name}' is not a finite number ({shown!r})"


@dataclass(frozen=True)
class ScoredChunk:
    output: pd.DataFrame  # the input columns (features as the model took them), prediction, probas
    features: pd.DataFrame
    predictions: np.ndarray
    rows: np.ndarray  # each scored row's position in the input


def score_chunk(model: ServedModel, chunk: pd.DataFrame, first_row: int, bad: BadRows,
                skip_bad: bool) -> ScoredChunk:
    """Check and score one chunk whose first row is row `first_row` of the input; InputError
    on a bad row unless `skip_bad` (then it is counted in `bad` and left out)."""
    contract = model.contract
    masks = rows_breaking_contract(chunk, contract)
    rows = np.arange(first_row, first_row + len(chunk))
    if masks:
        drop = bad.add(chunk, first_row, masks)
        if not skip_bad:
            raise InputError(f"{bad.examples[0]}; it breaks {model.name}'s contract "
                             "(--bad-rows skip scores the other rows)")
        chunk, rows = chunk[~drop], rows[~drop]
    features = feature_frame(chunk, contract.numeric, contract.categorical)
    output = chunk.assign(**{name: features[name] for name in features.columns})
    if contract.task == "classification":
        predictions, classes, probabilities = model.predict_with_proba(features)
        output[PREDICTION] = predictions
        for i, label in enumerate(classes):
            output[proba_column(label)] = probabilities[:, i]
    else:
        predictions = np.asarray(model.predict(features))
        output[PREDICTION] = predictions
    return ScoredChunk(output.reset_index(drop=True), features.reset_index(drop=True),
                       np.asarray(predictions), rows)


def output_schema(scored: ScoredChunk, contract: DataContract, input_schema: pa.Schema | None) -> pa.Schema:
    """The output's column types, fixed by the first chunk: features as the model takes them
    (numbers, text), other input columns as the input file types them (a CSV's as text),
    predictions as the model gives them, probabilities as floats."""
    numeric, categorical = set(contract.numeric), set(contract.categorical)
    fields = []
    for name in scored.output.columns:
        if name in numeric or name.startswith(PROBA_PREFIX):
            kind = pa.float64()
        elif name in categorical:
            kind = pa.string()
        elif name == PREDICTION:
            kind = pa.array(scored.predictions[:1]).type
        elif input_schema is not None:
            kind = input_schema.field(name).type
        else:
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def traffic_columns(scored: ScoredChunk, version: str, served_at: datetime, request_id: str) -> dict:
    """The chunk as the live-data store holds served records (serving/batching.py), under one
    request id that says they came from a batch; `record_index` is the row in the input."""
    n = len(scored.features)
    return {
        **{name: scored.features[name].to_numpy() for name in scored.features.columns},
        PREDICTION: scored.predictions,
        "model_version": np.full(n, version, dtype=object),
        "served_at": np.full(n, np.datetime64(served_at.replace(tzinfo=None), "us")),
        "request_id": np.full(n, request_id, dtype=object),
        "record_index": scored.rows.astype(np.int64),
    }


@dataclass(frozen=True)
class Scoring:
    rows: int  # scored and written
    bad: BadRows
    input_digest: str


@dataclass(frozen=True)
class BatchJob:
    """What to score, how, and the request id its rows take in the live-data store."""

    data: str
    request_id: str
    chunk_rows: int = 100_000
    skip_bad: bool = False


def score_file(model: ServedModel, job: BatchJob, output: StagedOutput, traffic: TrafficWriter,
               scored: Callable[[int, int | None], None] = lambda done, total: None) -> Scoring:
    """Read the job's data in chunks, check and score each, append it to `output` (staged) and
    write its live-traffic rows with `traffic` (to a staging store: see publish_traffic);
    `scored` hears the rows read so far and the total (None when unknown). InputError on bad data."""
    data = job.data
    bad, digest, rows, read, schema = BadRows(), Digest(), 0, 0, None
    served_at = datetime.now(UTC)

    def write(done: ScoredChunk, schema: pa.Schema) -> None:
        output.append(done.output, schema)
        columns = traffic_columns(done, model.version, served_at, job.request_id)
        traffic.add(TRAFFIC, hour_of(served_at), columns)
        traffic.flush()  # one part per chunk: the memory stays bounded

    # A chunk is written (Parquet encoding, much of it outside the GIL) while the next is
    # scored; waiting for the last write before submitting keeps two chunks in memory at most.
    with open_input(data, model.contract.numeric) as table, ThreadPoolExecutor(1) as writer:
        require_columns(table.columns, model.contract, model.name, data)
        pending: Future | None = None
        for chunk in table.chunks(job.chunk_rows):
            digest.update(chunk)
            done = score_chunk(model, chunk, read, bad, job.skip_bad)
            read += len(chunk)
            schema = schema or output_schema(done, model.contract, table.schema)
            if pending is not None:
                pending.result()
            pending = writer.submit(write, done, schema)
            rows += len(done.output)
            scored(read, table.rows)
        if pending is not None:
            pending.result()
    if not rows:
        raise InputError(f"data file {data} has no rows to score")
    return Scoring(rows, bad, digest.hexdigest())


def publish_traffic(staging: LocalFiles, files, model: str) -> int:
    """The staged parts copied, as they are, into the live-data store at `files`; how many."""
    keys = staging.list(model)
    for key in keys:
        files.write(key, staging.read(key))
    return len(keys)
