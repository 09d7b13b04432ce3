"""Batch scoring against MLflow's pyfunc on the whole frame: throughput and peak memory.

    .venv/bin/python tests/bench/predict_bench.py [--rows N] [--family logistic_regression]

A registered version (MLflow in SQLite, the platform's logging and registering) of a pipeline
fitted on 20,000 rows scores N rows x 25 columns (20 numeric, 5 categorical, with missing
values; default 1M) read from a Parquet file:

- baseline: the naive way to do the job: `pd.read_parquet`, `mlflow.pyfunc.load_model(...)
  .predict` on the whole frame, the frame with its predictions written as Parquet.
- ours: what the `predict` flow does with the data (serving/batch.py): chunks read, checked
  against the contract, scored with probabilities, staged as the output and as live-traffic
  parts, the output published and the parts copied into a live-data store in a local folder. Prefect's
  and MLflow's bookkeeping (a flow run, one MLflow run: about a second) is left out.

Each side runs in a fresh process after the model is loaded (loading is left out of both),
one after the other, alternating, `--repeats` times; the figures are medians. Peak memory is
the process's highest resident size during the job, sampled every 5 ms, minus its size when
the job started. Native thread pools are limited to one thread on both sides. Ratios are
ours against the baseline measured in the same run: throughput (baseline time / ours,
target >= 0.9) and peak memory (ours / baseline, target <= 0.5). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

NAME = "bench-predict"
TRAIN_ROWS = 20_000
THROUGHPUT_TARGET = 0.9
MEMORY_TARGET = 0.5


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The highest resident size while the block runs, above the size when it started."""

    def __enter__(self):
        self.start = resident_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def above_start_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def make_data(folder: Path, rows: int, family: str) -> str:
    """The data as Parquet and a registered champion fitted on a sample; the tracking URI."""
    import mlflow
    import numpy as np
    from drift_bench import CATEGORICAL, NUMERIC, make_frame
    from mlflow.tracking import MlflowClient

    from experiments.contract import infer_contract
    from experiments.pipelines import build_pipeline, feature_frame
    from experiments.tracking import log_sklearn_model
    from registry.champion import register

    frame = make_frame(rows, seed=7)
    frame.to_parquet(folder / "data.parquet", index=False)
    train = make_frame(TRAIN_ROWS, seed=8)
    signal = (train[NUMERIC[0]].fillna(0) / 3 - train[NUMERIC[3]].fillna(5) / 4
              + (train[CATEGORICAL[0]] == "a"))
    train["label"] = np.where(signal + np.random.default_rng(9).normal(size=len(train)) > signal.median(),
                              "yes", "no")
    contract = infer_contract(train, "label", "classification")
    x = feature_frame(train, contract.numeric, contract.categorical)
    params = {"n_estimators": 50, "max_depth": 8} if family == "random_forest" else {}
    pipeline = build_pipeline("classification", family, params, contract.numeric, contract.categorical, 0)
    pipeline.fit(x, train["label"])
    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment(NAME, artifact_location=(folder / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    model_uri = log_sklearn_model(run_id, pipeline, x.head(5),
                                  {"mlops_contract": contract.to_dict()}).uri
    version = register(client, NAME, model_uri, run_id, {}).version
    client.set_registered_model_alias(NAME, "champion", version)
    return uri


def baseline(folder: Path) -> dict:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    with PeakMemory() as memory:
        started = time.perf_counter()
        frame = pd.read_parquet(folder / "data.parquet")
        read = time.perf_counter()
        frame["prediction"] = model.predict(frame)
        predicted = time.perf_counter()
        frame.to_parquet(folder / "baseline.parquet", index=False)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "predict_s": predicted - read, "peak_mb": memory.above_start_mb,
            "rows": len(frame)}


def ours(folder: Path) -> dict:
    from mlflow.tracking import MlflowClient

    from monitoring.traffic import LocalFiles, TrafficWriter
    from registry.champion import get_champion
    from serving.batch import BatchJob, publish_traffic, score_file
    from serving.model import load_version
    from serving.tables import StagedOutput

    client = MlflowClient()
    model = load_version(get_champion(client, NAME), client)
    out = folder / "ours.parquet"
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp, PeakMemory() as memory:
        started = time.perf_counter()
        output = StagedOutput(str(out), overwrite=True)
        staging = LocalFiles(Path(tmp) / "staging")
        job = BatchJob(str(folder / "data.parquet"), "batch-bench")
        scoring = score_file(model, job, output, TrafficWriter(staging, NAME))
        output.publish()
        publish_traffic(staging, LocalFiles(Path(tmp) / "store"), NAME)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": memory.above_start_mb, "rows": scoring.rows}


def agreement(folder: Path) -> dict:
    """Whether ours equals the pyfunc on the model's input (the features as training gave them
    to the pipeline), row for row; and on how many rows the baseline, which hands the pyfunc
    the frame as read, differs (a missing category read from Parquet is None, which the
    pipeline's imputer does not take for missing, where training had NaN)."""
    import mlflow
    import pandas as pd
    from drift_bench import CATEGORICAL, NUMERIC

    from experiments.pipelines import feature_frame

    ours = pd.read_parquet(folder / "ours.parquet", columns=["prediction"])["prediction"].to_numpy()
    base = pd.read_parquet(folder / "baseline.parquet", columns=["prediction"])["prediction"].to_numpy()
    features = feature_frame(pd.read_parquet(folder / "data.parquet"), NUMERIC, CATEGORICAL)
    own = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(features)
    return {"ours_equal_to_pyfunc_on_model_input": bool((ours == own).all()),
            "baseline_rows_differing": int((ours != base).sum())}


def side(name: str, folder: Path, uri: str) -> dict:
    """One side in a fresh process, so that neither inherits the other's memory."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run([sys.executable, __file__, "--side", name, "--folder", str(folder)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(rows: int, family: str, repeats: int) -> dict:
    from machine import load_average, usable_cores

    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        folder = Path(tmp)
        uri = make_data(folder, rows, family)
        measured: dict[str, list[dict]] = {"baseline": [], "ours": []}
        for _ in range(repeats):
            for name in measured:
                measured[name].append(side(name, folder, uri))
        same = agreement(folder)
    median = {name: {key: statistics.median(m[key] for m in runs) for key in runs[0]}
              for name, runs in measured.items()}
    throughput = median["baseline"]["seconds"] / median["ours"]["seconds"]
    memory = median["ours"]["peak_mb"] / median["baseline"]["peak_mb"]
    return {
        "rows": rows, "columns": 25, "family": family, "repeats": repeats,
        "baseline_s": round(median["baseline"]["seconds"], 2),
        "baseline_predict_only_s": round(median["baseline"]["predict_s"], 2),
        "ours_s": round(median["ours"]["seconds"], 2),
        "baseline_rows_per_s": round(rows / median["baseline"]["seconds"]),
        "ours_rows_per_s": round(rows / median["ours"]["seconds"]),
        "baseline_peak_mb": round(median["baseline"]["peak_mb"], 1),
        "ours_peak_mb": round(median["ours"]["peak_mb"], 1),
        "baseline_s_each": [round(m["seconds"], 2) for m in measured["baseline"]],
        "ours_s_each": [round(m["seconds"], 2) for m in measured["ours"]],
        "throughput_ratio": round(throughput, 3),
        "memory_ratio": round(memory, 3),
        **same,
        "target": f"throughput_ratio >= {THROUGHPUT_TARGET}, memory_ratio <= {MEMORY_TARGET}",
        "met": throughput >= THROUGHPUT_TARGET and memory <= MEMORY_TARGET,
        "machine": {"cores": usable_cores(), "load_average_after": load_average()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--family", default="logistic_regression",
                        choices=["logistic_regression", "random_forest", "hist_gradient_boosting"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        measure = baseline if args.side == "baseline" else ours
        print(json.dumps(measure(Path(args.folder))))
        return
    print(json.dumps(run(args.rows, args.family, args.repeats), indent=2))


if __name__ == "__main__":
    main()
