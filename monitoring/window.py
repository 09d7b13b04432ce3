"""A window of live traffic read cheaply: only the columns a check needs, and at most a
sample of its rows.

The parts of the window's hours are listed as read_window lists them; each part's Parquet
footer (one small read) gives its row groups and their `served_at` bounds, so groups wholly
before the window are never read. When the window holds at most `sample_rows` rows, every
row in it is read: the same rows, in the same order, as read_window gives. A bigger window
is sampled: a seeded random choice of row groups (at least MIN_GROUPS, so the sample spans
the window rather than one flush), read through Arrow, then `sample_rows` rows drawn
uniformly from what was read. Row counts of groups that straddle the window's start come
from their `served_at` column alone.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from experiments.errors import InputError
from monitoring.traffic import _PART, TRAFFIC, LocalFiles, S3Files, _folder, hour_of, skipping_unreadable

SERVED_AT = "served_at"
MIN_GROUPS = 16  # row groups read at least, when the window has as many
THREADS = 8  # footers and row groups are fetched in parallel: S3 reads wait on the network


@dataclass(frozen=True)
class WindowRead:
    """The rows read from a window and how they relate to the whole window."""

    frame: pd.DataFrame
    rows: int  # rows served in the window
    row_groups: int  # row groups that hold rows of the window
    row_groups_read: int

    @property
    def sampled(self) -> bool:
        return len(self.frame) < self.rows

    def as_json(self) -> dict:
        return {"rows": self.rows, "rows_checked": len(self.frame), "sampled": self.sampled,
                "row_groups": self.row_groups, "row_groups_read": self.row_groups_read}

    def metrics(self) -> dict[str, float]:
        return {"window.rows": self.rows, "window.rows_checked": len(self.frame),
                "window.row_groups": self.row_groups, "window.row_groups_read": self.row_groups_read}


@dataclass(frozen=True)
class _Group:
    path: str
    index: int  # in its file
    rows: int  # rows of the window in it (exact)
    whole: bool  # every row of the group is in the window


def arrow_filesystem(files) -> tuple[pafs.FileSystem, str]:
    """An Arrow filesystem for the store and the path its keys are under; on S3, with the
    endpoint, region and keys boto3 found (S3Files.arrow_filesystem)."""
    if isinstance(files, LocalFiles):
        return pafs.LocalFileSystem(), str(files.root)
    if not isinstance(files, S3Files):
        raise TypeError(f"no Arrow filesystem for {type(files).__name__}")
    return files.arrow_filesystem()


def read_window_columns(files, model: str, minutes: float, columns: list[str], *,
                        sample_rows: int, seed: int = 0, now: datetime | None = None) -> WindowRead:
    """The `columns` (those the window has) of the records served in the last `minutes`,
    oldest first; a seeded sample of `sample_rows` of them when the window holds more."""
    since = (now or datetime.now(UTC)) - timedelta(minutes=minutes)
    filesystem, root = arrow_filesystem(files)
    paths = [f"{root}/{key}" for key in _window_keys(files, model, since)]
    fragments = _footers(paths, filesystem)
    if not fragments:
        return WindowRead(pd.DataFrame(), 0, 0, 0)
    schema = _unified(fragments)
    wanted = [c for c in dict.fromkeys([*columns, SERVED_AT]) if c in schema.names]
    groups = _window_groups(fragments, since)
    rows = sum(g.rows for g in groups)
    chosen = groups
    if rows > sample_rows:
        chosen = _chosen_groups(groups, sample_rows, np.random.default_rng(seed))
    table, skipped = _read_groups(chosen, fragments, schema, wanted, since)
    chosen = [g for g in chosen if g.path not in skipped]
    if table.num_rows > sample_rows:
        rng = np.random.default_rng(seed)
        table = table.take(np.sort(rng.choice(table.num_rows, sample_rows, replace=False)))
    frame = table.to_pandas().sort_values(SERVED_AT, kind="stable").reset_index(drop=True)
    frame = _as_pandas_reads(frame[[c for c in wanted if c in columns]])
    return WindowRead(frame, rows, len(groups), len(chosen))


def _as_pandas_reads(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing text as NaN, as pd.concat leaves a column that some parts lack (Arrow gives
    None): the same frame as read_window, so the same digest."""
    gaps = [c for c in frame.columns if frame[c].dtype == object and frame[c].isna().any()]
    if not gaps:
        return frame
    frame = frame.copy()
    for name in gaps:
        frame[name] = frame[name].where(frame[name].notna(), np.nan)
    return frame


