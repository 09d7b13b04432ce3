"""The live-traffic store on a local folder: buffering, flushing, partitions, reading back."""

import re
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from polling import wait_for

from monitoring.traffic import (
    FEEDBACK,
    LABEL,
    TRAFFIC,
    BufferFull,
    LocalFiles,
    TrafficWriter,
    hour_of,
    open_files,
    read_labelled,
    read_parts,
    read_window,
)

PART = re.compile(r"^m/hour=\d{4}-\d{2}-\d{2}T\d{2}/part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet$")


def traffic(n: int, served_at: datetime, request_id: str = "r1") -> dict:
    return {
        "x": np.arange(n, dtype="float64"),
        "colour": np.array(["red"] * n, dtype=object),
        "prediction": np.array(["yes"] * n, dtype=object),
        "model_version": np.full(n, "1", dtype=object),
        "served_at": np.full(n, np.datetime64(served_at.replace(tzinfo=None), "us")),
        "request_id": np.full(n, request_id, dtype=object),
        "record_index": np.arange(n),
    }


def feedback(request_id: str, labels: list, served_at: datetime, received_at: datetime) -> dict:
    n = len(labels)
    return {
        "request_id": np.full(n, request_id, dtype=object),
        "record_index": np.arange(n),
        LABEL: np.array(labels, dtype=object),
        "model_version": np.full(n, "1", dtype=object),
        "served_hour": np.full(n, hour_of(served_at), dtype=object),
        "received_at": np.full(n, np.datetime64(received_at.replace(tzinfo=None), "us")),
    }


def parts(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_rows_are_flushed_on_the_interval(tmp_path):
    """Given a 0.2 s interval, rows added to a running writer land without a close."""
    writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=0.2, flush_rows=10_000)
    writer.start()
    try:
        writer.add(TRAFFIC, hour_of(datetime.now(UTC)), traffic(3, datetime.now(UTC)))

        assert wait_for(lambda: len(parts(tmp_path)) == 1)
    finally:
        writer.close()
    assert len(read_parts(LocalFiles(tmp_path), "m", TRAFFIC)) == 3


def test_a_full_buffer_is_flushed_before_the_interval(tmp_path):
    writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600, flush_rows=10)
    writer.start()
    try:
        writer.add(TRAFFIC, hour_of(datetime.now(UTC)), traffic(4, datetime.now(UTC)))
        time.sleep(0.3)
        assert parts(tmp_path) == []

        writer.add(TRAFFIC, hour_of(datetime.now(UTC)), traffic(6, datetime.now(UTC)))

        assert wait_for(lambda: len(parts(tmp_path)) == 1)
    finally:
        writer.close()


def test_close_writes_everything_buffered(tmp_path):
    """Given an interval that never comes, close() still writes every row, one part per hour."""
    now = datetime.now(UTC)
    earlier = now - timedelta(hours=1)
    writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600)
    writer.start()
    for _ in range(5):
        writer.add(TRAFFIC, hour_of(now), traffic(7, now))
    writer.add(TRAFFIC, hour_of(earlier), traffic(2, earlier))

    writer.close()

    names = parts(tmp_path)
    assert len(names) == 2 and all(PART.match(n) for n in names)
    assert {n.split("/")[1] for n in names} == {f"hour={hour_of(now)}", f"hour={hour_of(earlier)}"}
    frame = read_parts(LocalFiles(tmp_path), "m", TRAFFIC)
    assert len(frame) == 37
    assert str(frame["served_at"].dtype) == "datetime64[us, UTC]"


def test_a_failed_write_leaves_no_file_and_keeps_the_rows(tmp_path, monkeypatch):
    """Given a rename that fails once, no part (and no temporary file) is left, the rows stay
    buffered, and the next flush writes them."""
    import monitoring.traffic as store

    real_replace = store.os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", failing_replace)
    writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600)
    writer.add(TRAFFIC, hour_of(datetime.now(UTC)), traffic(5, datetime.now(UTC)))

    with pytest.raises(OSError):
        writer.flush()
    assert parts(tmp_path) == [] and writer.pending_rows == 5

    assert writer.flush() == 5
    assert len(parts(tmp_path)) == 1


class Outage(LocalFiles):
    """A local folder whose writes fail while `down` is set (a store that went away)."""

    def __init__(self, root):
        super().__init__(root)
        self.down = True
        self.attempts = 0

    def write(self, key, data):
        self.attempts += 1
        if self.down:
            raise ConnectionError("store unreachable\nsecond line")
        super().write(key, data)


def test_a_failing_store_is_retried_with_backoff_and_logged_once(tmp_path, caplog):
    """Given a store that fails for several attempts, the writer logs one error when writing
    starts failing and one line when it works again, keeps every row meanwhile, and writes
    them all once the store is back."""
    files = Outage(tmp_path)
    writer = TrafficWriter(files, "m", flush_s=0.05, backoff_max_s=0.2)
    with caplog.at_level("INFO", logger="monitoring.traffic"):
        writer.start()
        try:
            for i in range(3):
                writer.add(TRAFFIC, hour_of(datetime.now(UTC)), traffic(4, datetime.now(UTC), f"r{i}"))
            assert wait_for(lambda: writer.failed_attempts >= 4, timeout_s=30)
            assert writer.pending_rows == 12 and parts(tmp_path) == []
            files.down = False
            assert wait_for(lambda: writer.pending_rows == 0, timeout_s=30)
        finally:
            writer.close()

    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "writing live traffic failed" in m]) == 1
    assert len([m for m in messages if "live traffic written again" in m]) == 1
    assert "store unreachable" in caplog.text and "second line" not in caplog.text
    stored = read_parts(LocalFiles(tmp_path), "m", TRAFFIC)
    assert sorted(stored["request_id"]) == sorted(["r0", "r1", "r2"] * 4)


