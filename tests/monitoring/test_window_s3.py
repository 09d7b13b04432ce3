"""The cheap window reader on a real S3 API (SeaweedFS): a 200,000-row window read as a
sample of few row groups and few columns, still telling a shifted window from a stationary one."""

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from window_parts import CATEGORICAL, FEATURES, NUMERIC, part_table, write_window

from experiments.contract import infer_contract
from experiments.errors import InputError
from flows.preflight import require_columns
from monitoring.drift import MAX_ROWS, DriftColumns, compute_drift
from monitoring.traffic import open_files
from monitoring.window import MIN_GROUPS, read_window_columns

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
ROWS = 200_000
CHECKED = [*NUMERIC[:3], CATEGORICAL[0]]  # four columns: an Evidently report costs per column
COLUMNS = DriftColumns(NUMERIC[:3], CATEGORICAL[:1])


@pytest.fixture(scope="module")
def store(s3_server):
    """A stationary and a shifted 200,000-row window, 8 parts of 5,000-row groups each."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.environment().items():
            patch.setenv(name, value)
        files = open_files(f"s3://{s3_server.bucket}/window-{uuid.uuid4().hex[:8]}")
        for model, shift in (("stationary", 0.0), ("shifted", 0.5)):
            write_window(files, model, rows=ROWS, parts=8, row_group_rows=5_000, end=NOW,
                         minutes=40, seed=5, shift=shift)
        yield files


def test_a_big_window_reads_a_sample_of_its_row_groups_and_columns(store):
    """Given 200,000 rows in 40 row groups, the reader returns MAX_ROWS rows of the asked
    columns from MIN_GROUPS groups, and counts the whole window."""
    window = read_window_columns(store, "stationary", 60, FEATURES, sample_rows=MAX_ROWS, now=NOW)

    assert window.rows == ROWS and len(window.frame) == MAX_ROWS and window.sampled
    assert (window.row_groups, window.row_groups_read) == (40, MIN_GROUPS)
    assert list(window.frame.columns) == FEATURES


def test_drift_on_the_sample_flags_a_shifted_window_and_not_a_stationary_one(store):
    """Against a fresh reference of the stationary distribution, the sampled shifted window
    (every feature moved by half a standard deviation or remixed) is flagged on every column
    checked and the sampled stationary one on none."""
    reference = part_table(5_000, NOW, NOW - NOW, np.random.default_rng(6)).to_pandas()
    for model, drifted in (("stationary", ()), ("shifted", tuple(CHECKED))):
        sample = read_window_columns(store, model, 60, CHECKED, sample_rows=MAX_ROWS, now=NOW)
        assert compute_drift(reference, sample.frame, COLUMNS).drifted_columns == drifted, model


def test_a_damaged_part_or_a_missing_column_is_one_line(store, s3_server, caplog):
    """A truncated part is skipped with a warning naming it, the other rows all read; a window
    without a contract's column stops the check with one line naming the column."""
    key = store.list("stationary")[0]
    store.write(key.replace("part-", "part-0-truncated-"), store.read(key)[:1000])
    training = part_table(200, NOW, NOW - NOW, np.random.default_rng(7)).to_pandas()[FEATURES]
    contract = infer_contract(training.assign(num_absent=1.0, label=["a", "b"] * 100), "label",
                              "classification")

    with caplog.at_level("WARNING", logger="monitoring.window"):
        window = read_window_columns(store, "stationary", 60, contract.feature_names,
                                     sample_rows=MAX_ROWS, now=NOW)

    assert window.rows == ROWS and "num_absent" not in window.frame.columns
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"skipping the unreadable traffic part {s3_server.bucket}/{store.prefix}/"
        f"{key.replace('part-', 'part-0-truncated-')}"]
    with pytest.raises(InputError, match="^live traffic lacks columns of stationary's contract: "
                                         "num_absent$"):
        require_columns(window.frame, contract, "stationary", "live traffic")
