"""The cheap window reader on a local folder: the same rows as read_window below the sample
size, a seeded sample of few row groups above it (the S3 side: test_window_s3.py)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from window_parts import FEATURES, part_table, write_part, write_window

from experiments.errors import InputError
from monitoring.traffic import LocalFiles, read_window
from monitoring.window import MIN_GROUPS, read_window_columns

NOW = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def test_a_small_window_gives_exactly_the_rows_read_window_gives(tmp_path, caplog):
    """Given an hour too old to list, a part whose row groups lie before, across and inside
    the window's start, a part lacking a feature, one holding the same moments as another
    (order ties), and a damaged part, the reader returns read_window's rows and order, the
    missing feature as missing values, and names the damaged part in a warning."""
    files = LocalFiles(tmp_path)
    rng = np.random.default_rng(1)
    write_part(files, "m", part_table(50, NOW - timedelta(hours=2), timedelta(minutes=50), rng),
               20, "a-old")
    # 11:00-12:00 in groups of 20 minutes: one before 11:30, one across it, one after.
    write_part(files, "m", part_table(600, NOW - timedelta(minutes=90), timedelta(minutes=60), rng),
               200, "b-across")
    ties = part_table(300, NOW - timedelta(minutes=20), timedelta(minutes=10), rng)
    write_part(files, "m", ties, 100, "c-ties")
    write_part(files, "m", ties.drop_columns(["cat_1"]), 100, "d-no-cat_1")
    damaged = tmp_path / "m" / "hour=2026-01-01T12" / "part-e-damaged.parquet"
    damaged.write_bytes((tmp_path / "m" / "hour=2026-01-01T12" / "part-c-ties.parquet").read_bytes()[:500])

    with caplog.at_level("WARNING"):
        window = read_window_columns(files, "m", 60, FEATURES, sample_rows=10_000, now=NOW)
    expected = read_window(files, "m", 60, now=NOW)[FEATURES]

    # 300 + 300 rows of 12:10-12:20, and the half or so of 11:00-12:00's 600 after 11:30
    assert 700 < len(expected) < 1100
    assert not window.sampled and window.rows == len(expected) == len(window.frame)
    assert window.row_groups_read == window.row_groups == 2 + 3 + 3  # not the one before 11:30
    pd.testing.assert_frame_equal(window.frame, expected)
    assert window.frame["cat_1"].isna().sum() == 300
    assert "part-e-damaged.parquet" in caplog.text and "unreadable traffic part" in caplog.text


def test_a_part_with_a_sound_footer_and_damaged_pages_is_skipped_with_a_warning(tmp_path, caplog):
    """Given two parts of the window, one whose footer reads but whose pages are damaged (its
    first page header overwritten), the reader returns the other part's rows, names the
    damaged part in a warning, and does not count its row groups as read."""
    files = LocalFiles(tmp_path)
    rng = np.random.default_rng(3)
    write_part(files, "m", part_table(300, NOW - timedelta(minutes=20), timedelta(minutes=10), rng),
               100, "a-good")
    bad = write_part(files, "m", part_table(300, NOW - timedelta(minutes=20), timedelta(minutes=10),
                                            rng), 100, "b-pages")
    data = bytearray((tmp_path / bad).read_bytes())
    data[4:404] = bytes(range(256)) + bytes(range(144))  # after the magic bytes, before the footer
    (tmp_path / bad).write_bytes(bytes(data))

    with caplog.at_level("WARNING"):
        window = read_window_columns(files, "m", 60, FEATURES, sample_rows=10_000, now=NOW)

    assert window.rows == 600 and window.row_groups == 6  # both footers count the window
    assert len(window.frame) == 300 and window.row_groups_read == 3
    assert "part-b-pages.parquet" in caplog.text and "unreadable traffic part" in caplog.text


def test_a_big_window_is_a_seeded_sample_of_few_row_groups(tmp_path):
    """Given 60,000 rows in 60 row groups, a 2,000-row sample reads MIN_GROUPS groups and only
    the asked columns, counts the whole window exactly, and is the same for the same seed."""
    files = LocalFiles(tmp_path)
    write_window(files, "m", rows=60_000, parts=6, row_group_rows=1_000, end=NOW,
                 minutes=50, seed=2)

    window = read_window_columns(files, "m", 60, ["num_0", "cat_0"], sample_rows=2_000, now=NOW)
    again = read_window_columns(files, "m", 60, ["num_0", "cat_0"], sample_rows=2_000, now=NOW)
    other = read_window_columns(files, "m", 60, ["num_0", "cat_0"], sample_rows=2_000, seed=1,
                                now=NOW)

    assert window.sampled and window.rows == 60_000 and len(window.frame) == 2_000
    assert (window.row_groups, window.row_groups_read) == (60, MIN_GROUPS)
    assert list(window.frame.columns) == ["num_0", "cat_0"]
    pd.testing.assert_frame_equal(window.frame, again.frame)
    assert not window.frame.equals(other.frame)
    assert window.as_json() == {"rows": 60_000, "rows_checked": 2_000, "sampled": True,
                                "row_groups": 60, "row_groups_read": MIN_GROUPS}


def test_an_empty_or_absent_window_reads_nothing(tmp_path):
    files = LocalFiles(tmp_path)
    assert read_window_columns(files, "m", 60, FEATURES, sample_rows=100, now=NOW).rows == 0
    write_window(files, "m", rows=100, parts=1, row_group_rows=50, end=NOW - timedelta(hours=3),
                 minutes=10, seed=3)
    window = read_window_columns(files, "m", 60, FEATURES, sample_rows=100, now=NOW)
    assert window.rows == 0 and window.frame.empty


def test_parts_that_disagree_on_a_type_are_one_line(tmp_path):
    files = LocalFiles(tmp_path)
    rng = np.random.default_rng(4)
    table = part_table(10, NOW - timedelta(minutes=5), timedelta(minutes=1), rng)
    write_part(files, "m", table, 10, "a")
    write_part(files, "m", table.set_column(0, "num_0", table.column("cat_0")), 10, "b")
    with pytest.raises(InputError, match="^the traffic parts disagree on column types: "):
        read_window_columns(files, "m", 60, FEATURES, sample_rows=100, now=NOW)
