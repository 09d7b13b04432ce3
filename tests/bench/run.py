"""Benchmark of the platform's costs against baselines measured in the same process.

    .venv/bin/python tests/bench/run.py [--quick] [--figures log_model,mlops_up_cold] [--out FILE]

Figures (each is a ratio against a baseline or target; nothing here asserts on time):

1. tracking_overhead  the same seeded Optuna search on the same data, plain (baseline)
                      and through experiments.training.run_trials + summarize_search (and the
                      search's plots, drawn in the same thread) inside a
                      Prefect flow/task with MLflow tracking; median of tracked/plain over
                      four alternated pairs (two moved the median by 2-3 % between runs, as
                      much as the writer process gained).
2. log_model          experiments.tracking.log_sklearn_model against mlflow.sklearn.log_model
                      with MLflow's defaults (requirements inferred) for a 100-tree forest.
3. mlops_up_cold      the `mlops up` command on an empty MLOPS_HOME, start to exit; beside
                      it, start_services until every service `mlops up` starts (MLflow,
                      Prefect, Evidently's UI, the deployment runner) is healthy (no
                      baseline: the ratio is against the target). Measured first,
                      before the main platform starts, so the two cores are not shared.
4. time_to_quality    our plain search's time to reach GridSearchCV's best CV score (within
                      a tolerance) against the grid search's total time, same CV folds.
5. feature_engineering  the same seeded search (make_objective + run_search, no server),
                      same number of trials, with tuning.feature_engineering on against off;
                      median of on/off over alternated pairs.
6. train_end_to_end   `mlops train SPEC --json` as its own process, start to exit, started
                      warm as after `mlops up` in the same shell (and cold beside it), against
                      tests/bench/bare_train.py (Optuna + scikit-learn by hand, the same
                      trials on the same data, start to exit); median of ours/bare over
                      alternated pairs. Both run with the user's thread settings, not the
                      bench's --threads; a third run per pair gives the bare script one
                      native thread (OMP_NUM_THREADS=1), as a careful user might.
7. training_profile_fe  the whole training flow (flows.train.train, as `mlops train` runs it,
                      on the bench's platform, same data) with the data profile and feature
                      engineering on (the defaults) against both off (`profile: false`,
                      `tuning.feature_engineering: false`); every training is given the same
                      trials (model and parameters, in order, from a first search without
                      either: not counted), so both sides fit the same models and the "with"
                      side draws only fe.*. Median of with/without over alternated pairs, each
                      pair's seconds and the machine's load printed.

Native thread pools (OpenMP, BLAS) are limited to --threads (default 1) in this process.
HistGradientBoosting's OpenMP threads spin-wait: with other programs on the two cores a fit
ran ~15x slower with 2 threads than with 1 (27-34 s against 1.8-2.6 s), which drowns every
ratio here in noise. Both sides of each ratio run under the same limit; --threads 0 keeps
the libraries' defaults.

The bench starts its own platform (free ports, temporary MLOPS_HOME) and always stops it.
A figure that fails is written as an error entry; the others are still measured. The
exit status is 1 when any figure errored, 0 otherwise (a missed target is not an error).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import inspect
import json
import logging
import os
import platform as pyplatform
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):  # the project, and tests/network.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from environment import without_client_variables  # noqa: E402
from machine import load_average, package_version, usable_cores  # noqa: E402
from network import free_ports  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

out = Console()
err = Console(stderr=True)

HOST = "127.0.0.1"
SEED = 42
START_TIMEOUT_S = 120.0
FIGURE_ORDER = ("tracking_overhead", "log_model", "mlops_up_cold", "time_to_quality",
                "feature_engineering", "train_end_to_end", "training_profile_fe")
PLATFORM_FIGURES = ("tracking_overhead", "log_model", "train_end_to_end", "training_profile_fe")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
USER_THREAD_ENV = {name: os.environ.get(name) for name in THREAD_VARIABLES}  # before --threads

TARGETS = {
    "tracking_overhead": 1.05,  # tracked / plain search time (issue 13)
    "log_model": 0.3,  # seconds for our log_sklearn_model (issue 13)
    "mlops_up_cold": 10.0,  # seconds from cold to healthy (issue 13)
    "time_to_quality": 0.5,  # our time to reach the grid's best / grid total time
    "feature_engineering": 1.15,  # search time with feature engineering / without
    "train_end_to_end": 1.10,  # mlops train / bare Optuna + scikit-learn, start to exit (issue 13)
    "training_profile_fe": 1.15,  # training time with the profile and FE / without (issue 15)
}

FULL_GRID = {
    "logistic_regression": {
        "C": [0.001, 0.01, 0.1, 1, 10, 100],
        "class_weight": [None, "balanced"],
    },
    "random_forest": {
        "n_estimators": [100, 300],
        "max_depth": [4, 8, 16],
        "min_samples_leaf": [1, 5],
        "max_features": ["sqrt", 1.0],
    },
    "hist_gradient_boosting": {
        "learning_rate": [0.03, 0.1, 0.3],
        "max_iter": [100, 300],
        "max_leaf_nodes": [15, 31],
    },
}
QUICK_GRID = {
    "logistic_regression": {"C": [0.01, 1, 100], "class_weight": [None, "balanced"]},
    "random_forest": {
        "n_estimators": [100],
        "max_depth": [4, 16],
        "min_samples_leaf": [1],
        "max_features": ["sqrt"],
    },
    "hist_gradient_boosting": {
        "learning_rate": [0.1],
        "max_iter": [100],
        "max_leaf_nodes": [15, 31],
    },
}


@dataclass(frozen=True)
class Config:
    quick: bool
    tracking_trials: int
    tracking_repeats: int
    warmup_trials: int
    log_model_repeats: int
    grid: dict
    search_max_trials: int
    tolerance: float = 0.001
    fe_trials: int = 30
    fe_repeats: int = 2
    e2e_trials: int = 20
    e2e_repeats: int = 2
    compare_root: str | None = None  # another checkout's `mlops train`, in the same pairs
    training_trials: int = 30
    training_repeats: int = 3

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(True, tracking_trials=10, tracking_repeats=1, warmup_trials=2,
                       log_model_repeats=1, grid=QUICK_GRID, search_max_trials=20,
                       fe_trials=10, fe_repeats=1, e2e_trials=5, e2e_repeats=1,
                       training_trials=10, training_repeats=2)
        return cls(False, tracking_trials=30, tracking_repeats=4, warmup_trials=2,
                   log_model_repeats=3, grid=FULL_GRID, search_max_trials=60)


class Context:
    """The temporary directory, the data file and the spec built on it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.csv = tmp / "breast_cancer.csv"

    def write_data(self) -> None:
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame
        frame.to_csv(self.csv, index=False)

    def spec_text(self, trials: int) -> str:
        return (
            "name: bench\n"
            "task: classification\n"
            "data:\n"
            f"  source: {json.dumps(str(self.csv))}\n"
            "  target: target\n"
            "tuning:\n"
            f"  trials: {trials}\n"
            "  metric: roc_auc\n"
            "  cv_folds: 5\n"
            f"  seed: {SEED}\n"
        )

    def spec(self, trials: int):
        from experiments.spec import parse_spec

        return parse_spec(self.spec_text(trials), "bench")

    def training_data(self, trials: int):
        """(spec, dataset, split, features, y) as the training flow builds them."""
        from experiments import training

        try:
            from experiments.validation import load_dataset
        except ImportError:  # before the validate stage moved out of experiments.training
            load_dataset = training.load_dataset
        spec = self.spec(trials)
        dataset = load_dataset(spec)
        data = training.split(spec, dataset)
        features, y = training.features_and_target(data.train, dataset.contract)
        return spec, dataset, data, features, y


# --------------------------------------------------------------------------- helpers


