"""Whether current data has drifted from the reference: one Evidently report, reduced at once.

Each column's drift is a distance with a fixed method: Wasserstein distance normalised by
the reference's standard deviation for numeric columns, Jensen-Shannon distance (natural
log) for categorical ones. Evidently's default would switch to p-value tests below 1,000
reference rows, so the method is always passed explicitly.

A column drifts when its distance reaches max(0.1, the distance sampling noise alone
reaches 1% of the time). The fixed 0.1 is the size of change that matters; the noise term
exists because the distance between two finite samples of one distribution is not zero:
it shrinks like sqrt(1/n_reference + 1/n_current). Per column, on stationary data (400
repeats; numeric: normal, lognormal, Poisson; categorical: 5 even or 20 Zipf categories):

    rows ref/cur     normalised Wasserstein          Jensen-Shannon, 5 / 20 categories
                     99th pct    flagged at 0.1      99th pct        flagged at 0.1
    300 / 200        0.26-0.32   50-61%              0.11 / 0.20     3% / 97%
    1,000 / 200      0.20-0.21   36-46%              0.10 / 0.18     0.5% / 86%
    20,000 / 200     0.18-0.22   30-32%              0.09 / 0.16     0.3% / 71%
    20,000 / 5,000   0.04-0.05   0%                  0.02 / 0.03     0%

So a fixed 0.1 flags 30-61% of the numeric columns of a stationary 200-row window, and a
fixed threshold high enough for 200 rows (~0.3) would miss 0.1-0.3 SD shifts that 5,000-row
windows measure reliably. Noise terms (500 more repeats per shape and size):
- numeric: 3.5 * sqrt(1/n_ref + 1/n_cur). The 99th percentile of W / sqrt(1/n_ref + 1/n_cur)
  was 2.4-2.9 for normal, uniform, bimodal, exponential, Poisson and 0/1 columns, 3.1-3.5 for
  Student t(3) and lognormal(sigma=1), up to 4.9 for lognormal(sigma=1.5): very heavy tails
  get a few percent of false flags on small windows.
- categorical: sqrt(chi2_0.99(k - 1) / 8 * (1/n_ref + 1/n_cur)) for k categories, from
  8 * JSD ~ chi2(k - 1) * (1/n_ref + 1/n_cur) when both samples come from one distribution.
The noise term exceeds 0.1 only while n_ref * n_cur / (n_ref + n_cur) is below ~1,200
(numeric), e.g. windows under ~1,300 rows against a sampled 20,000-row reference.

End to end through compute_drift (8 numeric columns of assorted shapes + 2 categorical, 10
windows per pairing, one reference each, references of 300, 2,000 and 50,000 rows against
windows of 200, 1,000 and 5,000 rows: 9 pairings):
- stationary windows: 0 of 90 called drifted (drift_share >= 0.3); 1 of 900 column checks
  flagged. With a fixed 0.1 instead, 200-row windows were called drifted in 8/10 (300-row
  reference), 4/10 (2,000) and 9/10 (50,000) windows; 1,000 and 5,000-row windows in 0/10.
- 3 of 10 columns shifted by 1 SD: 90 of 90 windows drifted, all three columns found each
  time (scores 0.88-1.47 against thresholds of 0.10-0.33).
- a categorical mix moved from (0.4, 0.3, 0.2, 0.1) to (0.1, 0.2, 0.3, 0.4): that column
  flagged in 90 of 90 windows (scores 0.26-0.36 against 0.10-0.12).
With only one to three feature columns one false column is already a share >= 0.3, so a
window's false-alarm rate there is the per-column rate (~1-3%, more for very heavy tails).

Missing categorical values count as a category of their own (a jump in missing values is a
change in the mix); missing numeric values are left out, as Evidently does.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC_METHOD = "wasserstein"
NUMERIC_THRESHOLD = 0.1  # the floor; see drift_threshold
CATEGORICAL_METHOD = "jensenshannon"
CATEGORICAL_THRESHOLD = 0.1
NUMERIC_NOISE_FACTOR = 3.5
NOISE_QUANTILE = 0.99
MISSING = "<missing>"
MAX_ROWS = 20_000  # rows compared per side at most; more are sampled down
# Used only for the data-set verdict drawn in the HTML report; the decision is policy.is_drift's.
REPORT_DRIFT_SHARE = 0.3

_KINDS = {
    "numeric": (NUMERIC_METHOD, NUMERIC_THRESHOLD),
    "categorical": (CATEGORICAL_METHOD, CATEGORICAL_THRESHOLD),
}


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # "numeric" | "categorical"
    method: str  # the Evidently stat test name used
    threshold: float  # the threshold used for this column (see drift_threshold)
    score: float  # the distance, as Evidently reports it
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    columns: tuple[ColumnDrift, ...]  # feature columns only
    drift_share: float  # share of feature columns drifted
    drifted_columns: tuple[str, ...]
    reference_rows: int  # rows actually compared (after sampling)
    current_rows: int
    sampled: bool  # True when either side was sampled down
    max_rows: int  # the cap used
    target: ColumnDrift | None = None  # reported apart, when the target has values in both frames


def choose_method(kind: str) -> tuple[str, float]:
    """The Evidently stat test and its floor threshold for a column kind."""
    if kind not in _KINDS:
        raise ValueError(f"unknown column kind '{kind}': expected 'numeric' or 'categorical'")
    return _KINDS[kind]


def drift_threshold(kind: str, reference_n: int, current_n: int, categories: int = 2) -> float:
    """The distance a column must reach: the kind's floor, or the 99% sampling noise when larger."""
    _, floor = choose_method(kind)
    spread = math.sqrt(1 / reference_n + 1 / current_n)
    if kind == "numeric":
        noise = NUMERIC_NOISE_FACTOR * spread
    else:
        from scipy.stats import chi2

        noise = math.sqrt(chi2.ppf(NOISE_QUANTILE, max(categories - 1, 1)) / 8) * spread
    return max(floor, float(noise))


