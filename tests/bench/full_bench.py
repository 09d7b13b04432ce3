"""The full profile's figures, on real services started for the run.

    .venv/bin/python tests/bench/full_bench.py [--quick]

1. MLflow `log_metric` latency, one call at a time, against the full profile's server
   (basic auth, PostgreSQL backend) on loopback; baseline: the local profile's server
   (SQLite, no auth) measured in the same process. Target: p50 <= 15 ms.
2. Search throughput on one Optuna study in PostgreSQL (the storage the workers share,
   heartbeats on): trials per second from 2 worker processes against 1, in alternated pairs
   (1, 2, 1, 2, ...); the figure is the median of the pairs' ratios. Each worker runs what a
   fanned-out batch (flows/search_batch.py -> training.run_trials) runs: the study opened by
   `open_study` (the product's sampler and pruner, stale trials failed), its own sampler
   seed, `run_search` with its callbacks, the product's objective (`make_objective`: model
   family and parameters suggested, five folds, fold scores and fit time set as trial
   attributes, a report and a pruning check after each fold) and the batch's trial
   attribute. Only the fitting is replaced: each fold's `fit` waits a fixed time
   (--trial-seconds per trial in all), so the figure is the platform's own cost per trial
   (storage round trips, sampling, pruning reads) and its contention between workers, not
   how a shared 2-core machine happens to run two scikit-learn fits. Not included: the
   MLflow child run per trial (TrialRecorder sends it from a background thread).
   Target: >= 1.9x.
Prints a JSON object; the databases it made are dropped and its servers stopped after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets as random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from environment import patched_environ, without_client_variables  # noqa: E402
from network import free_port, free_s3_port  # noqa: E402

MLOPS = str(Path(sys.executable).parent / "mlops")
LOG_METRIC_TARGET_MS = 15.0
SCALE_TARGET = 1.9
FOLDS = 5


def _log_metric_ms(tracking_uri: str, env: dict[str, str], calls: int) -> list[float]:
    """Milliseconds per `log_metric` call on one run (a warm client, a reused connection)."""
    with patched_environ(env):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.create_experiment(f"bench-{random.token_hex(4)}")
        run = client.create_run(experiment)
        for step in range(20):  # warm-up: connection, auth cache
            client.log_metric(run.info.run_id, "warm", step, step=step)
        times = []
        for step in range(calls):
            start = time.perf_counter()
            client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
            times.append((time.perf_counter() - start) * 1000)
        client.set_terminated(run.info.run_id)
        return times


class _FixedCost:
    """Stands in for a pipeline: `fit` takes a fixed time; every trial scores the same, so
    no trial is pruned and each costs the same --trial-seconds (sampling and pruning still
    do all their work)."""

    def __init__(self, fit_s: float) -> None:
        self.fit_s = fit_s

    def fit(self, x, y):
        time.sleep(self.fit_s)
        return self

    def predict_proba(self, x):
        import numpy as np

        positive = 1 / (1 + np.exp(-x.iloc[:, 0].to_numpy()))
        return np.column_stack([1 - positive, positive])


def _search_worker(storage_url: str, study_name: str, seconds: float, trial_s: float,
                   batch: str) -> None:
    """One batch of a fanned-out search, as training.run_trials runs it, for `seconds`."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import zlib

    import optuna
    import pandas as pd
    from sklearn.datasets import make_classification

    from experiments import objective as objective_module
    from experiments.search import database_storage, open_study, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                               random_state=0)
    features = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    target = pd.Series(y)
    objective_module.build_pipeline = (  # the only change: no real fitting
        lambda task, family, params, numeric, categorical, seed: _FixedCost(trial_s / FOLDS))
    problem = objective_module.Problem(
        "classification", "roc_auc", ("logistic_regression", "random_forest", "hist_gradient_boosting"),
        tuple(features.columns), (), seed=0)
    inner = objective_module.make_objective(
        features, target, problem, objective_module.cv_folds(target, "classification", FOLDS, 0))

    def objective(trial):
        trial.set_user_attr("batch", batch)
        return inner(trial)

    def best_so_far(study, trial):  # what TrialRecorder reads on the search thread
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            study.best_value  # noqa: B018

    study = open_study(database_storage(storage_url), study_name, True, zlib.crc32(batch.encode()))
    run_search(study, objective, 10**9, seconds, callbacks=[best_so_far])


def _throughput(storage_url: str, workers: int, seconds: float,
                trial_s: float) -> dict:
    """Trials per second of `workers` processes on one study (from the first trial's start
    to the last one's end), the mean trial's seconds and what start-up took."""
    import optuna

    from experiments.search import database_storage

    name = f"bench-{workers}-{random.token_hex(4)}"
    optuna.create_study(study_name=name, storage=database_storage(storage_url), direction="maximize")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_search_worker,
                                 args=(storage_url, name, seconds, trial_s, f"batch-{i}"))
                 for i in range(workers)]
    started = datetime.now()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    wall_s = (datetime.now() - started).total_seconds()
    # From the first trial's start to the last one's end: process start-up is not counted.
    trials = optuna.load_study(study_name=name, storage=database_storage(storage_url)).get_trials(
        deepcopy=False)
    complete = [t for t in trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in complete)
            - min(t.datetime_start for t in complete)).total_seconds()
    mean_s = statistics.mean((t.datetime_complete - t.datetime_start).total_seconds() for t in complete)
    first_s = (min(t.datetime_start for t in complete) - started).total_seconds()
    return {"trials_per_s": round(len(complete) / span, 3), "trials": len(complete),
            "mean_trial_s": round(mean_s, 3), "overhead_per_trial_s": round(mean_s - trial_s, 3),
            "start_to_first_trial_s": round(first_s, 2), "batch_wall_s": round(wall_s, 1),
            "load_average": round(os.getloadavg()[0], 1)}


