"""Live quality end to end: labels that flip while the inputs stay put retrain the model.

Live records and their feedback are written through the TrafficWriter that `mlops serve`
uses, in the columns it writes (tests/serving/test_serving.py covers the HTTP path of
/predict and /feedback into the same store).
"""

import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

NAME = "it-quality"


def _rows(n: int, seed: int) -> pd.DataFrame:
    """Label "yes" when x1 + x2 > 0 (mostly): a line, so logistic regression learns it."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    label = np.where(x1 + x2 + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "label": label})


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """A champion for NAME that judges live quality from 100 labelled rows."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("quality")
    _rows(400, seed=1).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 2, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        monitoring: {{cooldown_minutes: 60, min_rows: 100, min_labelled: 100}}
        """))
    return train(TrainParameters(experiment=str(spec)))


def _serve_and_label(rows: pd.DataFrame, version: str, flip: bool) -> None:
    """Records served by `version` now, then their true labels (reversed with `flip`)."""
    from infra.settings import process_settings
    from monitoring.traffic import FEEDBACK, TRAFFIC, TrafficWriter, hour_of, open_files
    from serving.app import feedback_columns
    from serving.batching import Served

    now = datetime.now(UTC)
    hour, n = hour_of(now), len(rows)
    request_id = uuid.uuid4().hex
    writer = TrafficWriter(open_files(process_settings().traffic_base), NAME)
    writer.add(TRAFFIC, hour, {
        **{c: rows[c].to_numpy() for c in ("x1", "x2", "colour")},
        "prediction": np.full(n, "yes", dtype=object),  # not read: the check re-scores
        "model_version": np.full(n, version, dtype=object),
        "served_at": np.full(n, np.datetime64(now.replace(tzinfo=None), "us")),
        "request_id": np.full(n, request_id, dtype=object),
        "record_index": np.arange(n),
    })
    labels = rows["label"].map({"yes": "no", "no": "yes"}) if flip else rows["label"]
    writer.add(FEEDBACK, hour, feedback_columns(request_id, labels.tolist(),
                                                Served(n, version, hour), "classification", now))
    writer.close()


def _check():
    from flows.monitor import MonitorParameters, monitor

    return monitor(MonitorParameters(model=NAME))


def test_the_store_is_the_one_the_platform_reads(platform):
    from infra.settings import process_settings

    assert Path(process_settings().traffic_base) == (Path(platform.home) / "traffic").resolve()


def test_stationary_labelled_traffic_does_not_trigger(trained):
    """Given 200 live records like the training data with their true labels, the check judges
    quality not degraded, finds neither data nor prediction drift, and does not retrain."""
    _serve_and_label(_rows(200, seed=2), trained["model_version"], flip=False)

    result = _check()

    quality = result["quality"]
    assert quality["metric"] == "roc_auc" and quality["labelled_rows"] == 200
    assert quality["degraded"] is False and quality["reference"] == trained["metric"]["value"]
    assert result["drift_detected"] is False and result["prediction_drift"] is False
    assert result["retraining"] == "not_needed" and result["trigger_reason"] is None
    client = MlflowClient()
    run = client.get_run(result["monitoring_run_id"])
    assert run.data.metrics["quality.roc_auc"] == quality["value"]
    assert run.data.metrics["quality.reference"] == quality["reference"]
    assert run.data.metrics["quality.labelled_rows"] == 200
    assert "prediction_drift_score" in run.data.metrics
    assert run.data.tags["mlops.quality_degraded"] == "false"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {
        "report/drift_report.html", "report/quality_report.html"}


def test_flipped_labels_with_unchanged_inputs_retrain_for_quality(trained):
    """Given 200 more records from the same inputs whose labels came back reversed, the check
    finds no data drift but degraded quality, triggers retraining with reason quality, and
    the new version trains on the labelled live rows and says why it was trained."""
    from flows.demo import wait_for_retraining

    _serve_and_label(_rows(200, seed=3), trained["model_version"], flip=True)

    result = _check()

    assert result["drift_detected"] is False and result["prediction_drift"] is False
    assert result["quality"]["degraded"] is True and result["quality"]["labelled_rows"] == 400
    assert result["retraining"] == "triggered" and result["trigger_reason"] == "quality"
    done = wait_for_retraining(MlflowClient(), NAME, result["monitoring_run_id"], timeout_s=400, poll_s=0.5)
    assert done is not None and done["version"] is not None, "no retraining finished"
    assert done["run"].data.tags["mlops.trigger"] == "quality"
    assert done["version"].tags["mlops.trigger"] == "quality"
    assert int(done["run"].data.params["rows"]) == 400 + 400  # the spec's rows and the live ones
    event = _event_of(result["monitoring_run_id"])
    assert event.resource["mlops.reason"] == "quality" and event.payload["trigger"] == "quality"


def _event_of(monitoring_run_id: str):
    """The retraining event the check emitted, as the Prefect server keeps it."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from flows.events import DRIFT_EVENT, model_resource_id

    wanted = EventFilter(event=EventNameFilter(name=[DRIFT_EVENT]),
                         resource=EventResourceFilter(id=[model_resource_id(NAME)]))
    with get_client(sync_client=True) as client:
        events = client.read_events(filter=wanted, limit=50).events
    return next(e for e in events if e.payload.get("monitoring_run_id") == monitoring_run_id)