@dataclass(frozen=True)
class DriftColumns:
    """Which columns to compare and as what: the contract's feature lists, and its target."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    target: str | None = None
    # Defaults to "numeric" for a numeric target and "categorical" otherwise; pass
    # "categorical" for class labels stored as numbers.
    target_kind: str | None = None

    def __post_init__(self) -> None:
        # A contract holds lists; the value keeps tuples so that it stays frozen.
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "categorical", tuple(self.categorical))

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: DriftColumns,
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    html_path: Path | None = None,
    snapshot_path: Path | None = None,
) -> DriftSummary:
    """Compare current with reference column by column; sample each side down to max_rows rows.
    The report goes to `html_path` as HTML and to `snapshot_path` as Evidently's snapshot JSON."""
    features, target = columns.features, columns.target
    _check_inputs(reference, current, columns, max_rows)
    kinds = _column_kinds(reference, current, columns)
    has_target = target is not None and target in kinds

    rng = np.random.default_rng(seed)
    ref = _sample(reference, max_rows, rng)
    cur = _sample(current, max_rows, rng)
    sampled = len(ref) < len(reference) or len(cur) < len(current)
    ref = _prepare(ref, kinds, target)
    cur = _prepare(cur, kinds, target)

    if has_target and (ref[target].notna().sum() == 0 or cur[target].notna().sum() == 0):
        has_target = False  # e.g. live data whose labels have not arrived yet
        del kinds[target]
        ref, cur = ref.drop(columns=target), cur.drop(columns=target)
    thresholds = {c: _column_threshold(c, kind, ref[c], cur[c]) for c, kind in kinds.items()}

    snapshot = _run_report(
        ref, cur, kinds, thresholds, features, target if has_target else None, for_html=html_path is not None
    )
    _save(snapshot, html_path, snapshot_path)
    results = _read_snapshot(snapshot.dict(), kinds)

    found = tuple(results[c] for c in features)
    drifted = tuple(c.column for c in found if c.drifted)
    return DriftSummary(
        columns=found,
        drift_share=len(drifted) / len(found),
        drifted_columns=drifted,
        reference_rows=len(ref),
        current_rows=len(cur),
        sampled=sampled,
        max_rows=max_rows,
        target=results[target] if has_target else None,
    )


def _save(snapshot, html_path: Path | None, snapshot_path: Path | None) -> None:
    """The report as HTML (for people) and as Evidently's snapshot JSON (for its UI)."""
    if html_path is not None:
        snapshot.save_html(str(html_path))
    if snapshot_path is not None:
        Path(snapshot_path).write_text(snapshot.dumps())


def _check_inputs(
    reference: pd.DataFrame, current: pd.DataFrame, columns: DriftColumns, max_rows: int
) -> None:
    features, target = columns.features, columns.target
    if not features:
        raise ValueError("no columns to compare: pass at least one numeric or categorical column")
    duplicated = sorted({c for c in features if features.count(c) > 1})
    if duplicated:
        raise ValueError(f"columns listed more than once (numeric and categorical?): {', '.join(duplicated)}")
    if target is not None and target in features:
        raise ValueError(f"target '{target}' is also listed as a feature; list it as target only")
    if max_rows < 2:
        raise ValueError(f"max_rows must be at least 2, got {max_rows}")
    for name, frame in (("reference", reference), ("current", current)):
        if frame.empty:
            raise ValueError(f"the {name} data is empty: drift needs rows on both sides")
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise ValueError(f"columns missing from the {name} data: {', '.join(missing)}")
        not_numeric = [c for c in columns.numeric if not _is_numeric(frame[c]) and not frame[c].isna().all()]
        if not_numeric:
            raise ValueError(
                f"columns listed as numeric hold non-numeric values in the {name} data: "
                f"{', '.join(not_numeric)}; list them as categorical or fix their type"
            )


