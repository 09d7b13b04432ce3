"""The champion's own output on the checked rows: its quality where labels came back, and
the drift of its predictions against its predictions on the training data.

The champion is re-scored rather than its recorded answers read back: roc_auc and log_loss
need probabilities, which the traffic store does not keep, and a window may hold rows served
by an earlier version, or come from a file nobody served.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.contract import DataContract
from experiments.metrics import model_output, score
from experiments.spec import METRICS, ExperimentSpec
from monitoring.drift import ColumnDrift, DriftColumns, compute_drift
from monitoring.quality import QualityRule, QualityVerdict, judge_quality

PREDICTION = "prediction"


@dataclass(frozen=True)
class LiveQuality:
    """What the check learned from labels: a verdict, or why there is none."""

    verdict: QualityVerdict | None
    labelled_rows: int
    note: str  # one sentence: the verdict's reason, or why there was no verdict


def labelled_since(labelled: pd.DataFrame, since: datetime) -> pd.DataFrame:
    """Labelled live rows served from `since` on: the window the drift check reads."""
    if labelled.empty:
        return labelled
    return labelled[labelled["served_at"] >= since].reset_index(drop=True)


def with_labels(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """The rows whose target is known."""
    if target not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows[target].notna()].reset_index(drop=True)


def as_classes(labels: pd.Series, classes) -> pd.Series:
    """Labels as the model's classes: feedback keeps class labels as text, a model may hold
    numbers. A label the model never saw stays as it is (and scores as wrong)."""
    by_text = {str(c): c for c in classes}
    return labels.map(lambda v: by_text.get(str(v), v))


def judge_live_quality(pipeline, labelled: pd.DataFrame, contract: DataContract,
                       spec: ExperimentSpec, reference: float | None) -> LiveQuality:
    """The champion's score on the labelled rows, judged against its holdout score."""
    n = len(labelled)
    needed = spec.monitoring.min_labelled
    if reference is None:
        return LiveQuality(None, n, f"no verdict: the champion's run has no holdout_{spec.metric}")
    if n < needed:
        return LiveQuality(None, n, f"no verdict: {n} labelled live rows, at least {needed} "
                                    "needed (monitoring.min_labelled)")
    truth, output, classes = champion_output(pipeline, labelled, contract)
    rule = QualityRule(spec.metric, METRICS[spec.metric][1], reference,
                       tolerance=spec.monitoring.quality_tolerance, min_labelled=needed)
    verdict = judge_quality(truth, output, lambda y, o: score(spec.metric, y, o, classes), rule,
                            seed=spec.tuning.seed)
    if verdict is None:
        return LiveQuality(None, n, f"no verdict: {spec.metric} cannot be computed on these "
                                    f"{n} labelled rows (one class only?)")
    return LiveQuality(verdict, n, verdict.reason)


def champion_output(pipeline, labelled: pd.DataFrame, contract: DataContract):
    """True labels, the champion's output (probabilities for classifiers) and its classes."""
    features = labelled[contract.feature_names]
    truth = labelled[contract.target]
    classes = tuple(pipeline.classes_) if contract.task == "classification" else None
    if classes is not None:
        truth = as_classes(truth, classes)
    else:
        truth = truth.astype(float)
    return truth.to_numpy(), model_output(pipeline, features, contract.task), classes