def note(message: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", highlight=False)


def error_entry(figure: str, error: BaseException) -> dict:
    return {
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exc(),
        "target": TARGETS[figure],
        "met": False,
    }


def run_figure(figure: str, fn: Callable[[], dict]) -> dict:
    note(f"[bold]{figure}[/bold] ...")
    started = time.perf_counter()
    load_before = load_average()
    try:
        result = fn()
    except Exception as error:  # noqa: BLE001 - one figure's failure must not lose the others
        err.print(f"[red]{figure} failed:[/red] {type(error).__name__}: {error}", highlight=False)
        err.print(traceback.format_exc(), highlight=False, markup=False)
        return error_entry(figure, error)
    # Other programs on the machine skew every figure; the load says how busy it was.
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    peak = max([x[0] for x in (load_before, result["load_average_after"]) if x] or [0.0])
    result["machine_busy"] = peak > usable_cores()
    result["bench_seconds"] = round(time.perf_counter() - started, 2)
    note(f"{figure} done in {result['bench_seconds']:.1f} s")
    return result


def machine_info() -> dict:
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average_at_start": load_average(),
        # Server start-up is mostly imports: without a bytecode cache every start compiles.
        "python_dont_write_bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "pyc_files_in_venv": sum(1 for _ in (site / "site-packages").rglob("*.pyc")),
        # A new home copies Prefect's migrated database when install made it (infra/templates.py).
        "prefect_database_template": prefect_template_present(),
        "python": sys.version.split()[0],
        "platform": pyplatform.platform(),
        "packages": {
            name: package_version(name)
            for name in ("mlflow", "prefect", "optuna", "scikit-learn", "skops", "pandas")
        },
    }


def prefect_template_present() -> bool | None:
    try:
        from infra.templates import prefect_template
    except ImportError:  # before the template existed
        return None
    return prefect_template().is_file()


def thread_pools() -> list[dict]:
    """The native thread pools loaded in this process and their sizes."""
    try:
        from threadpoolctl import threadpool_info

        return [{k: pool.get(k) for k in ("internal_api", "num_threads", "filepath")}
                for pool in threadpool_info()]
    except Exception as error:  # noqa: BLE001 - information only
        return [{"error": str(error)}]


def r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


# --------------------------------------------------------------------------- platform


def start_platform(platform) -> float:
    """start_services until every service is healthy, timed."""
    from infra.services import start_services

    started = time.perf_counter()
    start_services(platform.services, platform.home, timeout_s=START_TIMEOUT_S)
    return time.perf_counter() - started


def stop_platform(platform) -> float:
    """stop_services, timed."""
    from infra.services import stop_services

    started = time.perf_counter()
    stop_services(platform.services, platform.home)
    return time.perf_counter() - started


# --------------------------------------------------------------------------- figure 3


