"""The baseline of the bench's `train_end_to_end` figure: what a user writes by hand with
Optuna and scikit-learn, run as its own process from start to exit.

    python tests/bench/bare_train.py DATA.csv TARGET TRIALS SEED OUT_DIR

Read the CSV, hold out 20 % (stratified), search TRIALS seeded TPE trials over 5 stratified
folds, refit the best pipeline, score it on the holdout, save it with joblib, print one JSON
line. The trials are the platform's own (its objective: model families, parameter spaces,
pipelines, pruning between folds), so both sides fit the same models; nothing else of the
platform is used: no tracking, no flow, no plots, and no limit on native threads.
"""

import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold, train_test_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.objective import Problem, make_objective  # noqa: E402
from experiments.pipelines import build_pipeline  # noqa: E402
from experiments.spaces import split_params  # noqa: E402

FAMILIES = ("logistic_regression", "random_forest", "hist_gradient_boosting")


def main(csv: str, target: str, trials: int, seed: int, out_dir: str) -> dict:
    imported = time.perf_counter()
    frame = pd.read_csv(csv)
    train, holdout = train_test_split(frame, test_size=0.2, random_state=seed,
                                      stratify=frame[target].astype(str))
    train, holdout = train.reset_index(drop=True), holdout.reset_index(drop=True)
    columns = [c for c in frame.columns if c != target]
    x, y = train[columns], train[target]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    problem = Problem("classification", "roc_auc", FAMILIES, tuple(columns), (), seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    search_started = time.perf_counter()
    study.optimize(make_objective(x, y, problem, folds), n_trials=trials)
    searched = time.perf_counter()
    family, params = split_params(study.best_params)
    model = build_pipeline("classification", family, params, columns, [], seed).fit(x, y)
    holdout_score = roc_auc_score(holdout[target], model.predict_proba(holdout[columns])[:, 1])
    joblib.dump(model, Path(out_dir) / "model.joblib")
    return {"cv_score": study.best_value, "holdout_score": holdout_score, "best_model": family,
            "best_params": params, "trials": len(study.trials),
            "params": [t.params for t in study.trials],
            "seconds_in_process": time.perf_counter() - STARTED,
            # Set beside the flow's stages by the bench (tune holds the search and its plots).
            "stages": {"imports": round(imported - STARTED, 2),
                       "read_and_split": round(search_started - imported, 2),
                       "search": round(searched - search_started, 2),
                       "refit_score_dump": round(time.perf_counter() - searched, 2)}}


if __name__ == "__main__":
    csv, target, trials, seed, out_dir = sys.argv[1:6]
    print(json.dumps(main(csv, target, int(trials), int(seed), out_dir), default=str))
