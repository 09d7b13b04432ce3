"""The demo's data and its wait for the drift-triggered retraining."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

DRIFTED_COLUMNS = ("bill_length_mm", "flipper_length_mm", "body_mass_g")


def demo_batches(frame: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stationary batch (rows drawn again from the same data) and a drifted one
    (three measurements moved by 1.5 standard deviations, as a new colony might be)."""
    rng = np.random.default_rng(seed)
    stationary = frame.iloc[rng.integers(0, len(frame), 300)].reset_index(drop=True)
    drifted = frame.iloc[rng.integers(0, len(frame), 300)].reset_index(drop=True)
    for column in DRIFTED_COLUMNS:
        drifted[column] = drifted[column] + 1.5 * frame[column].std()
    return stationary, drifted


def write_batches(frame: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stationary, drifted = demo_batches(frame)
    paths = folder / "stationary.csv", folder / "drifted.csv"
    stationary.to_csv(paths[0], index=False)
    drifted.to_csv(paths[1], index=False)
    return paths


def wait_for_retraining(client: MlflowClient, experiment: str, monitoring_run_id: str,
                        timeout_s: float = 900, poll_s: float = 2.0) -> dict | None:
    """The finished training run that the given drift check caused, once it has a version
    (looked for every `poll_s`: tests look more often, to waste less of their time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = client.search_runs(
            [client.get_experiment_by_name(experiment).experiment_id],
            filter_string=f"tags.`mlops.monitoring_run_id` = '{monitoring_run_id}'",
        )
        for run in found:
            if run.info.status == "FAILED":
                return {"run": run, "version": None}
            if run.info.status == "FINISHED" and "mlops.model_version" in run.data.tags:
                version = client.get_model_version(experiment, run.data.tags["mlops.model_version"])
                return {"run": run, "version": version}
        time.sleep(poll_s)
    return None
