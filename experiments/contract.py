"""The data contract: what training data looked like, inferred once, checked on later data.

Training data must also pass hard checks (target present and usable, enough rows, enough
rows per class) before any search starts; each failure names the column and the problem.
"""

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from experiments.errors import InputError

MIN_ROWS = 50
MAX_CLASSES = 100
MAX_CATEGORIES = 500  # above this a column's category set is not recorded in the contract


@dataclass(frozen=True)
class ColumnContract:
    name: str
    kind: str  # "numeric" | "categorical"
    dtype: str
    nullable: bool
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DataContract:
    target: str
    task: str
    columns: tuple[ColumnContract, ...]
    classes: tuple[str, ...] | None = None

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> "DataContract":
        columns = tuple(
            ColumnContract(
                **{**c, "categories": None if c.get("categories") is None
                   else tuple(c["categories"])}
            )
            for c in raw["columns"]
        )
        classes = tuple(raw["classes"]) if raw.get("classes") else None
        return cls(target=raw["target"], task=raw["task"], columns=columns, classes=classes)


@dataclass(frozen=True)
class ContractReport:
    """How a batch of later data differs from the contract; missing columns are fatal."""

    missing_columns: tuple[str, ...] = ()
    unexpected_columns: tuple[str, ...] = ()
    type_mismatches: dict[str, str] = field(default_factory=dict)
    unseen_categories: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    unexpected_nulls: dict[str, int] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return not self.missing_columns and not self.type_mismatches


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def prepare_training_data(
    frame: pd.DataFrame, target: str, task: str, cv_folds: int
) -> pd.DataFrame:
    """Apply the hard checks and drop rows whose target is missing; raise InputError on failure."""
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise InputError("data has duplicate column names")
    if target not in frame.columns:
        raise InputError(
            f"target column '{target}' is not in the data (columns: {', '.join(columns[:20])})"
        )
    if frame[target].isna().all():
        raise InputError(f"target column '{target}' is missing in every row")
    if frame.shape[1] < 2:
        raise InputError(f"data has no feature columns besides the target '{target}'")
    labelled = frame[frame[target].notna()].reset_index(drop=True)
    if len(labelled) < MIN_ROWS:
        raise InputError(
            f"too few rows: {len(labelled)} with a target value; at least {MIN_ROWS} are needed"
        )
    if task == "regression":
        if not is_numeric(labelled[target]):
            raise InputError(
                f"target column '{target}' is not numeric, so it cannot be a regression target"
            )
    else:
        _check_classes(labelled[target], target, cv_folds)
    return labelled


def _check_classes(y: pd.Series, target: str, cv_folds: int) -> None:
    counts = y.astype(str).value_counts()
    if len(counts) < 2:
        raise InputError(f"target column '{target}' has a single class '{counts.index[0]}'")
    if len(counts) > MAX_CLASSES:
        raise InputError(
            f"target column '{target}' has {len(counts)} distinct values; "
            "is the task regression?"
        )
    # Each class must reach every CV fold and the holdout.
    needed = 2 * cv_folds
    rare = counts[counts < needed]
    if not rare.empty:
        label, n = rare.index[0], int(rare.iloc[0])
        raise InputError(
            f"class '{label}' of target '{target}' has {n} rows; at least {needed} are needed "
            f"for {cv_folds}-fold cross-validation and a holdout"
        )


def infer_contract(frame: pd.DataFrame, target: str, task: str) -> DataContract:
    columns = tuple(_infer_column(frame[c], str(c)) for c in frame.columns if c != target)
    classes = None
    if task == "classification":
        classes = tuple(sorted(frame[target].dropna().astype(str).unique()))
    return DataContract(target=target, task=task, columns=columns, classes=classes)


def _infer_column(series: pd.Series, name: str) -> ColumnContract:
    nullable = bool(series.isna().any())
    if is_numeric(series):
        values = series.dropna()
        return ColumnContract(
            name=name,
            kind="numeric",
            dtype=str(series.dtype),
            nullable=nullable,
            minimum=float(values.min()) if len(values) else None,
            maximum=float(values.max()) if len(values) else None,
        )
    categories = series.dropna().astype(str).unique()
    return ColumnContract(
        name=name,
        kind="categorical",
        dtype=str(series.dtype),
        nullable=nullable,
        categories=tuple(sorted(categories)) if len(categories) <= MAX_CATEGORIES else None,
    )


def count_unseen(series: pd.Series, column: ColumnContract) -> int:
    """Values of a categorical column that training never saw (nulls are not counted)."""
    if column.categories is None:
        return 0
    return int((~series.dropna().astype(str).isin(set(column.categories))).sum())


def check_against_contract(frame: pd.DataFrame, contract: DataContract) -> ContractReport:
    """Compare later data (live or a batch to score) with the training contract."""
    present = {str(c) for c in frame.columns}
    expected = set(contract.feature_names)
    mismatches: dict[str, str] = {}
    unseen: dict[str, int] = {}
    out_of_range: dict[str, int] = {}
    nulls: dict[str, int] = {}
    for column in contract.columns:
        if column.name not in present:
            continue
        series = frame[column.name]
        n_null = int(series.isna().sum())
        if n_null and not column.nullable:
            nulls[column.name] = n_null
        if column.kind == "numeric":
            values = pd.to_numeric(series, errors="coerce")
            bad = int(values.isna().sum()) - n_null
            if bad:
                mismatches[column.name] = f"{bad} non-numeric values"
                continue
            n_out = 0
            if column.minimum is not None:
                n_out += int((values < column.minimum).sum())
            if column.maximum is not None:
                n_out += int((values > column.maximum).sum())
            if n_out:
                out_of_range[column.name] = n_out
        elif column.categories is not None:
            n_unseen = count_unseen(series, column)
            if n_unseen:
                unseen[column.name] = n_unseen
    extra = present - expected - {contract.target}
    return ContractReport(
        missing_columns=tuple(sorted(expected - present)),
        unexpected_columns=tuple(sorted(extra)),
        type_mismatches=mismatches,
        unseen_categories=unseen,
        out_of_range=out_of_range,
        unexpected_nulls=nulls,
    )



def rows_breaking_contract(frame: pd.DataFrame, contract: DataContract) -> dict[str, np.ndarray]:
    """Per numeric column, a mask of the rows whose value is not a finite number (nulls are
    allowed: the pipeline imputes them); columns with no such row are left out. Categorical
    columns take any value (unseen ones are ignored by the pipeline). The columns must be there."""
    found = {}
    for name in contract.numeric:
        series = frame[name]
        if series.dtype.kind in "iub":
            continue
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(values) & series.notna().to_numpy()
        if bad.any():
            found[name] = bad
    return found
