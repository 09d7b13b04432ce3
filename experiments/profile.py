"""The training data's profile: Evidently's data summary as HTML, and the warnings worth a
person's attention (a column almost constant, a feature that alone predicts the target
suspiciously well: a likely leak).

The warnings are plain functions on frames. The profile runs in a child process started
before the search (`start_profile`) and collected after it (`collect_profile`): Evidently
takes seconds to import, and the search leaves a core idle on most machines, so a demo
training waits for it only when it outlasts the search. A profile never fails a training:
whatever goes wrong becomes a warning.
"""

import contextlib
import json
import multiprocessing
import multiprocessing.process
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from experiments.priority import yield_to_training

PROFILE_ARTIFACT = "data/profile.html"
MAX_PROFILE_ROWS = 5_000  # above, the profile and the checks read a seeded sample of rows
MAX_PROFILE_COLUMNS = 60  # above, the correlation matrix (quadratic) reads a sample of columns
NEAR_CONSTANT_SHARE = 0.98  # one value in at least this share of the rows
# A feature alone scoring this in cross-validation (balanced accuracy; R^2 for regression)
# predicts the target about as well as the target itself: real data rarely does that.
LEAK_SCORE = 0.98
LEAK_TREE_DEPTH = 4  # classification: a few splits tell classes apart
LEAK_FOLDS = 3
LEAK_MIN_KNOWN = 0.5  # a feature known in fewer rows is not judged
COLLECT_TIMEOUT_S = 120.0  # waited for after the search, at most
NOT_MADE = "No data profile was made: `profile: false` in the spec."


@dataclass(frozen=True)
class Profile:
    """What the training keeps of a profile: the HTML's path (None when it failed), warnings,
    and notes on what it read (a sample of rows or columns)."""

    html: Path | None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def markdown(self) -> str:
        lines = [f"- **Warning:** {w}" for w in self.warnings] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def no_profile() -> Profile:
    """What a training whose spec turns the profile off keeps: no HTML, no warnings, a note."""
    return Profile(None, (), (NOT_MADE,))


def near_constant_columns(frame: pd.DataFrame, columns: list[str],
                          share: float = NEAR_CONSTANT_SHARE) -> list[str]:
    """Sentences for columns whose most common value (missing counts as a value) fills at
    least `share` of the rows."""
    found = []
    for column in columns:
        counts = frame[column].value_counts(dropna=False, normalize=True)
        if len(counts) and counts.iloc[0] >= share:
            value = counts.index[0]
            shown = "missing" if pd.isna(value) else f"`{value}`"
            found.append(f"column `{column}` is almost constant: {shown} in "
                         f"{counts.iloc[0]:.1%} of the rows")
    return found