def figure_cold_start(ctx: Context) -> dict:
    """`mlops up` from cold: start_services on a fresh, empty home with its own ports."""
    from infra.local import local_platform
    from infra.services import is_healthy

    home = ctx.tmp / "cold-home"
    # `mlops up` also starts the deployment runner (a second wave, once Prefect answers)
    # and Evidently's UI where local_platform knows them: measure what `up` starts,
    # servers-only on the side.
    parameters = inspect.signature(local_platform).parameters
    if "evidently_port" in parameters:
        mlflow_port, prefect_port, runner_port, evidently_port = free_ports(4)
        platform = local_platform(home, HOST, mlflow_port, prefect_port, runner_port,
                                  evidently_port)
    elif "runner_port" in parameters:
        mlflow_port, prefect_port, runner_port = free_ports(3)
        platform = local_platform(home, HOST, mlflow_port, prefect_port, runner_port)
    else:
        mlflow_port, prefect_port = free_ports(2)
        platform = local_platform(home, HOST, mlflow_port, prefect_port)
    healthy_at: dict[str, float] = {}
    done = threading.Event()
    started = time.perf_counter()

    def watch() -> None:  # when each service first answers (a cheap poll, 4 per second)
        while not done.is_set() and len(healthy_at) < len(platform.services):
            for service in platform.services:
                if service.name not in healthy_at and is_healthy(service.health_url, 0.5):
                    healthy_at[service.name] = time.perf_counter() - started
            done.wait(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        start_platform(platform)
        seconds = time.perf_counter() - started
        for service in platform.services:  # healthy between two polls: the call's end
            healthy_at.setdefault(service.name, seconds)
    finally:
        done.set()
        stop_seconds = stop_platform(platform)
    watcher.join(timeout=2)
    command_seconds = time_up_command(ctx.tmp / "cold-command-home")
    target = TARGETS["mlops_up_cold"]
    servers = [healthy_at.get(name) for name in ("mlflow", "prefect")]
    return {
        # What a user waits: the command from its start to its exit (its own imports, the
        # runs it settles, its report) on another fresh home; the rest is the services' part.
        "seconds": r(command_seconds, 2),
        "start_services_seconds": r(seconds, 2),
        "services": [service.name for service in platform.services],
        # MLflow and Prefect only (as polled 4 times a second), without the runner's wave.
        "servers_only_seconds": r(max(servers), 2) if None not in servers else None,
        "service_healthy_seconds": {k: r(v, 2) for k, v in healthy_at.items()},
        "stop_seconds": r(stop_seconds, 2),
        "baseline": None,
        "ratio": r(command_seconds / target),
        "ratio_is_against": "the target (no baseline exists for a cold start)",
        "target": target,
        "met": command_seconds <= target,
    }


def time_up_command(home: Path) -> float:
    """`mlops up` on an empty home with free ports, start to exit, as a user runs it (no
    client variables); `mlops down` after."""
    import subprocess

    mlops = str(Path(sys.executable).parent / "mlops")
    env = without_client_variables(os.environ)
    ports = dict(zip(("MLFLOW", "PREFECT", "RUNNER", "EVIDENTLY"), free_ports(4), strict=True))
    env.update({"MLOPS_HOME": str(home), **{f"MLOPS_{k}_PORT": str(v) for k, v in ports.items()}})
    started = time.perf_counter()
    try:
        up = subprocess.run([mlops, "up"], env=env, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        if up.returncode != 0:
            raise RuntimeError(f"mlops up exited {up.returncode}: {up.stderr.strip()[-2000:]}")
        return seconds
    finally:
        subprocess.run([mlops, "down"], env=env, capture_output=True, timeout=300)


# --------------------------------------------------------------------------- figure 1


def trial_signature(study) -> list:
    return [
        (t.number, t.state.name, sorted((k, repr(v)) for k, v in t.params.items()))
        for t in study.get_trials(deepcopy=False)
    ]


def figure_tracking_overhead(ctx: Context, cfg: Config) -> dict:
    import optuna
    from mlflow.tracking import MlflowClient
    from prefect import flow, get_run_logger, task
    from prefect.cache_policies import NO_CACHE
    from prefect.runtime import flow_run

    from experiments import evaluation, training
    from experiments.objective import cv_folds, make_objective
    from experiments.search import best_trial, journal_storage, open_study, run_search
    from experiments.threads import threads_per_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counter = iter(range(1_000_000))

    # Light instrumentation (behaviour unchanged): where tune's time goes besides trials.
    breakdown = {"plots_s": 0.0, "recorder_close_s": 0.0}
    original_plots = evaluation.search_plots
    original_recorder = training.TrialRecorder

    def timed_plots(study):
        started = time.perf_counter()
        try:
            return original_plots(study)
        finally:
            breakdown["plots_s"] += time.perf_counter() - started

    class TimedRecorder(original_recorder):
        def close(self) -> None:
            started = time.perf_counter()
            try:
                super().close()
            finally:
                breakdown["recorder_close_s"] += time.perf_counter() - started

    def plain(trials: int) -> dict:
        """The baseline: the same objective and seeded study, no MLflow, no Prefect; its
        trials on the native threads the platform's would use (tracking is what is measured)."""
        spec, dataset, data, _, _ = ctx.training_data(trials)
        path = ctx.tmp / "journals" / f"plain-{next(counter)}.journal"
        storage = journal_storage(path)
        started, cpu_started = time.perf_counter(), time.process_time()
        features, y = training.features_and_target(data.train, dataset.contract)
        objective = threads_per_trial(make_objective(
            features, y, training.problem_of(spec, dataset.contract),
            cv_folds(y, spec.task, spec.tuning.cv_folds, spec.tuning.seed),
        ), rows=len(features))
        study = open_study(storage, "plain", spec.greater_is_better, spec.tuning.seed)
        run_search(study, objective, spec.tuning.trials, spec.tuning.timeout_s)
        best = best_trial(study)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu_started,
                "best": best.value, "signature": trial_signature(study)}

    @task(cache_policy=NO_CACHE, name="bench-tune")
    def tune_task(context, storage_path: Path, with_spare: bool) -> dict:
        from flows import spare

        # As flows.train runs it: the trials written and the search's plots drawn by the
        # spare process when there is one (a warm `mlops train`, a runner's flow run); here,
        # in this process without (a cold `mlops train`).
        elsewhere = spare.spare_beside() if with_spare else None
        draw = spare.beside if elsewhere is not None else training.run_now
        logger = get_run_logger()
        spec = context.spec
        total = spec.tuning.trials

        def progress(study, trial) -> None:  # as flows.train.tune reports each trial
            value = "" if trial.value is None else f" {spec.metric}={trial.value:.4f}"
            logger.info("trial %d/%d %s%s", trial.number + 1, total,
                        trial.state.name.lower(), value)

        started, cpu_started = time.perf_counter(), time.process_time()
        training.run_trials(MlflowClient(), journal_storage(storage_path), context, progress=progress,
                            elsewhere=elsewhere)
        result = training.summarize_search(MlflowClient(), journal_storage(storage_path), context)
        training.log_pngs(MlflowClient(), context.tracking.run_id,
                          training.plot_search(journal_storage(storage_path), context, draw).result())
        return {"seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started, "best": result.cv_score}

    def tracked(trials: int, with_spare: bool = True) -> dict:
        spec, dataset, data, _, _ = ctx.training_data(trials)
        path = ctx.tmp / "journals" / f"tracked-{next(counter)}.journal"

        @flow(name="bench-tracked-search", log_prints=False)
        def tracked_search() -> dict:
            client = MlflowClient()
            tracking = training.start_tracking(
                client, journal_storage(path), spec, dataset, trigger="manual",
                flow_run_id=flow_run.get_id(), extra_tags={"mlops.bench": "tracking_overhead"},
            )
            outcome = tune_task(training.TrainingContext(spec, dataset, data, tracking), path,
                                with_spare)
            training.finish(client, journal_storage(path), tracking)
            return {**outcome, "study_name": tracking.study_name}

        before = dict(breakdown)
        flow_started = time.perf_counter()
        outcome = tracked_search()
        flow_seconds = time.perf_counter() - flow_started
        study = optuna.load_study(study_name=outcome["study_name"], storage=journal_storage(path))
        return {
            "seconds": outcome["seconds"],
            "cpu_seconds": outcome["cpu_seconds"],
            "flow_seconds": flow_seconds,
            "best": outcome["best"],
            "signature": trial_signature(study),
            "plots_s": breakdown["plots_s"] - before["plots_s"],
            "recorder_close_s": breakdown["recorder_close_s"] - before["recorder_close_s"],
        }

    evaluation.search_plots = timed_plots
    training.TrialRecorder = TimedRecorder
    try:
        note(f"  warm-up: {cfg.warmup_trials} trials each way (not counted)")
        warmup = (plain(cfg.warmup_trials)["seconds"], tracked(cfg.warmup_trials)["seconds"])
        pairs, without_spare = [], []
        for i in range(cfg.tracking_repeats):
            base = plain(cfg.tracking_trials)
            note(f"  repeat {i + 1}: plain {base['seconds']:.2f} s")
            track = tracked(cfg.tracking_trials)
            note(f"  repeat {i + 1}: tracked {track['seconds']:.2f} s "
                 f"(flow {track['flow_seconds']:.2f} s)")
            alone = tracked(cfg.tracking_trials, with_spare=False)
            note(f"  repeat {i + 1}: tracked without a spare process {alone['seconds']:.2f} s")
            pairs.append((base, track))
            without_spare.append(alone)
    finally:
        evaluation.search_plots = original_plots
        training.TrialRecorder = original_recorder

    ratios = [t["seconds"] / b["seconds"] for b, t in pairs]
    cold_ratios = [a["seconds"] / b["seconds"] for (b, _), a in zip(pairs, without_spare, strict=True)]
    flow_ratios = [t["flow_seconds"] / b["seconds"] for b, t in pairs]
    cpu_ratios = [t["cpu_seconds"] / b["cpu_seconds"] for b, t in pairs]
    same = all(b["signature"] == t["signature"] for b, t in pairs)
    ratio = statistics.median(ratios)
    target = TARGETS["tracking_overhead"]
    return {
        "trials": cfg.tracking_trials,
        "repeats": cfg.tracking_repeats,
        "seconds": r(statistics.median(t["seconds"] for _, t in pairs)),
        "baseline": r(statistics.median(b["seconds"] for b, _ in pairs)),
        "ratio": r(ratio),
        "ratios": [r(x) for x in ratios],
        "plain_seconds": [r(b["seconds"]) for b, _ in pairs],
        "tracked_seconds": [r(t["seconds"]) for _, t in pairs],
        "tracked_flow_seconds": [r(t["flow_seconds"]) for _, t in pairs],
        "flow_ratio_median": r(statistics.median(flow_ratios)),
        # CPU time of this whole process (all threads): less swayed by other programs.
        "cpu_ratio_median": r(statistics.median(cpu_ratios)),
        "plain_cpu_seconds": [r(b["cpu_seconds"]) for b, _ in pairs],
        "tracked_cpu_seconds": [r(t["cpu_seconds"]) for _, t in pairs],
        "warmup_seconds": {"plain": r(warmup[0]), "tracked": r(warmup[1])},
        "tracked_plots_seconds": [r(t["plots_s"]) for _, t in pairs],
        "tracked_recorder_close_wait_seconds": [r(t["recorder_close_s"]) for _, t in pairs],
        "best_cv_roc_auc": {
            "plain": r(pairs[0][0]["best"], 5), "tracked": r(pairs[0][1]["best"], 5),
        },
        "same_trial_sequence": same and all(a["signature"] == b["signature"]
                                            for (b, _), a in zip(pairs, without_spare, strict=True)),
        "spare_process": SPARE_PID is not None,
        # The same without a spare process (a cold `mlops train`): the trials written by this
        # process, then a writer process; the search's plots drawn in the timed task.
        "ratios_without_spare": [r(x) for x in cold_ratios],
        "ratio_without_spare": r(statistics.median(cold_ratios)),
        "baseline_is": "open_study on a journal file + make_objective (on the native threads the "
                       "platform picks) + run_search, no callbacks",
        "tracked_is": "training.run_trials + summarize_search (TrialRecorder, per-trial Prefect "
                      "log) and the search's plots (plot_search, log_pngs) in a Prefect task, as "
                      "a warm `mlops train` runs them: this process imported what the warm process "
                      "does and forked its spare process first, which writes the trials and draws "
                      "the plots; start_tracking/finish and flow start-up are outside the timed part",
        "target": target,
        "met": ratio <= target,
    }


# --------------------------------------------------------------------------- figure 2


def figure_log_model(ctx: Context, cfg: Config) -> dict:
    import mlflow.models.utils as mlflow_model_utils
    import mlflow.sklearn
    import skops.io
    from mlflow.tracking import MlflowClient

    from experiments.pipelines import build_pipeline
    from experiments.tracking import ensure_experiment, log_sklearn_model

    spec, dataset, _, features, y = ctx.training_data(10)
    contract = dataset.contract
    pipeline = build_pipeline(
        "classification", "random_forest", {"n_estimators": 100},
        contract.numeric, contract.categorical, SEED,
    ).fit(features, y)
    example = features.head(5)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    client = MlflowClient()
    experiment_id = ensure_experiment(client, "bench-log-model")

    def timed(name: str, log: Callable[[str], object]) -> float:
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        started = time.perf_counter()
        try:
            log(run_id)
            return time.perf_counter() - started
        finally:
            client.set_terminated(run_id)

    # Where our time goes: the serving-input check MLflow runs on the logged model (it
    # loads the model back) is timed through a wrapper; the extra skops serialization
    # log_sklearn_model makes to list trusted types is timed once on its own.
    validation = {"seconds": 0.0, "dump_seconds": 0.0}
    original_validate = mlflow_model_utils._validate_serving_input
    original_dump = skops.io.dump

    def timed_dump(*args, **kwargs):  # MLflow writes model.skops through skops.io.dump
        started = time.perf_counter()
        try:
            return original_dump(*args, **kwargs)
        finally:
            validation["dump_seconds"] += time.perf_counter() - started

    def timed_validate(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original_validate(*args, **kwargs)
        finally:
            validation["seconds"] += time.perf_counter() - started

    started = time.perf_counter()
    skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    trusted_types_seconds = time.perf_counter() - started

    def ours(run_id: str) -> None:
        log_sklearn_model(run_id, pipeline, example, metadata={})

    def defaults(run_id: str) -> None:
        mlflow.sklearn.log_model(
            pipeline, name="model", run_id=run_id, input_example=example,
            skops_trusted_types=trusted,
        )

    warmup = timed("warm-up (ours)", ours)
    note(f"  warm-up (ours): {warmup:.2f} s")
    ours_s, default_s, validation_s, dump_s = [], [], [], []
    mlflow_model_utils._validate_serving_input = timed_validate
    skops.io.dump = timed_dump
    try:
        for i in range(cfg.log_model_repeats):
            validation.update(seconds=0.0, dump_seconds=0.0)
            ours_s.append(timed(f"ours-{i}", ours))
            validation_s.append(validation["seconds"])
            dump_s.append(validation["dump_seconds"])
            default_s.append(timed(f"mlflow-defaults-{i}", defaults))
            note(f"  repeat {i + 1}: ours {ours_s[-1]:.2f} s, "
                 f"MLflow defaults {default_s[-1]:.2f} s")
    finally:
        mlflow_model_utils._validate_serving_input = original_validate
        skops.io.dump = original_dump
    ours_median = statistics.median(ours_s)
    default_median = statistics.median(default_s)
    target = TARGETS["log_model"]
    return {
        "model": "Pipeline(ColumnTransformer, RandomForestClassifier(n_estimators=100))",
        "repeats": cfg.log_model_repeats,
        "seconds": r(ours_median),
        "baseline": r(default_median),
        "ratio": r(ours_median / default_median),
        "ours_seconds": [r(x) for x in ours_s],
        "mlflow_default_seconds": [r(x) for x in default_s],
        "warmup_seconds": r(warmup),
        "ours_breakdown": {
            "serving_input_validation_seconds": [r(x) for x in validation_s],
            "skops_dump_seconds": [r(x) for x in dump_s],
            "trusted_types_skops_dumps_seconds": r(trusted_types_seconds),
        },
        "trusted_types": trusted,
        "baseline_is": "mlflow.sklearn.log_model with input_example and skops_trusted_types, "
                       "requirements inferred (no pip_requirements)",
        "target": target,
        "target_is": "ours <= 0.3 s",
        "met": ours_median <= target,
    }


# --------------------------------------------------------------------------- figure 4


def grid_candidates(grid: dict, numeric: list[str], categorical: list[str]) -> list:
    from sklearn.model_selection import ParameterGrid

    from experiments.pipelines import build_pipeline

    return [
        build_pipeline("classification", family, params, numeric, categorical, SEED)
        for family, space in grid.items()
        for params in ParameterGrid(space)
    ]


def figure_time_to_quality(ctx: Context, cfg: Config) -> dict:
    import numpy as np
    import optuna
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from experiments import training
    from experiments.metrics import model_output, score
    from experiments.objective import cv_folds, make_objective
    from experiments.search import open_study, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, dataset, _, features, y = ctx.training_data(cfg.search_max_trials)
    contract = dataset.contract
    folds = cv_folds(y, spec.task, spec.tuning.cv_folds, spec.tuning.seed)
    classes = np.unique(y)

    def scorer(estimator, x, y_true) -> float:  # exactly the objective's scoring
        return score(spec.metric, y_true, model_output(estimator, x, spec.task), classes)

    candidates = grid_candidates(cfg.grid, contract.numeric, contract.categorical)
    grid = GridSearchCV(
        Pipeline([("candidate", candidates[0])]),
        {"candidate": candidates},
        scoring=scorer, cv=folds, n_jobs=1, refit=False, error_score="raise",
    )
    note(f"  GridSearchCV: {len(candidates)} candidates x {len(folds)} folds")
    started = time.perf_counter()
    grid.fit(features, y)
    grid_seconds = time.perf_counter() - started
    grid_best = float(grid.best_score_)
    best_pipeline = grid.cv_results_["params"][grid.best_index_]["candidate"]
    grid_best_model = type(best_pipeline.named_steps["model"]).__name__
    note(f"  GridSearchCV: {grid_seconds:.1f} s, best {spec.metric} {grid_best:.5f} "
         f"({grid_best_model})")

    threshold = grid_best - cfg.tolerance
    reached: dict = {}
    study = open_study(None, "time-to-quality", spec.greater_is_better, spec.tuning.seed)
    started = time.perf_counter()

    def stop_at_quality(study, trial) -> None:
        if trial.state != optuna.trial.TrialState.COMPLETE or reached:
            return
        if study.best_value >= threshold:
            reached.update(seconds=time.perf_counter() - started, trial=trial.number,
                           value=study.best_value, params=study.best_trial.params)
            study.stop()

    objective = make_objective(features, y, training.problem_of(spec, contract), folds)
    run_search(study, objective, cfg.search_max_trials, spec.tuning.timeout_s,
               callbacks=[stop_at_quality])
    search_seconds = time.perf_counter() - started
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best_value = max((t.value for t in complete), default=None)
    note(f"  our search: {len(study.trials)} trials in {search_seconds:.1f} s, "
         + (f"reached {reached['value']:.5f} at trial {reached['trial']} after "
            f"{reached['seconds']:.1f} s" if reached else "did not reach the grid's best"))
    target = TARGETS["time_to_quality"]
    ratio = reached["seconds"] / grid_seconds if reached else None
    return {
        "seconds": r(reached.get("seconds")) if reached else None,
        "baseline": r(grid_seconds),
        "ratio": r(ratio),
        "reached": bool(reached),
        "tolerance": cfg.tolerance,
        "grid_best_cv_roc_auc": r(grid_best, 5),
        "grid_best_model": grid_best_model,
        "grid_candidates": len(candidates),
        "grid_reduced_for_quick": cfg.quick,
        "grid": {family: {k: [str(v) for v in vs] for k, vs in space.items()}
                 for family, space in cfg.grid.items()},
        "grid_refit": False,
        "search_max_trials": cfg.search_max_trials,
        "search_trials_run": len(study.trials),
        "search_seconds": r(search_seconds),
        "search_best_cv_roc_auc": r(best_value, 5),
        "reached_at_trial": reached.get("trial"),
        "reached_value": r(reached.get("value"), 5),
        "reached_params": reached.get("params"),
        "folds": f"experiments.objective.cv_folds(5, seed={SEED}) on the training split "
                 f"({len(y)} rows), shared by both",
        "scoring": "experiments.metrics.score('roc_auc', model_output(...)) for both",
        "target": target,
        "met": ratio is not None and ratio <= target,
    }


# --------------------------------------------------------------------------- figure 5


def figure_feature_engineering(ctx: Context, cfg: Config) -> dict:
    """The search with feature engineering on against off, same trials: the 'on' study is
    given the 'off' study's trials (model and its parameters, in order) and draws only the
    fe.* choices, so the ratio is what feature engineering adds to the same fits. A free
    search of each (different trials, a different family mix) is reported beside it."""
    import optuna

    from experiments import training
    from experiments.objective import cv_folds, make_objective
    from experiments.search import best_trial, open_study, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, dataset, _, features, y = ctx.training_data(cfg.fe_trials)
    folds = cv_folds(y, spec.task, spec.tuning.cv_folds, spec.tuning.seed)
    counter = iter(range(1_000_000))

    def search(feature_engineering: bool, trials: int, same_as: list[dict] = ()) -> dict:
        tuning = spec.tuning.model_copy(update={"feature_engineering": feature_engineering})
        problem = training.problem_of(spec.model_copy(update={"tuning": tuning}), dataset.contract)
        study = open_study(None, f"fe-{next(counter)}", spec.greater_is_better, spec.tuning.seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        run_search(study, make_objective(features, y, problem, folds), trials,
                   spec.tuning.timeout_s, warm_start=same_as)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        done = study.get_trials(deepcopy=False)
        count = lambda keys: dict(sorted(collections.Counter(keys).items()))  # noqa: E731
        return {"seconds": seconds, "cpu_seconds": cpu, "best": best_trial(study).value,
                "params": [dict(t.params) for t in done],
                "families": count(t.params.get("model") for t in done),
                "fe_choices": count(f"{k}={v}" for t in done for k, v in t.params.items()
                                    if k.startswith("fe."))}

    note(f"  warm-up: {cfg.warmup_trials} trials each way (not counted)")
    search(False, cfg.warmup_trials), search(True, cfg.warmup_trials)
    pairs, free = [], []
    for i in range(cfg.fe_repeats):
        off = search(False, cfg.fe_trials)
        on = search(True, cfg.fe_trials, same_as=off["params"])
        free_on = search(True, cfg.fe_trials)
        note(f"  repeat {i + 1}: without {off['seconds']:.2f} s, with (same trials) "
             f"{on['seconds']:.2f} s, with (free search) {free_on['seconds']:.2f} s")
        pairs.append((off, on))
        free.append((off, free_on))
    ratios = [on["seconds"] / off["seconds"] for off, on in pairs]
    ratio = statistics.median(ratios)
    same = all([p["model"] for p in off["params"]] == [p["model"] for p in on["params"]]
               for off, on in pairs)
    (off, on), (_, free_on) = pairs[0], free[0]
    target = TARGETS["feature_engineering"]
    return {
        "trials": cfg.fe_trials,
        "repeats": cfg.fe_repeats,
        "seconds": r(statistics.median(on["seconds"] for _, on in pairs)),
        "baseline": r(statistics.median(off["seconds"] for off, _ in pairs)),
        "ratio": r(ratio),
        "ratios": [r(x) for x in ratios],
        "cpu_ratio_median": r(statistics.median(on["cpu_seconds"] / off["cpu_seconds"]
                                                for off, on in pairs)),
        "same_models_in_order": same,
        "best_cv_roc_auc": {"without": r(off["best"], 5), "with_same_trials": r(on["best"], 5),
                            "with_free_search": r(free_on["best"], 5)},
        "fe_choices_same_trials": on["fe_choices"],
        "free_search_ratios": [r(f["seconds"] / o["seconds"]) for o, f in free],
        "free_search_families": {"without": off["families"], "with": free_on["families"]},
        "numeric_columns": len(dataset.contract.numeric),
        "baseline_is": "the same seeded search with tuning.feature_engineering: false",
        "measured_is": "feature engineering on, given the baseline's trials (model and "
                       "parameters) in order, drawing only the fe.* choices",
        "target": target,
        "met": ratio <= target,
    }


# --------------------------------------------------------------------------- figure 6


def user_environment(**extra: str) -> dict[str, str]:
    """This process's environment with the user's own native-thread settings (not --threads)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update({k: v for k, v in USER_THREAD_ENV.items() if v is not None})
    return {**env, **extra}


def timed_process(command: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run a command from start to exit; its last stdout line is one JSON object."""
    import subprocess

    load = load_average()
    started, wall_started = time.perf_counter(), time.time()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[1]).name} exited {done.returncode}: "
                           f"{done.stderr.strip()[-2000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "_seconds": seconds,
            "_load": load[0] if load else None,
            "_stages": flow_stages(done.stderr, wall_started, wall_started + seconds)}


def flow_stages(log: str, started: float, ended: float) -> dict[str, float] | None:
    """Seconds of each part of a training, from the flow's console log: the CLI before the
    flow (imports, connecting, checks), each task (from the previous task's end), and the
    end of the flow to exit. None for a process that logs no flow (the bare script)."""
    import re
    from datetime import datetime

    day = datetime.fromtimestamp(started)
    marks = []
    for line in log.splitlines():
        found = re.match(r"(\d\d:\d\d:\d\d\.\d+) \| \w+ +\| (?:Flow run '[^']+' - "
                         r"(Beginning|Finished)|Task run '(.+)-\w+' - Finished)", line)
        if found:
            clock = datetime.combine(day.date(), datetime.strptime(found[1], "%H:%M:%S.%f").time())
            marks.append((found[3] or f"flow {found[2].lower()}", clock.timestamp()))
    if not marks or marks[0][0] != "flow beginning":
        return None
    stages, last = {"cli_before_flow": marks[0][1] - started}, marks[0][1]
    for name, at in marks[1:]:
        stages[name] = stages.get(name, 0.0) + at - last
        last = at
    stages["flow_end_to_exit"] = ended - last
    return {k: round(v, 2) for k, v in stages.items()}


WARM_PROCESS = """
import os, sys, time
from pathlib import Path
from flows.warm_start import socket_path, start_warm_process, stop_warm_process
env, log = dict(os.environ), Path(sys.argv[2])
if sys.argv[1] == "stop":
    sys.exit(0 if stop_warm_process(env) else 1)
start_warm_process(env, log, Path(env["MLOPS_HOME"]))
deadline = time.monotonic() + 180
while not socket_path(env).exists():
    if time.monotonic() > deadline:
        sys.exit(f"no warm process: {log.read_text()[-2000:]}")
    time.sleep(0.2)
"""


def warm_process(root: Path, env: dict[str, str], action: str, log: Path) -> None:
    """Start (until it listens) or stop the warm process of `root`'s code in `env`, by that
    code itself."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", WARM_PROCESS, action, str(log)], env=env,
                          cwd=root, capture_output=True, text=True, timeout=240)
    if action == "start" and done.returncode != 0:
        raise RuntimeError(f"{root}: {done.stderr.strip()[-2000:]}")


def e2e_pair(i: int, bare, ours, cfg: Config) -> dict:
    """One pair: bare, ours (warm), ours cold, the bare script on one thread (and the other
    checkout's `mlops train` with --compare-root)."""
    pair = {"bare": bare()}
    if cfg.compare_root:  # the same command, its code from the other checkout
        # Each goes first in every other pair: the second of two runs in a row started
        # 0.5-1.5 s sooner on this machine (warm page cache, a quieter server).
        root = Path(cfg.compare_root).resolve()
        for side in (("ours", "compared") if i % 2 == 0 else ("compared", "ours")):
            pair[side] = ours() if side == "ours" else ours(root)
    else:
        pair["ours"] = ours()
    pair["ours_cold"] = ours(MLOPS_WARM_START="0")
    pair["bare_one_thread"] = bare(OMP_NUM_THREADS="1")
    note(f"  repeat {i + 1}: bare {pair['bare']['_seconds']:.1f} s, ours "
         f"{pair['ours']['_seconds']:.1f} s (cold {pair['ours_cold']['_seconds']:.1f} s), bare on "
         f"one thread {pair['bare_one_thread']['_seconds']:.1f} s"
         + (f", compared checkout {pair['compared']['_seconds']:.1f} s" if "compared" in pair
            else "") + f" (load {[run['_load'] for run in pair.values()]})")
    return pair


def figure_train_end_to_end(ctx: Context, cfg: Config) -> dict:
    trials = cfg.e2e_trials
    spec = ctx.tmp / "bench-e2e.yaml"
    spec.write_text(
        "name: bench-e2e\ntask: classification\ndata:\n"
        f"  source: {json.dumps(str(ctx.csv))}\n  target: target\n"
        f"tuning:\n  trials: {trials}\n  metric: roc_auc\n  cv_folds: 5\n  seed: {SEED}\n")
    python = sys.executable
    ours_command = [python, str(Path(python).parent / "mlops"), "train", str(spec), "--json"]
    out_dir = ctx.tmp / "bare-e2e"
    out_dir.mkdir(exist_ok=True)
    bare_command = [python, str(ROOT / "tests/bench/bare_train.py"), str(ctx.csv), "target",
                    str(trials), str(SEED), str(out_dir)]

    def bare(**extra: str) -> dict:
        return timed_process(bare_command, user_environment(**extra), ctx.tmp)

    def ours_environment(root: Path = ROOT, **extra: str) -> dict[str, str]:
        # The flow's task lines on the console: `stages` is read from them.
        return user_environment(PYTHONPATH=str(root), PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO",
                                **extra)

    def ours(root: Path = ROOT, **extra: str) -> dict:  # the code of `root`, whatever is installed
        return timed_process(ours_command, ours_environment(root, **extra), root)

    # What `mlops up` does in the user's shell: the warm process `mlops train` starts from
    # (flows/launch.py); timed once it listens, as a user's next command finds it. The other
    # checkout's too, started by its own code (its socket is named after its code's place).
    roots = [ROOT, *([Path(cfg.compare_root).resolve()] if cfg.compare_root else [])]
    runs = []
    try:
        for n, root in enumerate(roots):
            warm_process(root, ours_environment(root), "start", ctx.tmp / f"warm-{n}.log")
        for i in range(cfg.e2e_repeats):
            runs.append(e2e_pair(i, bare, ours, cfg))
    finally:
        for n, root in enumerate(roots):
            warm_process(root, ours_environment(root), "stop", ctx.tmp / f"warm-{n}.log")
    ratios = [p["ours"]["_seconds"] / p["bare"]["_seconds"] for p in runs]
    ratio = statistics.median(ratios)
    seconds = lambda side: [r(p[side]["_seconds"], 2) for p in runs]  # noqa: E731
    target = TARGETS["train_end_to_end"]
    return {
        "trials": trials,
        "repeats": cfg.e2e_repeats,
        "seconds": r(statistics.median(p["ours"]["_seconds"] for p in runs), 2),
        "baseline": r(statistics.median(p["bare"]["_seconds"] for p in runs), 2),
        "ratio": r(ratio),
        "ratios": [r(x) for x in ratios],
        "ours_seconds": seconds("ours"),
        "ours_cold_seconds": seconds("ours_cold"),
        "cold_ratios": [r(p["ours_cold"]["_seconds"] / p["bare"]["_seconds"]) for p in runs],
        "bare_seconds": seconds("bare"),
        "bare_one_thread_seconds": seconds("bare_one_thread"),
        "ratios_vs_one_thread_bare": [r(p["ours"]["_seconds"] / p["bare_one_thread"]["_seconds"])
                                      for p in runs],
        "load_at_each_run": [{k: run["_load"] for k, run in p.items()} for p in runs],
        "stages": [{k: run.get("_stages") or run.get("stages") for k, run in p.items()}
                   for p in runs],
        "compared_root": cfg.compare_root,
        "compared_seconds": seconds("compared") if cfg.compare_root else None,
        "compared_ratios": [r(p["compared"]["_seconds"] / p["bare"]["_seconds"]) for p in runs]
        if cfg.compare_root else None,
        # The same trials: the bare search reaches the same best cross-validated score.
        "same_trials": all(abs(p["ours"]["cv_score"] - p["bare"]["cv_score"]) < 1e-9
                           for p in runs),
        "cv_score": {"ours": r(runs[0]["ours"]["cv_score"], 5),
                     "bare": r(runs[0]["bare"]["cv_score"], 5)},
        "baseline_is": "tests/bench/bare_train.py: read the CSV, hold out 20 %, the platform's "
                       "objective in a seeded in-memory Optuna study, refit, holdout score, "
                       "joblib.dump; its own process, start to exit",
        "measured_is": "`mlops train SPEC --json` against the bench's platform, start to exit, "
                       "started warm (after `mlops up` in the same environment); "
                       "ours_cold_seconds: the same with MLOPS_WARM_START=0",
        "target": target,
        "met": ratio <= target,
    }


# --------------------------------------------------------------------------- figure 7


def figure_training_profile_fe(ctx: Context, cfg: Config) -> dict:
    """The whole training flow with the data profile and feature engineering against neither,
    same data, same trials (see the module's docstring)."""
    import resource

    import optuna
    from mlflow.tracking import MlflowClient

    from experiments import training
    from flows.studies import study_storage
    from flows.train import TrainParameters, train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = cfg.training_trials
    specs = {}
    for arm, extra in (("without", "  feature_engineering: false\nprofile: false\n"),
                       ("with", "")):  # with: both on, as by default
        specs[arm] = ctx.tmp / f"training-{arm}.yaml"
        specs[arm].write_text(ctx.spec_text(trials).replace("name: bench", "name: bench-training")
                              + extra)
    queued: list[dict] = []  # the trials every counted training is given, in order
    original_run_trials = training.run_trials

    def same_trials(*args, warm_start=(), **kwargs):
        return original_run_trials(*args, warm_start=queued or warm_start, **kwargs)

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the profile's process, once joined
        return usage.ru_utime + usage.ru_stime

    def run(arm: str) -> dict:
        load = load_average()
        started, cpu, child_cpu = time.perf_counter(), time.process_time(), children_cpu()
        result = train(TrainParameters(experiment=str(specs[arm])))
        seconds = time.perf_counter() - started
        cpu, child_cpu = time.process_time() - cpu, children_cpu() - child_cpu
        client = MlflowClient()
        run_ = client.get_run(result["run_id"])
        study = optuna.load_study(study_name=run_.data.tags["mlops.study_name"],
                                  storage=study_storage())
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        return {"seconds": seconds, "cpu_seconds": cpu + child_cpu, "profile_cpu_seconds": child_cpu,
                "load_before": load, "load_after": load_average(),
                "params": [{k: v for k, v in t.params.items() if not k.startswith("fe.")}
                           for t in done],
                "fe": any(k.startswith("fe.") for t in done for k in t.params),
                "profile": bool(client.list_artifacts(result["run_id"], "data")),
                "version": result["model_version"]}

    training.run_trials = same_trials
    try:
        note(f"  reference search without either ({trials} trials, not counted)")
        reference = run("without")
        queued.extend(reference["params"])
        note(f"  warm-up with both ({trials} trials, not counted): {run('with')['seconds']:.1f} s")
        pairs = []
        for i in range(cfg.training_repeats):
            order = ("without", "with") if i % 2 == 0 else ("with", "without")
            pair = {arm: run(arm) for arm in order}
            pairs.append(pair)
            note(f"  pair {i + 1} ({' then '.join(order)}): without {pair['without']['seconds']:.2f} s"
                 f", with {pair['with']['seconds']:.2f} s "
                 f"(profile process {pair['with']['profile_cpu_seconds']:.1f} s CPU), "
                 f"load {pair[order[0]]['load_before']}")
    finally:
        training.run_trials = original_run_trials

    ratios = [p["with"]["seconds"] / p["without"]["seconds"] for p in pairs]
    ratio = statistics.median(ratios)
    same = all(p[arm]["params"] == queued for p in pairs for arm in p)
    switched = all(p["with"]["fe"] and p["with"]["profile"] and not p["without"]["fe"]
                   and not p["without"]["profile"] for p in pairs)
    target = TARGETS["training_profile_fe"]
    return {
        "trials": trials,
        "repeats": cfg.training_repeats,
        "seconds": r(statistics.median(p["with"]["seconds"] for p in pairs)),
        "baseline": r(statistics.median(p["without"]["seconds"] for p in pairs)),
        "ratio": r(ratio),
        "ratios": [r(x) for x in ratios],
        "pairs": [{"order": list(p), **{f"{arm}_seconds": r(p[arm]["seconds"]) for arm in p},
                   **{f"{arm}_cpu_seconds": r(p[arm]["cpu_seconds"]) for arm in p},
                   "profile_process_cpu_seconds": r(p["with"]["profile_cpu_seconds"]),
                   "load_before": p[next(iter(p))]["load_before"],
                   "load_after": p[list(p)[-1]]["load_after"]} for p in pairs],
        # CPU of this process and its reaped children (the profile's): less swayed by others.
        "cpu_ratio_median": r(statistics.median(p["with"]["cpu_seconds"] / p["without"]["cpu_seconds"]
                                                for p in pairs)),
        "same_trials_in_order": same,
        "profile_and_fe_only_on_the_with_side": switched,
        "families": dict(sorted(collections.Counter(q.get("model") for q in queued).items())),
        "baseline_is": "flows.train.train with `profile: false` and tuning.feature_engineering: "
                       "false, given the reference search's trials",
        "measured_is": "flows.train.train with both on (the defaults), given the same trials, "
                       "drawing only fe.*",
        "target": target,
        "met": ratio <= target,
    }


# --------------------------------------------------------------------------- main


def platform_entry_error(figure: str, message: str) -> dict:
    return {"error": message, "target": TARGETS[figure], "met": False}


def drain_prefect() -> None:
    """Send what Prefect still buffers while its server is up, so exit does not retry."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception as error:  # noqa: BLE001 - best effort before the server stops
        note(f"could not drain Prefect's buffers: {error}")


def run_on_platform(ctx: Context, cfg: Config, results: dict) -> None:
    """Figures 1, 2, 6 and 7 need a running platform: start it, measure, always stop it."""
    from infra.local import local_platform

    home = ctx.tmp / "mlops-home"
    mlflow_port, prefect_port = free_ports(2)
    platform = local_platform(home, HOST, mlflow_port, prefect_port)
    note(f"starting the platform (MLflow :{mlflow_port}, Prefect :{prefect_port})")
    try:
        try:
            seconds = start_platform(platform)
            note(f"platform healthy after {seconds:.1f} s")
            results["_platform"] = {"start_seconds": r(seconds, 2)}
            # Prefect answers its first /admin/version in ~0.5 s (2 ms after), and every
            # client asks it first: under `mlops up` the runner's client has asked by the
            # time a user's command runs; this platform has no runner, so ask it here.
            import httpx

            httpx.get(f"{platform.prefect_api_url}/admin/version", timeout=30).raise_for_status()
        except Exception as error:  # noqa: BLE001
            message = f"the platform did not start: {type(error).__name__}: {error}"
            err.print(f"[red]{message}[/red]", highlight=False)
            for figure in PLATFORM_FIGURES:
                results.setdefault(figure, platform_entry_error(figure, message))
            return
        os.environ.update(
            MLFLOW_TRACKING_URI=platform.mlflow_url,
            PREFECT_API_URL=platform.prefect_api_url,
            MLOPS_HOME=str(platform.home),
            MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
            PREFECT_HOME=str(ctx.tmp / "prefect-client"),
            # Per-trial logs still go to the Prefect API; only the console is quietened.
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
            PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        )
        # Prefect read its settings when it was imported, before this platform: without this,
        # the in-process flows (tracking_overhead's tracked side) ran on a temporary Prefect
        # server of Prefect's own, not on this platform's.
        if "prefect.context" in sys.modules:
            sys.modules["prefect.context"].refresh_global_settings_context()
        if "tracking_overhead" not in results:  # not skipped
            results["tracking_overhead"] = run_figure(
                "tracking_overhead", lambda: figure_tracking_overhead(ctx, cfg))
        if "log_model" not in results:
            results["log_model"] = run_figure("log_model", lambda: figure_log_model(ctx, cfg))
        if "train_end_to_end" not in results:
            results["train_end_to_end"] = run_figure(
                "train_end_to_end", lambda: figure_train_end_to_end(ctx, cfg))
        if "training_profile_fe" not in results:
            results["training_profile_fe"] = run_figure(
                "training_profile_fe", lambda: figure_training_profile_fe(ctx, cfg))
        if "prefect" in sys.modules:
            drain_prefect()
    finally:
        note("stopping the platform")
        seconds = stop_platform(platform)
        results.setdefault("_platform", {})["stop_seconds"] = r(seconds, 2)


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}{unit}" if abs(value) < 10 else f"{value:.1f}{unit}"
    return f"{value}{unit}"


def print_table(results: dict, cfg: Config) -> None:
    table = Table(title=f"mlops bench ({'quick' if cfg.quick else 'full'})")
    for column in ("figure", "value", "baseline", "ratio", "target", "met?"):
        table.add_column(column)
    labels = {
        "tracking_overhead": ("tracking overhead (search s)", f"ratio <= {TARGETS['tracking_overhead']:.2f}"),
        "log_model": ("log_model, ours vs MLflow defaults (s)", f"ours <= {TARGETS['log_model']} s"),
        "mlops_up_cold": ("mlops up, cold to healthy (s)", f"<= {TARGETS['mlops_up_cold']:.0f} s"),
        "time_to_quality": ("time to grid's best (s) vs grid total",
                            f"ratio <= {TARGETS['time_to_quality']}"),
        "feature_engineering": ("search with feature engineering vs without (s)",
                                f"ratio <= {TARGETS['feature_engineering']:.2f}"),
        "train_end_to_end": ("mlops train vs bare Optuna + sklearn, start to exit (s)",
                             f"ratio <= {TARGETS['train_end_to_end']:.2f}"),
        "training_profile_fe": ("training with profile and FE vs neither (s)",
                                f"ratio <= {TARGETS['training_profile_fe']:.2f}"),
    }
    for figure in FIGURE_ORDER:
        entry = results.get(figure, {"error": "not run", "met": False})
        label, target = labels[figure]
        if "skipped" in entry:
            table.add_row(label, f"[dim]{entry['skipped']}[/dim]", "-", "-", target, "-")
            continue
        if "error" in entry:
            table.add_row(label, f"[red]error: {entry['error'][:60]}[/red]", "-", "-", target,
                          "[red]no[/red]")
            continue
        if figure == "mlops_up_cold":
            baseline = "none (ratio vs target)"
        else:
            baseline = fmt(entry.get("baseline"), " s")
        value = fmt(entry.get("seconds"), " s")
        if figure == "time_to_quality" and not entry.get("reached"):
            value = "not reached"
        met = "[green]yes[/green]" if entry.get("met") else "[yellow]no[/yellow]"
        table.add_row(label, value, baseline, fmt(entry.get("ratio")), target, met)
    out.print(table)
    lines = []
    t = results.get("tracking_overhead", {})
    if "error" not in t and "skipped" not in t and t:
        lines.append(
            f"tracking: {t['trials']} trials x {t['repeats']} alternated pairs, "
            f"ratios {t['ratios']} (with a spare process: {t['spare_process']}), "
            f"same trial sequence: {t['same_trial_sequence']}; whole flow / plain "
            f"{t['flow_ratio_median']}; CPU time ratio {t['cpu_ratio_median']}; without a "
            f"spare process (a cold training) {t['ratio_without_spare']} {t['ratios_without_spare']}"
        )
    q = results.get("time_to_quality", {})
    if "error" not in q and "skipped" not in q and q:
        grid_note = "a reduced grid (--quick)" if q["grid_reduced_for_quick"] else "the full grid"
        lines.append(
            f"time to quality: {grid_note} of {q['grid_candidates']} candidates, best "
            f"{q['grid_best_cv_roc_auc']} ({q['grid_best_model']}); tolerance {q['tolerance']}; "
            + (f"reached {q['reached_value']} at trial {q['reached_at_trial']}" if q["reached"]
               else f"not reached in {q['search_trials_run']} trials (best "
                    f"{q['search_best_cv_roc_auc']})")
        )
    f = results.get("feature_engineering", {})
    if "error" not in f and "skipped" not in f and f:
        lines.append(
            f"feature engineering: {f['trials']} trials x {f['repeats']} pairs, ratios "
            f"{f['ratios']} (same models in order: {f['same_models_in_order']}), CPU ratio "
            f"{f['cpu_ratio_median']}; free searches {f['free_search_ratios']} (families "
            f"{f['free_search_families']}); best cv roc_auc {f['best_cv_roc_auc']}")
    e = results.get("train_end_to_end", {})
    if "error" not in e and "skipped" not in e and e:
        lines.append(
            f"mlops train end to end: {e['trials']} trials x {e['repeats']} alternated pairs, "
            f"ratios {e['ratios']} (ours {e['ours_seconds']} s, bare {e['bare_seconds']} s, "
            f"ours started cold {e['ours_cold_seconds']} s: ratios {e['cold_ratios']}, "
            f"load {e['load_at_each_run']}); against the bare script on one thread: "
            f"{e['ratios_vs_one_thread_bare']} (bare, one thread: "
            f"{e['bare_one_thread_seconds']} s); same trials: {e['same_trials']}")
    t6 = results.get("training_profile_fe", {})
    if "error" not in t6 and "skipped" not in t6 and t6:
        lines.append(
            f"training with profile and FE: {t6['trials']} trials x {t6['repeats']} alternated "
            f"pairs, ratios {t6['ratios']}, CPU ratio {t6['cpu_ratio_median']} (same trials in "
            f"order: {t6['same_trials_in_order']}; profile and FE only on the 'with' side: "
            f"{t6['profile_and_fe_only_on_the_with_side']}); pairs "
            + "; ".join(f"{p['without_seconds']} s vs {p['with_seconds']} s at load "
                        f"{p['load_before']}" for p in t6["pairs"]))
    c = results.get("mlops_up_cold", {})
    if "error" not in c and "skipped" not in c and c:
        lines.append(f"mlops up ({', '.join(c['services'])}): the command {c['seconds']} s start "
                     f"to exit; its services {c['start_services_seconds']} s, per service healthy at "
                     f"{c['service_healthy_seconds']} s (MLflow and Prefect alone: "
                     f"{c['servers_only_seconds']} s); no baseline, ratio is against the "
                     f"{c['target']:g} s target")
    busy = [f for f in FIGURE_ORDER if results.get(f, {}).get("machine_busy")]
    if busy:
        lines.append(
            f"[yellow]the machine was busy (1-min load above {usable_cores()} cores) during: "
            f"{', '.join(busy)}; other programs skew those timings[/yellow]"
        )
    for line in lines:
        out.print(f"- {line}", highlight=False, soft_wrap=True)


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


SPARE_PID: int | None = None


def become_a_warm_command() -> None:
    """Import what the warm process imports and fork a spare process, as the warm process's
    fork for `mlops train` does (flows/warm_commands.py), before any thread starts: the
    tracked search then runs as a warm training's does."""
    global SPARE_PID
    from flows.spare import fork_spare
    from flows.warm_commands import import_once

    import_once()
    SPARE_PID = fork_spare()
    if SPARE_PID is None:
        note("tracking_overhead: no spare process (a thread was running); tracked as a cold "
             "training is")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and repeats")
    parser.add_argument("--out", default="bench-results.json", help="where to write the JSON")
    parser.add_argument("--figures", default=",".join(FIGURE_ORDER),
                        help=f"comma-separated figures to measure (default all: {','.join(FIGURE_ORDER)})")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP/BLAS threads in this process (0: the libraries' default)")
    parser.add_argument("--e2e-trials", type=int, help="train_end_to_end: trials (default 20)")
    parser.add_argument("--e2e-repeats", type=int, help="train_end_to_end: pairs (default 2)")
    parser.add_argument("--compare-root", help="train_end_to_end: also time `mlops train` from "
                        "this checkout (e.g. the main branch) in each pair")
    args = parser.parse_args(argv)
    chosen = [f.strip() for f in args.figures.split(",") if f.strip()]
    if unknown := sorted(set(chosen) - set(FIGURE_ORDER)):
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURE_ORDER)}")
    if args.threads > 0:  # before numpy or scikit-learn is imported
        for name in THREAD_VARIABLES:
            os.environ[name] = str(args.threads)
    if "tracking_overhead" in chosen:
        become_a_warm_command()
    cfg = Config.make(args.quick)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in (("e2e_trials", args.e2e_trials),
                                                        ("e2e_repeats", args.e2e_repeats),
                                                        ("compare_root", args.compare_root)) if v})
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # MLflow's hints about this data set (integer target, local CSV source): not findings.
    warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer")
    warnings.filterwarnings("ignore", message=r"The specified dataset source can be interpreted")

    results: dict = {}
    finished = False
    started = time.perf_counter()
    machine = machine_info()
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-bench-", ignore_cleanup_errors=True) as tmp:
            ctx = Context(Path(tmp))
            ctx.write_data()
            for figure in FIGURE_ORDER:
                if figure not in chosen:
                    results[figure] = {"skipped": "not selected (--figures)",
                                       "target": TARGETS[figure]}
            # First, alone on the machine: nothing else of ours is running yet.
            if "mlops_up_cold" in chosen:
                results["mlops_up_cold"] = run_figure(
                    "mlops_up_cold", lambda: figure_cold_start(ctx))
            if set(PLATFORM_FIGURES) & set(chosen):
                run_on_platform(ctx, cfg, results)
            # Needs no server: measured after the platform is stopped, on quiet cores.
            if "time_to_quality" in chosen:
                results["time_to_quality"] = run_figure(
                    "time_to_quality", lambda: figure_time_to_quality(ctx, cfg))
            if "feature_engineering" in chosen:
                results["feature_engineering"] = run_figure(
                    "feature_engineering", lambda: figure_feature_engineering(ctx, cfg))
        finished = True
    finally:
        for figure in FIGURE_ORDER:
            results.setdefault(figure, {"error": "not run: the bench was interrupted",
                                        "target": TARGETS[figure], "met": False})
        report = {figure: results[figure] for figure in FIGURE_ORDER}
        report["machine"] = machine
        machine["thread_pools"] = thread_pools()
        report["bench_platform"] = results.get("_platform")
        report["run"] = {
            "mode": "quick" if cfg.quick else "full",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "total_seconds": round(time.perf_counter() - started, 1),
            "finished": finished,
            "config": {
                "native_threads": args.threads or "library default",
                "tracking_trials": cfg.tracking_trials,
                "tracking_repeats": cfg.tracking_repeats,
                "log_model_repeats": cfg.log_model_repeats,
                "search_max_trials": cfg.search_max_trials,
                "tolerance": cfg.tolerance,
                "fe_trials": cfg.fe_trials,
                "fe_repeats": cfg.fe_repeats,
                "e2e_trials": cfg.e2e_trials,
                "e2e_repeats": cfg.e2e_repeats,
                "training_trials": cfg.training_trials,
                "training_repeats": cfg.training_repeats,
            },
        }
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print_table(results, cfg)
    out.print(f"results written to {args.out} ({report['run']['total_seconds']} s)",
              highlight=False)
    return 1 if any("error" in results.get(f, {"error": 1}) for f in FIGURE_ORDER) else 0


if __name__ == "__main__":
    sys.exit(main())