def predictions(pipeline, rows: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The champion's predictions on rows: class labels as text, or numbers."""
    predicted = pipeline.predict(rows[contract.feature_names])
    if contract.task == "classification":
        return pd.DataFrame({PREDICTION: [str(v) for v in predicted]})
    return pd.DataFrame({PREDICTION: np.asarray(predicted, dtype=float)})


def check_prediction_drift(pipeline, reference: pd.DataFrame, current: pd.DataFrame,
                           contract: DataContract, seed: int = 0) -> ColumnDrift:
    """The drift of the champion's predictions on current rows from those on its training
    rows, judged as any column is (monitoring/drift.py)."""
    kind = "categorical" if contract.task == "classification" else "numeric"
    columns = DriftColumns(**{kind: (PREDICTION,)})
    summary = compute_drift(predictions(pipeline, reference, contract),
                            predictions(pipeline, current, contract), columns, seed=seed)
    return summary.columns[0]


def write_quality_report(pipeline, labelled: pd.DataFrame, contract: DataContract,
                         html_path: Path) -> None:
    """Evidently's classification or regression preset on the labelled rows, as HTML."""
    from evidently import Report  # seconds to import: only when there are labels to show

    truth, output, classes = champion_output(pipeline, labelled, contract)
    frame, definition = _quality_dataset(truth, output, classes)
    if contract.task == "classification":
        from evidently.presets import ClassificationPreset as Preset
    else:
        from evidently.presets import RegressionPreset as Preset
    from evidently import Dataset

    snapshot = Report([Preset()]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    snapshot.save_html(str(html_path))


def _quality_dataset(truth: np.ndarray, output: np.ndarray, classes):
    from evidently import BinaryClassification, DataDefinition, MulticlassClassification, Regression

    if classes is None:
        frame = pd.DataFrame({"target": truth, PREDICTION: output})
        return frame, DataDefinition(regression=[Regression(target="target", prediction=PREDICTION)],
                                     numerical_columns=["target", PREDICTION])
    names = [str(c) for c in classes]
    frame = pd.DataFrame({"target": [str(v) for v in truth],
                          PREDICTION: [names[i] for i in np.argmax(output, axis=1)],
                          **{f"proba_{n}": output[:, i] for i, n in enumerate(names)}})
    probas = [f"proba_{n}" for n in names]
    if len(names) == 2:
        task = BinaryClassification(target="target", prediction_labels=PREDICTION,
                                    prediction_probas=probas[1], pos_label=names[1])
    else:
        # Evidently names a multiclass probability column after its class.
        frame = frame.rename(columns=dict(zip(probas, names, strict=True)))
        task = MulticlassClassification(target="target", prediction_labels=PREDICTION,
                                        prediction_probas=names)
    return frame, DataDefinition(classification=[task], categorical_columns=["target", PREDICTION],
                                 numerical_columns=list(frame.columns[2:]))


@dataclass(frozen=True)
class LiveCheck:
    """The champion on the checked rows: live quality and prediction drift."""

    quality: LiveQuality
    prediction_drift: ColumnDrift | None

    @property
    def degraded(self) -> bool:
        return self.quality.verdict is not None and self.quality.verdict.degraded

    def as_json(self) -> dict:
        verdict, drift = self.quality.verdict, self.prediction_drift
        return {"quality": None if verdict is None else verdict.as_json(),
                "prediction_drift": None if drift is None else drift.drifted}

    def metrics(self) -> dict[str, float]:
        found: dict[str, float] = {"quality.labelled_rows": self.quality.labelled_rows}
        verdict = self.quality.verdict
        if verdict is not None:
            found[f"quality.{verdict.metric}"] = verdict.value
            found["quality.reference"] = verdict.reference
            if verdict.p_value is not None:
                found["quality.p_value"] = verdict.p_value
        if self.prediction_drift is not None:
            found["prediction_drift_score"] = self.prediction_drift.score
        return found

    def tags(self) -> dict[str, str]:
        """The verdicts; `mlops.quality_degraded` counts as a drift flag for the N-of-M policy."""
        found = {"mlops.quality": self.quality.note[:5000]}
        if self.quality.verdict is not None:
            found["mlops.quality_degraded"] = str(self.degraded).lower()
        if self.prediction_drift is not None:
            found["mlops.prediction_drifted"] = str(self.prediction_drift.drifted).lower()
        return found

    def params(self) -> dict:
        drift = self.prediction_drift
        if drift is None:
            return {}
        return {"prediction_drift_method": drift.method, "prediction_drift_threshold": drift.threshold}