def single_feature_scores(frame: pd.DataFrame, target: str, task: str, columns: list[str],
                          seed: int) -> dict[str, float]:
    """Each feature's cross-validated score when it alone predicts the target with a tree:
    balanced accuracy (classification, a shallow tree) or R^2 (regression), on the rows where
    it is known; features known in too few rows are left out."""
    y = frame[target].to_numpy()
    if task == "classification":
        model = DecisionTreeClassifier(max_depth=LEAK_TREE_DEPTH, random_state=seed)
        folds = StratifiedKFold(LEAK_FOLDS, shuffle=True, random_state=seed)
        scoring = "balanced_accuracy"
    else:
        # A few leaves cannot follow a continuous copy of the target: a full tree can, and
        # an honest feature's noise only lowers its score (the rows scored are unseen).
        model = DecisionTreeRegressor(random_state=seed)
        folds = KFold(LEAK_FOLDS, shuffle=True, random_state=seed)
        scoring = "r2"
    scores = {}
    for column in columns:
        # Scored where the feature is known: a leak is often filled in only after the fact.
        known = frame[column].notna().to_numpy()
        if known.sum() < max(LEAK_MIN_KNOWN * len(frame), 10 * LEAK_FOLDS):
            continue
        x = _as_number(frame[column][known]).reshape(-1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class thinner than the folds: its score stands
            try:
                fold_scores = cross_val_score(model, x, y[known], cv=folds, scoring=scoring,
                                              error_score="raise")
            except ValueError:  # too few rows of a class where the feature is known
                continue
        scores[column] = float(np.mean(fold_scores))
    return scores


def _as_number(series: pd.Series) -> np.ndarray:
    """Numbers as they are (trees take NaN); categories as codes, missing as -1."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float)
    return pd.factorize(series, use_na_sentinel=True)[0].astype(float)


def leak_warnings(scores: dict[str, float], task: str, threshold: float = LEAK_SCORE) -> list[str]:
    """Sentences for features that alone predict the target at least `threshold` well."""
    name = "balanced accuracy" if task == "classification" else "R^2"
    return [f"feature `{c}` alone predicts the target suspiciously well ({name} {s:.3f} in "
            f"cross-validation): a likely leak (a copy of the target, or known only after it)"
            for c, s in sorted(scores.items(), key=lambda kv: -kv[1]) if s >= threshold]


def sample_for_profile(frame: pd.DataFrame, target: str, features: list[str], seed: int,
                       max_rows: int = MAX_PROFILE_ROWS, max_columns: int = MAX_PROFILE_COLUMNS
                       ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The rows the profile reads, the features its correlation matrix covers, and notes
    saying so when either is a sample."""
    notes, rng = [], np.random.default_rng(seed)
    if len(frame) > max_rows:
        rows = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
        notes.append(f"Profiled on a sample of {max_rows} of the {len(frame)} rows.")
        frame = frame.iloc[rows]
    covered = features
    if len(features) > max_columns:
        covered = [features[i] for i in np.sort(rng.choice(len(features), max_columns, replace=False))]
        notes.append(f"Too wide for a full correlation matrix: correlations cover a sample of "
                     f"{max_columns} of the {len(features)} features (with the target).")
    return frame, covered, notes


def profile_data(frame: pd.DataFrame, target: str, task: str, numeric: list[str],
                 categorical: list[str], out_dir: str, seed: int) -> Profile:
    """The profile of the training data: the HTML report written under `out_dir`, the
    warnings and the notes. Runs in the child process."""
    import time

    started = time.perf_counter()
    features = numeric + categorical
    frame, covered, notes = sample_for_profile(frame, target, features, seed)
    found = near_constant_columns(frame, features)
    found += leak_warnings(single_feature_scores(frame, target, task, features, seed), task)
    with_target = bool(target_partners(task, numeric, categorical, covered))
    if not with_target:
        notes.append(NO_TARGET_PARTNER[task])
    html = Path(out_dir) / Path(PROFILE_ARTIFACT).name
    _evidently_report(frame, target, task, numeric, categorical, covered,
                      with_target).save_html(str(html))
    return Profile(html, tuple(found), tuple(notes), time.perf_counter() - started)


# Evidently correlates a categorical column (a class target) with categorical columns only
# (Cramer's V), a numeric one (a regression target) with numeric columns only; with none,
# its ColumnCorrelations fails (KeyError: 'cramer_v' on all-numeric classification data).
NO_TARGET_PARTNER = {
    "classification": "No categorical feature to correlate the class target with (Evidently "
                      "pairs a class target with categorical columns only); the leak check "
                      "still scores every feature against it.",
    "regression": "No numeric feature to correlate the target with (Evidently pairs a numeric "
                  "target with numeric columns only); the leak check still scores every "
                  "feature against it.",
}


def target_partners(task: str, numeric: list[str], categorical: list[str],
                    covered: list[str]) -> list[str]:
    """The covered features Evidently can correlate the target with."""
    return [c for c in (categorical if task == "classification" else numeric) if c in covered]


def _evidently_report(frame, target, task, numeric, categorical, covered, with_target=True):
    """DataSummaryPreset (per-column distributions, missing values, constant and almost
    duplicated columns) with the correlations among features and, when it has a partner
    column, of the target with them."""
    # Imported here: Evidently takes seconds to import.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ColumnCorrelations, DatasetCorrelations
    from evidently.presets import DataSummaryPreset

    by_class = task == "classification"
    definition = DataDefinition(
        numerical_columns=[c for c in numeric if c in covered] + ([] if by_class else [target]),
        categorical_columns=[c for c in categorical if c in covered] + ([target] if by_class else []),
    )
    data = frame[[target, *covered]]
    metrics = [DataSummaryPreset(), DatasetCorrelations()]
    if with_target:
        metrics.append(ColumnCorrelations(column_name=target))
    with one_histogram_per_column():
        return Report(metrics).run(Dataset.from_pandas(data, data_definition=definition), None)


@contextlib.contextmanager
def one_histogram_per_column():
    """Within the block, Evidently builds each column's histogram once.

    Evidently 0.7 builds the same plotly histogram of a column again for each statistic the
    data summary computes on it (min, max, mean, std, three quantiles...): on 30 numeric
    columns, 211 figures and 85 % of the report's CPU time. Here the figure is built once per
    column and reused under each statistic's own title: the report is the same. Only for the
    block (one report on one dataset, so a column's name and length identify it)."""
    from evidently.legacy.renderers.html_widgets import WidgetSize, plotly_data
    from evidently.metrics import column_statistics

    original = column_statistics.distribution
    figures: dict = {}

    def distribution(title, current, reference):
        key = (current.data.name, current.type.value, len(current.data), reference is None)
        if key not in figures:
            widgets = original(title, current, reference)
            figures[key] = widgets[0].params
            return widgets
        figure = figures[key]
        return [plotly_data(title=title, data=figure["data"], layout=figure["layout"],
                            size=WidgetSize.FULL)]

    column_statistics.distribution = distribution
    try:
        yield
    finally:
        column_statistics.distribution = original


RESULT_FILE = "profile.json"


def _profile_into(frame, target, task, numeric, categorical, out_dir, seed) -> None:
    """The child process's work: the profile, its findings as JSON beside the HTML."""
    result = Path(out_dir) / RESULT_FILE
    try:
        profile = profile_data(frame, target, task, numeric, categorical, out_dir, seed)
        found = {"warnings": list(profile.warnings), "notes": list(profile.notes),
                 "seconds": profile.seconds}
    except Exception as error:  # noqa: BLE001 - reported to the training as a warning
        found = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    result.write_text(json.dumps(found))


@dataclass
class PendingProfile:
    """A profile being computed in a child process, or as a job of a helper process
    (`job`), writing into `directory`."""

    process: multiprocessing.process.BaseProcess | None
    directory: tempfile.TemporaryDirectory
    failure: str | None = None
    job: object | None = None  # a flows.spare.Pending: result(timeout), cancel()


def start_profile(frame: pd.DataFrame, target: str, task: str, numeric: list[str],
                  categorical: list[str], seed: int, behind=None) -> PendingProfile:
    """Start profiling beside the training, below its CPU priority: a job for `behind` (a
    process forked with everything imported, flows.spare.behind) when it takes one, else a
    fresh process (spawned: the caller's threads are not copied), which imports pandas,
    scikit-learn and Evidently first (~8 CPU-s, against ~3.7 in the helper). Either
    does one thing and exits, so it never outlives a killed training by more than that."""
    directory = tempfile.TemporaryDirectory(prefix="mlops-profile-")
    args = (frame, target, task, list(numeric), list(categorical), directory.name, seed)
    job = behind(_profile_into, *args) if behind is not None else None
    if job is not None:
        return PendingProfile(None, directory, job=job)
    try:
        process = multiprocessing.get_context("spawn").Process(
            target=_profile_into, name="mlops-profile", daemon=True, args=args)
        process.start()
        yield_to_training(process.pid)  # it imports Evidently while the search runs
    except Exception as error:  # noqa: BLE001 - a profile never fails a training
        return PendingProfile(None, directory, failure=f"{type(error).__name__}: {error}")
    return PendingProfile(process, directory)


def collect_profile(pending: PendingProfile, timeout_s: float = COLLECT_TIMEOUT_S) -> Profile:
    """The finished profile, or one whose only content is the warning that it failed."""
    failure = pending.failure or _wait(pending, timeout_s)
    if failure is None:
        found = json.loads((Path(pending.directory.name) / RESULT_FILE).read_text())
        if "error" not in found:
            return Profile(Path(pending.directory.name) / Path(PROFILE_ARTIFACT).name,
                           tuple(found["warnings"]), tuple(found["notes"]), found["seconds"])
        failure = found["error"]
    return Profile(None, (f"the data profile failed ({failure}); the training goes on without it",))


def _wait(pending: PendingProfile, timeout_s: float) -> str | None:
    """Wait for the profile's process or job: None once it wrote its result, else why not."""
    not_done = f"not done {timeout_s:.0f} s after the gate"
    if pending.job is not None:
        try:
            pending.job.result(timeout_s)
        except TimeoutError:
            return not_done
        except Exception as error:  # noqa: BLE001 - its helper process died: one more warning
            return f"its process ended ({error})"
    elif pending.process is not None:
        pending.process.join(timeout_s)
        if pending.process.is_alive():
            return not_done
    if not (Path(pending.directory.name) / RESULT_FILE).exists():
        code = pending.process.exitcode if pending.process is not None else None
        return f"its process ended with code {code}"
    return None


def close_profile(pending: PendingProfile) -> None:
    """Stop the child process if it still runs (a failed or abandoned training) and remove
    the profile's files (after they are logged)."""
    if pending.process is not None and pending.process.is_alive():
        pending.process.terminate()  # our own child; nothing else waits for it
        pending.process.join(5)
    if pending.job is not None:
        pending.job.cancel()  # its helper, if still at it, is killed: nothing else waits for it
    pending.directory.cleanup()