def _search_scaling(storage: str, seconds: float, pairs: int, trial_s: float) -> dict:
    """Alternated pairs of 1 and 2 workers; the median of the pairs' ratios."""
    runs = []
    for _ in range(pairs):
        one = _throughput(storage, 1, seconds, trial_s)
        two = _throughput(storage, 2, seconds, trial_s)
        runs.append({"one_worker": one, "two_workers": two,
                     "ratio": round(two["trials_per_s"] / one["trials_per_s"], 3)})
        print(json.dumps({"search_pair": runs[-1]}), file=sys.stderr)
    ratio = statistics.median(r["ratio"] for r in runs)
    return {"seconds_each": seconds, "trial_seconds": trial_s, "pairs": runs,
            "ratio (median of pairs)": ratio, "target": SCALE_TARGET, "met": ratio >= SCALE_TARGET,
            "cores": os.cpu_count()}


def _search_only(seconds: float, pairs: int, trial_s: float) -> dict:
    """The search figure alone, on a database of its own (no platform started)."""
    from infra.database import database_uri, drop_databases, ensure_databases

    database_url = os.environ.get("MLOPS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")
    name = f"mlopsbench{random.token_hex(4)}_optuna"
    ensure_databases(database_url, [name])
    try:
        return _search_scaling(database_uri(database_url, name, driver="psycopg2"), seconds, pairs,
                               trial_s)
    finally:
        drop_databases(database_url, [name])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer calls, shorter searches")
    parser.add_argument("--trial-seconds", type=float, default=1.0,
                        help="the synthetic objective's fixed time per trial (default 1.0)")
    parser.add_argument("--search-only", action="store_true",
                        help="only the search throughput figure (PostgreSQL, no platform)")
    parser.add_argument("--pairs", type=int, default=None, help="1-vs-2-worker pairs")
    args = parser.parse_args()
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    calls, seconds, pairs = (100, 20.0, 1) if args.quick else (500, 40.0, 3)
    pairs = args.pairs or pairs
    if args.search_only:
        print(json.dumps({"search_throughput": _search_only(seconds, pairs, args.trial_seconds)},
                         indent=2))
        return

    from infra.database import STORES, database_name, database_uri, drop_databases
    from infra.local import local_platform
    from infra.services import start_services, stop_services

    home = Path(tempfile.mkdtemp(prefix="mlops-full-bench-"))
    prefix = f"mlopsbench{random.token_hex(4)}"
    database_url = os.environ.get("MLOPS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")
    env = without_client_variables(os.environ)
    env.update({"MLOPS_HOME": str(home / "full"), "MLOPS_DATABASE_PREFIX": prefix,
                "MLOPS_DATABASE_URL": database_url,
                "MLOPS_MLFLOW_PORT": str(free_port()), "MLOPS_PREFECT_PORT": str(free_port()),
                "MLOPS_RUNNER_PORT": str(free_port()), "MLOPS_S3_PORT": str(free_s3_port()),
                "MLOPS_WORKER_PORT": str(free_port())})
    local = local_platform(home / "local", "127.0.0.1", free_port(), free_port())
    local_mlflow = [s for s in local.services if s.name == "mlflow"]
    result: dict = {}
    try:
        started = time.monotonic()
        up = subprocess.run([MLOPS, "up", "--profile", "full"], env=env, capture_output=True,
                            text=True, timeout=600)
        if up.returncode != 0:
            raise SystemExit(f"mlops up --profile full failed: {up.stderr.strip()}")
        result["up_full_s"] = round(time.monotonic() - started, 1)
        start_services(local_mlflow, local.home, timeout_s=180)
        status = json.loads(subprocess.run([MLOPS, "status", "--json"], env=env, capture_output=True,
                                           text=True, timeout=60).stdout)
        from dotenv import dotenv_values

        from infra.settings import secrets_file

        keys = dotenv_values(secrets_file(home / "full"))
        auth = {"MLFLOW_TRACKING_USERNAME": keys["MLFLOW_TRACKING_USERNAME"],
                "MLFLOW_TRACKING_PASSWORD": keys["MLFLOW_TRACKING_PASSWORD"]}
        full_ms = _log_metric_ms(status["mlflow_url"], auth, calls)
        local_ms = _log_metric_ms(local.mlflow_url, {}, calls)
        p50_full, p50_local = statistics.median(full_ms), statistics.median(local_ms)
        result["log_metric"] = {
            "calls": calls,
            "full_p50_ms": round(p50_full, 2),
            "full_p95_ms": round(sorted(full_ms)[int(0.95 * calls)], 2),
            "local_p50_ms (baseline)": round(p50_local, 2),
            "ratio_full_over_local": round(p50_full / p50_local, 2),
            "target_ms": LOG_METRIC_TARGET_MS,
            "met": p50_full <= LOG_METRIC_TARGET_MS,
        }
        print(json.dumps({"log_metric": result["log_metric"]}), file=sys.stderr)
        storage = database_uri(database_url, database_name(prefix, "optuna"), driver="psycopg2")
        result["search_throughput"] = _search_scaling(storage, seconds, pairs, args.trial_seconds)
    finally:
        subprocess.run([MLOPS, "down"], env=env, capture_output=True, timeout=120)
        stop_services(local_mlflow, local.home)
        drop_databases(database_url, [database_name(prefix, store) for store in STORES])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
