"""Checking JSON records against a model's data contract, many requests at a time.

Nulls are allowed (the pipeline imputes them) and unseen categories are allowed (the
pipeline ignores them) but counted; a missing or unknown field, or a value of the wrong
type, rejects the request it belongs to. The checks run per column on the whole batch.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pandas as pd

from experiments.contract import ColumnContract, DataContract
from experiments.pipelines import feature_frame

_NUMBER_TYPES = (int, float, type(None))
_JSON_NAMES = {str: "text", bool: "a boolean", int: "a number", float: "a number",
               dict: "an object", list: "a list", type(None): "null"}


@dataclass(frozen=True)
class Problem:
    """Why a request was refused: the first bad record (its index in the request) and field."""

    record: int
    field: str
    message: str

    def describe(self) -> str:
        where = f"record {self.record}, field '{self.field}'" if self.field else f"record {self.record}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class BatchCheck:
    """The model input of the accepted requests, in order, and why the others were refused."""

    features: pd.DataFrame
    accepted: list[int]
    sizes: list[int]
    rejected: dict[int, Problem]
    unseen_categories: dict[str, int] = field(default_factory=dict)


def check_batch(requests: Sequence[list], contract: DataContract) -> BatchCheck:
    """Check each request's records; build the model input of those that pass."""
    names = contract.feature_names
    rejected: dict[int, Problem] = {}
    expected = frozenset(names)
    for i, records in enumerate(requests):
        bad = next((j for j, r in enumerate(records)
                    if type(r) is not dict or r.keys() != expected), None)
        if bad is not None:
            rejected[i] = _field_problem(bad, records[bad], names)
    accepted = [i for i in range(len(requests)) if i not in rejected]
    sizes = [len(requests[i]) for i in accepted]
    frame = pd.DataFrame(list(chain.from_iterable(requests[i] for i in accepted)), columns=names)
    counts = np.asarray(sizes, dtype=np.int64)
    owners = np.repeat(np.arange(len(accepted)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    for column in contract.columns:
        bad_rows = _bad_rows(frame[column.name], column)
        _, first = np.unique(owners[bad_rows], return_index=True)  # the first per request
        for row in bad_rows[first]:
            request = accepted[owners[row]]
            record = int(row - starts[row])
            if request not in rejected or record < rejected[request].record:
                rejected[request] = Problem(record, column.name,
                                            _value_message(frame[column.name].iat[row], column))
    if len(rejected) > len(requests) - len(accepted):
        keep = [k for k, i in enumerate(accepted) if i not in rejected]
        frame = frame[np.isin(owners, keep)].reset_index(drop=True)
        sizes = [sizes[k] for k in keep]
        accepted = [accepted[k] for k in keep]
    features = model_input(frame, contract)
    return BatchCheck(features, accepted, sizes, rejected, unseen_categories(features, contract))


def model_input(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """feature_frame's output, made from the columns' arrays when they are as checked JSON
    gives them (numbers; text and nulls): a third of a batch's CPU went to pandas' per-column
    conversions there. Any other column (booleans, say) goes through feature_frame."""
    columns = {}
    for name in contract.numeric:
        values = frame[name]
        if values.dtype.kind not in "iuf":
            return feature_frame(frame, contract.numeric, contract.categorical)
        columns[name] = values.to_numpy(dtype=np.float64, copy=True)
    for name in contract.categorical:
        values = frame[name].to_numpy(dtype=object, copy=True)
        missing = pd.isna(values)
        if not all(type(v) is str for v in values[~missing]):
            return feature_frame(frame, contract.numeric, contract.categorical)
        values[missing] = np.nan
        columns[name] = values
    return pd.DataFrame(columns, index=frame.index)


def unseen_categories(features: pd.DataFrame, contract: DataContract) -> dict[str, int]:
    """Per categorical column, how many values training never saw (nulls are not counted):
    count_unseen's figure, counted over the array."""
    counts = {}
    for column in contract.columns:
        if column.kind != "categorical" or column.categories is None:
            continue
        values = features[column.name].to_numpy(dtype=object)
        known = set(column.categories)
        counts[column.name] = sum(str(v) not in known for v in values[~pd.isna(values)])
    return {name: n for name, n in counts.items() if n}


def _field_problem(index: int, record, names: list[str]) -> Problem:
    if type(record) is not dict:
        return Problem(index, "", f"expected an object of feature values, got {_json_name(record)}")
    missing = [n for n in names if n not in record]
    if missing:
        return Problem(index, missing[0], "missing (send null for an unknown value)")
    unknown = sorted(str(k) for k in record if k not in set(names))
    return Problem(index, unknown[0], f"unknown field(s): {', '.join(unknown)}")


def _bad_rows(values: pd.Series, column: ColumnContract) -> np.ndarray:
    """Positions of values the column cannot take; vectorised checks first, types last."""
    kind = values.dtype.kind
    if column.kind == "numeric":
        if kind in "iuf":
            return np.empty(0, dtype=int)
        allowed = _NUMBER_TYPES
    else:
        allowed = (str, bool, type(None)) if column.dtype == "bool" else (str, type(None))
        if kind == "b" and bool in allowed:
            return np.empty(0, dtype=int)
        if kind == "O" and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            return np.empty(0, dtype=int)
    ok = values.map(type).isin(allowed).to_numpy()
    return np.flatnonzero(~ok)


def _value_message(value, column: ColumnContract) -> str:
    if isinstance(value, np.generic):  # pandas hands back numpy scalars
        value = value.item()
    wanted = "a number" if column.kind == "numeric" else "text"
    shown = json.dumps(value, default=str)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"expected {wanted} or null, got {_json_name(value)} {shown}"


def _json_name(value) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def check_labels(labels: list, contract: DataContract) -> Problem | None:
    """The first true label the model cannot have: not one of its classes, or not a number."""
    if contract.task == "classification":
        classes = set(contract.classes or ())
        for i, label in enumerate(labels):
            if type(label) not in (str, int, bool) or str(label) not in classes:
                return Problem(i, contract.target, f"{json.dumps(label, default=str)} is not a class "
                               f"of the model (classes: {', '.join(sorted(classes))})")
        return None
    for i, label in enumerate(labels):
        if type(label) not in (int, float):
            return Problem(i, contract.target,
                           f"expected a number, got {_json_name(label)} {json.dumps(label, default=str)}")
    return None
