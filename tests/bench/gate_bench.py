"""The promotion gate's paired bootstrap: each resample's score computed at once (ours,
`HoldoutMetric.named`) against one resample at a time through `score` (the baseline, as
the gate scored until now), the same 1,000 resamples on the same holdout.

    .venv/bin/python tests/bench/gate_bench.py [--repeats N]

Per metric and task (binary roc_auc, f1, log_loss, accuracy, balanced_accuracy on 114 rows, the bench data's
holdout size; multiclass roc_auc, f1, log_loss on 150 rows of 3 classes; regression rmse,
mae, r2 on 200 rows): the median seconds of `decide_promotion` each way over N repeats,
their ratio, and whether both reached the same decision with the same p-value. Prints one
JSON object. Binary roc_auc is listed but not in `worst_ratio`: its one-at-a-time scoring
was already the rank formula (experiments.metrics.binary_roc_auc, no sklearn), so its
baseline is a fast path already (ours ranks all resamples at once: ~0.25 of it).
No server is involved: the gate's CPU work only (it runs under the model's promotion lock,
so another training's gate waits for it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.metrics import score  # noqa: E402
from registry.promotion import HoldoutMetric, decide_promotion  # noqa: E402
from tests.bench.machine import load_average, usable_cores  # noqa: E402

TARGET_RATIO = 0.1  # the gate's bootstrap at most a tenth of its one-at-a-time time


def cases() -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, tuple | None]]:
    """(task, metric, y, candidate output, champion output, classes): a better candidate."""
    rng = np.random.default_rng(0)
    found = []
    y = rng.integers(0, 2, 114)
    a, b = (np.clip(y * w + rng.random(114) * (1 - w + 0.1), 0, 1) for w in (0.6, 0.5))
    for metric in ("roc_auc", "f1", "log_loss", "accuracy", "balanced_accuracy"):
        found.append(("binary", metric, y, np.c_[1 - a, a], np.c_[1 - b, b], (0, 1)))
    y3 = rng.integers(0, 3, 150)
    good = rng.dirichlet([1, 1, 1], 150)
    good[np.arange(150), y3] += 1
    good /= good.sum(axis=1, keepdims=True)
    for metric in ("roc_auc", "f1", "log_loss"):
        found.append(("multiclass", metric, y3, good, rng.dirichlet([1, 1, 1], 150), (0, 1, 2)))
    values = rng.normal(size=200)
    for metric in ("rmse", "mae", "r2"):
        found.append(("regression", metric, values, values + rng.normal(0, 0.3, 200),
                      values + rng.normal(0, 0.5, 200), None))
    return found


def timed(y, candidate, champion, metric: HoldoutMetric) -> tuple[float, object]:
    started = time.perf_counter()
    decision = decide_promotion(y, candidate, champion, metric, seed=1)
    return time.perf_counter() - started, decision


def measure(repeats: int) -> dict:
    figures = []
    for task, name, y, candidate, champion, classes in cases():
        greater = name not in ("rmse", "mae", "log_loss")
        ours = HoldoutMetric.named(name, greater, classes)
        baseline = HoldoutMetric(name, greater, lambda t, o, name=name, c=classes: score(name, t, o, c))
        runs = [(timed(y, candidate, champion, ours), timed(y, candidate, champion, baseline))
                for _ in range(repeats)]
        ours_s = statistics.median(o[0] for o, _ in runs)
        base_s = statistics.median(b[0] for _, b in runs)
        mine, theirs = runs[0][0][1], runs[0][1][1]
        figures.append({
            "task": task, "metric": name, "seconds": round(ours_s, 4),
            "baseline_seconds": round(base_s, 4), "ratio": round(ours_s / base_s, 4),
            "same_decision": (mine.promote, mine.p_value) == (theirs.promote, theirs.p_value),
            "reason": mine.reason,
        })
    # Binary roc_auc scored each resample with binary_roc_auc (ranks, no sklearn) already: its
    # baseline is not sklearn's per-call cost, which is what the target is about.
    worst = max(f["ratio"] for f in figures if (f["task"], f["metric"]) != ("binary", "roc_auc"))
    return {"figure": "gate_bootstrap", "repeats": repeats, "cases": figures,
            "worst_ratio": worst, "worst_ratio_is": "over every case but binary roc_auc",
            "target_ratio": TARGET_RATIO, "met": worst <= TARGET_RATIO,
            "all_same_decisions": all(f["same_decision"] for f in figures),
            "load": load_average(), "cores": usable_cores()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    print(json.dumps(measure(parser.parse_args().repeats), indent=2))


if __name__ == "__main__":
    main()