def _window_keys(files, model: str, since: datetime) -> list[str]:
    first_hour = hour_of(since)
    keys = []
    for key in files.list(_folder(model, TRAFFIC), first_hour):
        match = _PART.search(key)
        if match is not None and match.group(1) >= first_hour:
            keys.append(key)
    return keys


def _footers(paths: list[str], filesystem) -> dict[str, ds.ParquetFileFragment]:
    """Each part's fragment with its footer read; a part that is not Parquet is skipped with a
    warning, as read_parts does: one damaged file must not stop every later check."""
    parquet = ds.ParquetFileFormat()

    def footer(path: str):
        fragment = parquet.make_fragment(path, filesystem)
        try:
            fragment.ensure_complete_metadata()
        except (pa.ArrowException, OSError, ValueError) as error:
            skipping_unreadable(path, error)
            return None
        return fragment

    with ThreadPoolExecutor(THREADS) as pool:
        found = dict(zip(paths, pool.map(footer, paths), strict=True))
    return {path: fragment for path, fragment in found.items() if fragment is not None}


def _unified(fragments: dict) -> pa.Schema:
    """One schema for every part: a part written for another champion may lack a column
    (its rows get nulls there) or hold it as another number type (widened)."""
    schemas = [f.physical_schema for f in fragments.values()]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowException, ValueError) as error:
        raise InputError(f"the traffic parts disagree on column types: "
                         f"{str(error).splitlines()[0]}") from error


def _window_groups(fragments: dict, since: datetime) -> list[_Group]:
    """The row groups holding rows served from `since` on, in file then group order, each with
    its count of such rows: from the footer's `served_at` bounds, or, for a group that
    straddles `since` (or has no bounds), from its `served_at` column."""
    groups, straddling = [], []
    for path, fragment in fragments.items():
        for group in fragment.row_groups:
            low, high = _bounds(group.statistics.get(SERVED_AT))
            if high is not None and high < since:
                continue
            if low is not None and low >= since:
                groups.append(_Group(path, group.id, group.num_rows, True))
            else:
                straddling.append(len(groups))
                groups.append(_Group(path, group.id, group.num_rows, False))

    def counted(at: int) -> _Group:
        group = groups[at]
        fragment = fragments[group.path].subset(row_group_ids=[group.index])
        served = fragment.to_table(columns=[SERVED_AT], filter=ds.field(SERVED_AT) >= since)
        return _Group(group.path, group.index, served.num_rows, False)

    with ThreadPoolExecutor(THREADS) as pool:
        for at, group in zip(straddling, pool.map(counted, straddling), strict=True):
            groups[at] = group
    return [g for g in groups if g.rows]


def _bounds(statistics: dict | None) -> tuple[datetime | None, datetime | None]:
    if not statistics:
        return None, None
    low, high = statistics.get("min"), statistics.get("max")
    if not isinstance(low, datetime) or not isinstance(high, datetime) or low.tzinfo is None:
        return None, None
    return low, high


def _chosen_groups(groups: list[_Group], sample_rows: int, rng) -> list[_Group]:
    """A seeded random choice of groups holding at least `sample_rows` rows of the window and
    at least MIN_GROUPS groups, in their original order."""
    order = rng.permutation(len(groups))
    chosen, rows = [], 0
    for at in order:
        if rows >= sample_rows and len(chosen) >= MIN_GROUPS:
            break
        chosen.append(int(at))
        rows += groups[at].rows
    return [groups[at] for at in sorted(chosen)]


def _read_groups(groups: list[_Group], fragments: dict, schema: pa.Schema, columns: list[str],
                 since: datetime) -> tuple[pa.Table, set[str]]:
    """The columns of the window's rows in `groups`, concatenated in the groups' order, and
    the parts left out because their pages could not be read (each named in a warning)."""
    by_path: dict[str, list[_Group]] = {}
    for group in groups:
        by_path.setdefault(group.path, []).append(group)
    projected = pa.schema([schema.field(c) for c in columns])

    def read(path: str) -> pa.Table | None:
        chosen = by_path[path]
        fragment = fragments[path].subset(row_group_ids=[g.index for g in chosen])
        # Whole groups need no filter; a straddling one does.
        when = None if all(g.whole for g in chosen) else ds.field(SERVED_AT) >= since
        try:
            return fragment.to_table(schema=projected, columns=columns, filter=when)
        except (pa.ArrowException, OSError, ValueError) as error:  # a sound footer, damaged pages
            skipping_unreadable(path, error)
            return None

    with ThreadPoolExecutor(THREADS) as pool:
        found = dict(zip(by_path, pool.map(read, by_path), strict=True))
    tables = [table for table in found.values() if table is not None]
    skipped = {path for path, table in found.items() if table is None}
    return (pa.concat_tables(tables) if tables else projected.empty_table()), skipped
