"""The models a server holds: the champion it answers with and the challenger it shadows, each
from the registry, swapped when its alias moves."""

import gc
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline

from experiments.contract import DataContract
from registry.champion import CHALLENGER, CHAMPION, get_alias
from registry.loading import UnsafeModel, load_registered
from serving.prepare import fast_prepare

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A registered version that this server refuses or fails to load."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str
    run_id: str
    contract: DataContract
    pipeline: Any
    loaded_at: datetime

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        # Skipped: parameter validation (fitted already) and the finiteness scan (JSON as
        # orjson parses it has no NaN or infinity; nulls are NaN on purpose and imputed).
        # The arithmetic, and so the predictions, are the pyfunc's.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return predict(self.pipeline, features)

    def predict_with_proba(self, features: pd.DataFrame) -> tuple[np.ndarray, list, np.ndarray]:
        """Predictions, the classes in the probabilities' column order, and the class
        probabilities (a classifier's; the predictions are the same as `predict`'s)."""
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return predict_with_proba(self.pipeline, features)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "run_id": self.run_id,
                "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
                "features": self.contract.feature_names, "task": self.contract.task}


def predict(pipeline: Pipeline, features: pd.DataFrame) -> np.ndarray:
    """pipeline.predict, with forests summed in a plain loop (see forest_average)."""
    forest = _single_output_forest(pipeline)
    if forest is None:  # what pipeline.predict does, with the features prepared as below
        return pipeline.steps[-1][1].predict(_prepared(pipeline, features))
    average = forest_average(forest, _prepared(pipeline, features))
    return forest.classes_.take(np.argmax(average, axis=1), axis=0) if _is_classifier(forest) else average


def predict_with_proba(pipeline: Pipeline, features: pd.DataFrame) -> tuple[np.ndarray, list, np.ndarray]:
    """pipeline.predict and pipeline.predict_proba, from one pass over a forest's trees."""
    forest = _single_output_forest(pipeline)
    if forest is None or not _is_classifier(forest):
        # What pipeline.predict and pipeline.predict_proba do, with the features prepared once.
        final, prepared = pipeline.steps[-1][1], _prepared(pipeline, features)
        return final.predict(prepared), list(pipeline.classes_), final.predict_proba(prepared)
    average = forest_average(forest, _prepared(pipeline, features))
    return forest.classes_.take(np.argmax(average, axis=1), axis=0), list(forest.classes_), average


def _single_output_forest(pipeline: Pipeline):
    final = pipeline.steps[-1][1]
    if type(final) in (RandomForestClassifier, RandomForestRegressor) and final.n_outputs_ == 1:
        return final
    return None


def _is_classifier(forest) -> bool:
    return isinstance(forest, RandomForestClassifier)


def _prepared(pipeline: Pipeline, features: pd.DataFrame):
    for index, (_, step) in enumerate(pipeline.steps[:-1]):
        fast = fast_prepare(step, features) if index == 0 else None  # see serving/prepare.py
        features = step.transform(features) if fast is None else fast
    return features


def forest_average(forest, X) -> np.ndarray:
    """What a single-output forest's predict and predict_proba average, without the joblib
    wrapper that sklearn puts around each tree (most of the time on small batches): the same
    trees' outputs summed in the same order, then divided, as they do with n_jobs=1. Class
    probabilities for a classifier, predictions for a regressor.

    Each tree's output is read from its `tree_` as the tree's own predict_proba / predict
    (check_input=False) slice it; their per-call fitted-state and feature-count checks are
    skipped (the forest checked X once above): ~40% of a 100-tree forest's time on 300 rows."""
    X = forest._validate_X_predict(X)
    classifier = _is_classifier(forest)
    total = np.zeros((X.shape[0], forest.n_classes_) if classifier else X.shape[0], dtype=np.float64)
    for tree in forest.estimators_:
        values = tree.tree_.predict(X)
        total += values[:, :tree.n_classes_] if classifier else values[:, 0]
    total /= len(forest.estimators_)
    return total


def load_version(version: ModelVersion, client: MlflowClient | None = None) -> ServedModel:
    """One registered version, through the platform's loader (which never runs its code)."""
    uri = f"models:/{version.name}/{version.version}"
    try:
        loaded = load_registered(client or MlflowClient(), version.name, str(version.version))
    except UnsafeModel as error:
        raise ModelLoadError(str(error)) from error
    if "mlops_contract" not in loaded.metadata:
        raise ModelLoadError(f"{uri} has no data contract in its metadata (mlops_contract)")
    return ServedModel(
        name=version.name, version=str(version.version), run_id=version.run_id,
        contract=DataContract.from_dict(loaded.metadata["mlops_contract"]),
        pipeline=loaded.pipeline, loaded_at=datetime.now(UTC),
    )


def example_features(contract: DataContract) -> pd.DataFrame:
    """One record of model input the contract allows: minimums and first categories."""
    return pd.DataFrame({
        **{c.name: [c.minimum if c.minimum is not None else 0.0] for c in contract.columns
           if c.kind == "numeric"},
        **{c.name: [c.categories[0] if c.categories else np.nan] for c in contract.columns
           if c.kind == "categorical"},
    }, columns=[*contract.numeric, *contract.categorical]).astype(
        {**{name: "float64" for name in contract.numeric},
         **{name: object for name in contract.categorical}})


class ChampionWatcher:
    """Holds the model in service; a thread loads the champion, then polls the alias every
    `interval_s` and swaps in a new champion once it is loaded (one reference assignment)."""

    alias = CHAMPION
    role = "serving"

    def __init__(self, client: MlflowClient, name: str, interval_s: float = 5.0, load=load_version):
        self.current: ServedModel | None = None
        self._client = client
        self._name = name
        self._interval_s = interval_s
        self._load = load
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.alias}-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def gone(self) -> None:
        """The alias is on no version: the champion in service stays (there is no other)."""
        if self.current is not None:
            log.warning("%s has no champion any more; still serving version %s",
                        self._name, self.current.version)

    def check(self) -> bool:
        """Load the alias's version if it is not the one held; True when it swapped."""
        found = get_alias(self._client, self._name, self.alias)
        if found is None:
            self.gone()
            return False
        version = str(found.version)
        if version in (self.current.version if self.current else None, self._refused):
            return False
        try:
            loaded = self._load(found)
        except ModelLoadError as error:
            self._refused = version  # not retried until the alias moves again
            log.error("not %s %s version %s: %s", self.role, self._name, version, error)
            return False
        loaded.predict(example_features(loaded.contract))  # first calls are slow: not a client's
        first = self.current is None
        self.current = loaded
        # A full collection walks every object the libraries made (~200 ms here, all
        # requests stalled); frozen, they are skipped. The first freeze happens before any
        # request, so it can afford to collect first.
        if first:
            gc.collect()
        gc.freeze()
        log.info("%s %s version %s (run %s)", self.role, self._name, loaded.version, loaded.run_id)
        return True

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = self._interval_s
            try:
                self.check()
            except Exception:  # noqa: BLE001 - keep what is loaded; retry next time
                log.exception("could not check %s's %s; retrying in %.0f s",
                              self._name, self.alias, self._interval_s)


class ChallengerWatcher(ChampionWatcher):
    """Holds the challenger that `mlops serve` shadows, as the champion's watcher holds the
    champion; none once the alias is on no version (promoted, or taken off by hand)."""

    alias = CHALLENGER
    role = "shadowing"

    def gone(self) -> None:
        if self.current is not None:
            log.info("%s has no challenger any more; version %s no longer shadowed",
                     self._name, self.current.version)
            self.current = None
        self._refused = None  # the alias may come back to the version refused before
