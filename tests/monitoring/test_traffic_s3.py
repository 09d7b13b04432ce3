"""The live-traffic store on a real S3 API (SeaweedFS): the same layout and readers as on disk."""

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitoring.traffic import (
    FEEDBACK,
    LABEL,
    TRAFFIC,
    TrafficWriter,
    hour_of,
    open_files,
    read_labelled,
    read_window,
)

pytestmark = pytest.mark.integration


def columns(n: int, moment: datetime, request_id: str) -> dict:
    return {
        "x": np.arange(n, dtype="float64"),
        "prediction": np.full(n, "yes", dtype=object),
        "model_version": np.full(n, "1", dtype=object),
        "served_at": np.full(n, np.datetime64(moment.replace(tzinfo=None), "us")),
        "request_id": np.full(n, request_id, dtype=object),
        "record_index": np.arange(n),
    }


def test_parts_land_under_the_prefix_and_read_back(s3_server, monkeypatch):
    """Given traffic of two hours and feedback written to s3://bucket/prefix, the keys follow
    the hourly layout, the window reader returns the recent rows, and feedback joins."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    prefix = f"traffic-{uuid.uuid4().hex[:8]}"
    files = open_files(f"s3://{s3_server.bucket}/{prefix}")
    now = datetime.now(UTC)
    old = now - timedelta(hours=2)
    writer = TrafficWriter(files, "m", flush_s=3600)
    writer.start()
    writer.add(TRAFFIC, hour_of(old), columns(3, old, "old"))
    writer.add(TRAFFIC, hour_of(now), columns(4, now, "new"))
    writer.add(FEEDBACK, hour_of(now), {
        "request_id": np.full(4, "new", dtype=object), "record_index": np.arange(4),
        LABEL: np.array(["yes", "no", "no", "yes"], dtype=object),
        "model_version": np.full(4, "1", dtype=object),
        "served_hour": np.full(4, hour_of(now), dtype=object),
        "received_at": np.full(4, np.datetime64(now.replace(tzinfo=None), "us")),
    })

    writer.close()

    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix + "/")
    keys = sorted(o["Key"] for o in listing.get("Contents", []))
    assert [k.rsplit("/", 1)[0] for k in keys] == sorted([
        f"{prefix}/m/feedback/hour={hour_of(now)}", f"{prefix}/m/hour={hour_of(now)}",
        f"{prefix}/m/hour={hour_of(old)}"])
    assert all(k.rsplit("/", 1)[1].startswith("part-") and k.endswith(".parquet") for k in keys)
    window = read_window(files, "m", minutes=60)
    assert window["request_id"].tolist() == ["new"] * 4
    labelled = read_labelled(files, "m", "label")
    assert labelled.sort_values("record_index")["label"].tolist() == ["yes", "no", "no", "yes"]