def _column_kinds(reference: pd.DataFrame, current: pd.DataFrame, columns: DriftColumns) -> dict[str, str]:
    """Each compared column's kind: the features', and the target's when both frames have it."""
    kinds = {**dict.fromkeys(columns.numeric, "numeric"), **dict.fromkeys(columns.categorical, "categorical")}
    target = columns.target
    if target is not None and target in reference.columns and target in current.columns:
        kinds[target] = _target_kind(reference[target], current[target], target, columns.target_kind)
    return kinds


def _target_kind(reference: pd.Series, current: pd.Series, target: str, kind: str | None) -> str:
    both_numeric = _is_numeric(reference) and _is_numeric(current)
    kind = kind or ("numeric" if both_numeric else "categorical")
    choose_method(kind)
    if kind == "numeric" and not both_numeric:
        raise ValueError(f"target '{target}' is not numeric in both frames; pass target_kind='categorical'")
    return kind


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series)


def _sample(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    rows = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[rows]


def _prepare(frame: pd.DataFrame, kinds: dict[str, str], target: str | None) -> pd.DataFrame:
    """Only the compared columns, numeric as float, categorical as strings."""
    prepared = {}
    for column, kind in kinds.items():
        series = frame[column]
        if kind == "numeric":
            # Evidently drops infinities with missing values; doing it here keeps the counts right.
            prepared[column] = series.astype(float).replace([np.inf, -np.inf], np.nan).to_numpy()
        else:
            if pd.api.types.is_float_dtype(series) and bool((series.dropna() % 1 == 0).all()):
                # Integer codes turn float when a side has missing values: 3.0 must still match 3.
                series = series.astype("Int64")
            values = series.astype(object)
            present = values.notna()
            # A missing feature value is a category of its own; a missing label is just not known yet.
            fill = np.nan if column == target else MISSING
            prepared[column] = values.astype(str).where(present, fill).to_numpy()
    return pd.DataFrame(prepared)


def _column_threshold(column: str, kind: str, reference: pd.Series, current: pd.Series) -> float:
    reference_n, current_n = int(reference.notna().sum()), int(current.notna().sum())
    for name, n in (("reference", reference_n), ("current", current_n)):
        if n == 0:
            raise ValueError(f"column '{column}' has no values in the {name} data (all missing)")
    categories = 2
    if kind == "categorical":
        categories = len(set(reference.dropna()) | set(current.dropna()))
    return drift_threshold(kind, reference_n, current_n, categories)


def _run_report(ref, cur, kinds, thresholds, features, target, *, for_html: bool):
    """One ValueDrift metric per column; inside DataDriftPreset only when the HTML is wanted."""
    # Imported here: Evidently takes seconds to import.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import RowCount, ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    methods = {c: choose_method(k)[0] for c, k in kinds.items()}
    if for_html:
        # The preset adds the data-set summary and drift table to the HTML, and computes every
        # column twice more for them (~2x the time); its per-column metrics are the same ValueDrift.
        metrics = [
            DataDriftPreset(
                columns=features,
                drift_share=REPORT_DRIFT_SHARE,
                num_method=NUMERIC_METHOD,
                cat_method=CATEGORICAL_METHOD,
                num_threshold=NUMERIC_THRESHOLD,
                cat_threshold=CATEGORICAL_THRESHOLD,
                per_column_method={c: methods[c] for c in features},
                per_column_threshold={c: thresholds[c] for c in features},
            )
        ]
    else:
        metrics = [ValueDrift(column=c, method=methods[c], threshold=thresholds[c]) for c in features]
    if target is not None:
        metrics.append(ValueDrift(column=target, method=methods[target], threshold=thresholds[target]))
    # The rows checked, for the dashboard over time.
    report = Report([*metrics, RowCount()], include_tests=True)
    return report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )


def _read_snapshot(raw: dict, kinds: dict[str, str]) -> dict[str, ColumnDrift]:
    """Per-column drift from a snapshot's dict(): ValueDrift metrics, and their tests for the verdict."""
    failed = {t["metric_config"]["metric_id"] for t in raw["tests"] if t["status"] == "FAIL"}
    results = {}
    for metric in raw["metrics"]:
        config = metric["config"]
        if not config["type"].endswith(":ValueDrift") or config["column"] not in kinds:
            continue
        column = config["column"]
        results[column] = ColumnDrift(
            column=column,
            kind=kinds[column],
            method=str(config["method"]),
            threshold=float(config["threshold"]),
            score=float(metric["value"]),
            drifted=metric["id"] in failed,
        )
    lost = [c for c in kinds if c not in results]
    if lost:
        raise RuntimeError(f"the Evidently report has no drift result for: {', '.join(lost)}")
    return results