def test_the_backoff_doubles_up_to_its_cap(tmp_path):
    writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=5, backoff_max_s=30)
    delays = []
    for attempts in range(7):
        writer.failed_attempts = attempts
        delays.append(writer.retry_after_s)

    assert delays == [5, 1, 2, 4, 8, 16, 30]


def test_the_buffer_is_bounded_and_nothing_is_dropped(tmp_path):
    """Given at most 10 unwritten rows, an add beyond is refused (BufferFull) and the rows
    already kept stay, also across a failed flush; after a good flush there is room again."""
    files = Outage(tmp_path)
    writer = TrafficWriter(files, "m", flush_s=3600, max_rows=10)
    now = datetime.now(UTC)
    writer.add(TRAFFIC, hour_of(now), traffic(6, now, "a"))
    writer.add(TRAFFIC, hour_of(now), traffic(4, now, "b"))

    with pytest.raises(BufferFull, match="10 rows wait"):
        writer.add(TRAFFIC, hour_of(now), traffic(1, now, "c"))
    with pytest.raises(ConnectionError):
        writer.flush()
    with pytest.raises(BufferFull):
        writer.add(TRAFFIC, hour_of(now), traffic(1, now, "c"))
    files.down = False
    assert writer.flush() == 10
    writer.add(TRAFFIC, hour_of(now), traffic(1, now, "c"))
    writer.close()

    stored = read_parts(LocalFiles(tmp_path), "m", TRAFFIC)
    assert stored.groupby("request_id").size().to_dict() == {"a": 6, "b": 4, "c": 1}


def test_readers_skip_temporary_files(tmp_path):
    """Given a part and a half-written temporary file beside it, a reader sees the part only."""
    now = datetime.now(UTC)
    writer = TrafficWriter(LocalFiles(tmp_path), "m")
    writer.add(TRAFFIC, hour_of(now), traffic(2, now))
    writer.close()
    (tmp_path / "m" / f"hour={hour_of(now)}" / ".tmp-half-written").write_bytes(b"PAR1garbage")

    assert len(read_parts(LocalFiles(tmp_path), "m", TRAFFIC)) == 2


@pytest.mark.parametrize("damage", ["truncated", "not parquet", "empty"])
def test_a_damaged_part_is_skipped_with_a_warning(tmp_path, caplog, damage):
    """Given two good parts and a damaged one between them, a reader returns the good rows and
    names the damaged part in a warning, rather than failing every later check."""
    now = datetime.now(UTC)
    files = LocalFiles(tmp_path)
    for request_id in ("r1", "r2"):
        writer = TrafficWriter(files, "m")
        writer.add(TRAFFIC, hour_of(now), traffic(3, now, request_id=request_id))
        writer.close()
    good = sorted((tmp_path / "m").rglob("part-*.parquet"))
    bad = good[0].with_name("part-00000000T000000000000Z-" + "0" * 32 + ".parquet")
    content = good[0].read_bytes()
    bad.write_bytes({"truncated": content[: len(content) // 2], "not parquet": b"hello",
                     "empty": b""}[damage])

    with caplog.at_level("WARNING", logger="monitoring.traffic"):
        rows = read_parts(files, "m", TRAFFIC)

    assert sorted(rows["request_id"].unique()) == ["r1", "r2"] and len(rows) == 6
    assert bad.name in caplog.text and "unreadable traffic part" in caplog.text


def test_the_window_holds_the_last_minutes_only(tmp_path):
    """Given rows served 90, 30 and 1 minutes ago, a 60-minute window returns the last two,
    oldest first."""
    now = datetime.now(UTC)
    writer = TrafficWriter(LocalFiles(tmp_path), "m")
    for minutes, n in ((1, 4), (30, 3), (90, 2)):
        moment = now - timedelta(minutes=minutes)
        writer.add(TRAFFIC, hour_of(moment), traffic(n, moment, request_id=f"r{minutes}"))
    writer.close()

    window = read_window(LocalFiles(tmp_path), "m", minutes=60, now=now)

    assert window["request_id"].tolist() == ["r30"] * 3 + ["r1"] * 4
    assert read_window(LocalFiles(tmp_path), "other", minutes=60).empty


def test_feedback_joins_served_records_with_the_latest_labels(tmp_path):
    """Given two requests and feedback for one of them (sent twice, corrected), the labelled
    rows are that request's, with the corrected labels under the target's name."""
    now = datetime.now(UTC)
    served = now - timedelta(minutes=5)
    writer = TrafficWriter(LocalFiles(tmp_path), "m")
    writer.add(TRAFFIC, hour_of(served), traffic(2, served, "a"))
    writer.add(TRAFFIC, hour_of(served), traffic(3, served, "b"))
    writer.add(FEEDBACK, hour_of(now), feedback("b", ["no", "no", "no"], served, now))
    writer.add(FEEDBACK, hour_of(now), feedback("b", ["yes", "no", "yes"], served,
                                                now + timedelta(seconds=1)))
    writer.close()

    labelled = read_labelled(LocalFiles(tmp_path), "m", "species")

    assert labelled.sort_values("record_index")["species"].tolist() == ["yes", "no", "yes"]
    assert set(labelled["request_id"]) == {"b"} and "x" in labelled.columns
    assert (tmp_path / "m" / "feedback" / f"hour={hour_of(now)}").is_dir()


def test_model_names_cannot_leave_the_base(tmp_path):
    with pytest.raises(ValueError):
        TrafficWriter(LocalFiles(tmp_path), "../elsewhere")


def test_base_uris(tmp_path):
    assert open_files(str(tmp_path)).root == tmp_path
    assert open_files(f"file://{tmp_path}").root == tmp_path
