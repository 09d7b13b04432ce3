"""Traffic parts written straight with pyarrow, several row groups each, under the store's
layout: what a long-running server leaves behind, made in seconds (tests and the bench)."""

import uuid
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from monitoring.traffic import hour_of

NUMERIC = [f"num_{i}" for i in range(8)]
CATEGORICAL = ["cat_0", "cat_1"]
FEATURES = NUMERIC + CATEGORICAL
LEVELS = np.array(["a", "b", "c", "d"])
MIX = np.array([0.4, 0.3, 0.2, 0.1])


def part_table(n: int, start: datetime, span: timedelta, rng, shift: float = 0.0,
               columns: list[str] | None = None) -> pa.Table:
    """n served records spread over [start, start + span), in time order: 8 numeric features
    (shifted by `shift` SD), 2 categorical ones (mix reversed when shifted), and the columns
    the store adds."""
    offsets = np.sort(rng.uniform(0, span.total_seconds() * 1e6, n)).astype("int64")
    base = np.datetime64(start.replace(tzinfo=None), "us")
    data = {name: rng.normal(i, 1 + i / 4, n) + shift * (1 + i / 4) for i, name in enumerate(NUMERIC)}
    for name in CATEGORICAL:
        data[name] = pa.array(LEVELS[rng.choice(4, n, p=MIX[::-1] if shift else MIX)])
    data["prediction"] = pa.array(np.where(rng.random(n) < 0.5, "yes", "no"))
    data["model_version"] = pa.array(np.full(n, "1"))
    data["served_at"] = pa.array(base + offsets.astype("timedelta64[us]"), pa.timestamp("us", tz="UTC"))
    data["request_id"] = pa.array(np.repeat([uuid.uuid4().hex for _ in range(n // 10 + 1)], 10)[:n])
    data["record_index"] = np.arange(n)
    table = pa.table(data)
    return table.select(columns) if columns else table


def write_part(files, model: str, table: pa.Table, row_group_rows: int, name: str) -> str:
    """The table as one part in its first row's hour folder; returns the part's key."""
    first = table.column("served_at")[0].as_py()
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_rows)
    key = f"{model}/hour={hour_of(first)}/part-{name}.parquet"
    files.write(key, sink.getvalue().to_pybytes())
    return key


def write_window(files, model: str, rows: int, parts: int, row_group_rows: int, end: datetime,
                 minutes: float, seed: int, shift: float = 0.0) -> None:
    """`rows` records served evenly over the `minutes` before `end`, in `parts` parts."""
    rng = np.random.default_rng(seed)
    span = timedelta(minutes=minutes) / parts
    start = end - timedelta(minutes=minutes)
    for i in range(parts):
        table = part_table(rows // parts, start + i * span, span, rng, shift)
        write_part(files, model, table, row_group_rows, f"{i:05d}-{seed}")
