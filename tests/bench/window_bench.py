"""A drift check's read of a big live-traffic window on S3: the Arrow reader
(monitoring/window.py: contract columns, a seeded row-group sample) against the full read
the monitoring flow made before it (read_window: every part, every column, then the features).

    .venv/bin/python tests/bench/window_bench.py [--rows N] [--quick]

The bench starts its own SeaweedFS on free ports in a temporary folder (always stopped), and
writes `--rows` records (default 10,000,000; quick: 1,000,000) served over the last 50
minutes as 40 parts of 50,000-row groups, with pyarrow, one part in memory at a time. Each
side then runs in a child process of its own, so that its peak resident memory
(ru_maxrss, which counts Arrow's buffers as tracemalloc does not) is its own: imports, the
read, and one compute_drift of the rows read against a 5,000-row reference (after a
warm-up one, so that Evidently's import is in the memory but not in the times). `read_s` is the
read alone, `check_s` the read and the drift. The target (issue 13) is a read of a 10M-row
window in at most 10 s and 2 GiB; the ratios are ours / the full read, measured in the same
run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from machine import load_average, package_version, usable_cores  # noqa: E402

MODEL = "big"
MINUTES = 50
PARTS = 40
GROUP_ROWS = 50_000
TARGET_S = 10.0
TARGET_MIB = 2048


def child(side: str, base: str, end: str) -> dict:
    """One side's read and drift check, in this (child) process."""
    import numpy as np
    from window_parts import CATEGORICAL, FEATURES, NUMERIC, part_table

    from monitoring.drift import MAX_ROWS, DriftColumns, compute_drift
    from monitoring.traffic import open_files, read_window
    from monitoring.window import read_window_columns

    now = datetime.fromisoformat(end)
    files = open_files(base)
    reference = part_table(5_000, now, now - now, np.random.default_rng(1)).to_pandas()
    columns = DriftColumns(NUMERIC, CATEGORICAL)
    compute_drift(reference, reference[:500], columns)  # Evidently's import is not the read's
    started = time.perf_counter()
    if side == "ours":
        window = read_window_columns(files, MODEL, MINUTES + 5, FEATURES, sample_rows=MAX_ROWS,
                                     now=now)
        current, extra = window.frame, window.as_json()
    else:
        current = read_window(files, MODEL, MINUTES + 5, now=now)[FEATURES]
        extra = {"rows": len(current), "rows_checked": len(current)}
    read_s = time.perf_counter() - started
    summary = compute_drift(reference, current, columns)
    check_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"read_s": round(read_s, 2), "check_s": round(check_s, 2), "peak_rss_mib": round(peak),
            "drifted_columns": list(summary.drifted_columns), **extra}


def write(files, rows: int, end: datetime) -> float:
    from window_parts import write_window

    started = time.perf_counter()
    write_window(files, MODEL, rows=rows, parts=PARTS, row_group_rows=GROUP_ROWS, end=end,
                 minutes=MINUTES, seed=0)
    return time.perf_counter() - started


def run_side(side: str, base: str, end: datetime, env: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", side, "--base", base,
                           "--end", end.isoformat()], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or "no output").strip().splitlines()
        return {"error": f"exit {done.returncode}: {lines[-1] if lines else ''}"}
    return json.loads(done.stdout)


def run(rows: int) -> dict:
    from network import free_s3_port

    from infra.objectstore import ensure_bucket, seaweedfs_service
    from infra.secrets import generate
    from infra.services import start_services, stop_services
    from monitoring.traffic import open_files

    keys = generate()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        service = seaweedfs_service(home, "127.0.0.1", free_s3_port(), keys["AWS_ACCESS_KEY_ID"],
                                    keys["AWS_SECRET_ACCESS_KEY"])
        try:
            start_services([service], home, timeout_s=120)
            ensure_bucket(service.url, "bench", keys["AWS_ACCESS_KEY_ID"],
                          keys["AWS_SECRET_ACCESS_KEY"])
            env = {**os.environ, "AWS_ENDPOINT_URL": service.url, "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
                   "AWS_SECRET_ACCESS_KEY": keys["AWS_SECRET_ACCESS_KEY"]}
            os.environ.update(env)
            base, end = "s3://bench/traffic", datetime.now(UTC)
            write_s = write(open_files(base), rows, end)
            ours = run_side("ours", base, end, env)
            full = run_side("full_read", base, end, env)
        finally:
            stop_services([service], home)
    result = {"figure": "window_read_s3", "rows": rows, "parts": PARTS, "row_group_rows": GROUP_ROWS,
              "write_s": round(write_s, 1), "ours": ours, "full_read": full,
              "target": f"read <= {TARGET_S:g} s and peak RSS <= {TARGET_MIB} MiB at 10M rows"}
    if "error" not in ours and "error" not in full:
        result.update(
            read_ratio=round(ours["read_s"] / full["read_s"], 3),
            check_ratio=round(ours["check_s"] / full["check_s"], 3),
            memory_ratio=round(ours["peak_rss_mib"] / full["peak_rss_mib"], 3),
            same_drift_verdict=ours["drifted_columns"] == full["drifted_columns"])
    if "error" not in ours:
        result["met"] = (ours["read_s"] <= TARGET_S and ours["peak_rss_mib"] <= TARGET_MIB
                         if rows >= 10_000_000 else None)
    result["machine"] = {"load_average": load_average(), "cores": usable_cores(),
                         "pyarrow": package_version("pyarrow")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows")
    parser.add_argument("--child", choices=["ours", "full_read"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.base, args.end)))
        return
    result = run(1_000_000 if args.quick else args.rows)
    print(json.dumps(result, indent=2))
    if "error" in result["ours"] or "error" in result["full_read"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
