"""The challenger's shadow in process (no servers): its predictions kept beside the
champion's, and nothing it does reaching an answer."""

import threading
import warnings
from datetime import UTC, datetime

import pandas as pd
import pytest
from synthetic import binary_frame

from experiments.contract import infer_contract
from experiments.pipelines import build_pipeline, feature_frame
from monitoring.traffic import (
    CHALLENGER_PREDICTION,
    CHALLENGER_VERSION,
    LocalFiles,
    TrafficWriter,
    read_labelled,
    with_challenger,
)
from serving.app import create_app
from serving.batching import Batcher
from serving.model import ServedModel
from serving.shadow import Shadow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette would rather use httpx2, which is not installed
    from starlette.testclient import TestClient


def _served(family: str, version: str) -> ServedModel:
    frame = binary_frame(n=300, seed=5)
    contract = infer_contract(frame, "label", "classification")
    pipeline = build_pipeline("classification", family, {}, contract.numeric,
                              contract.categorical, seed=0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame["label"])
    return ServedModel("m", version, f"run-{version}", contract, pipeline, datetime.now(UTC))


@pytest.fixture(scope="module")
def champion() -> ServedModel:
    return _served("logistic_regression", "1")


@pytest.fixture(scope="module")
def challenger() -> ServedModel:
    return _served("random_forest", "2")


class Holder:
    def __init__(self, current=None):
        self.current = current

    def start(self):
        pass

    def stop(self):
        pass


class Raising:
    """A challenger whose every prediction raises, after `entered` is set."""

    def __init__(self, model: ServedModel):
        self.name, self.version, self.contract = model.name, "9", model.contract
        self.calls = 0

    def predict(self, features):
        self.calls += 1
        raise RuntimeError("the challenger broke")


class Blocking:
    """A challenger that never finishes a prediction until released."""

    def __init__(self, model: ServedModel):
        self.model, self.name, self.version, self.contract = model, model.name, "8", model.contract
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, features):
        self.entered.set()
        self.release.wait(30)
        return self.model.predict(features)


def records(n: int, seed: int = 9) -> list[dict]:
    frame = binary_frame(n=n, seed=seed).drop(columns="label")
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture
def serve(tmp_path, champion):
    """An app over the champion with `shadowed` as its challenger; its store in tmp_path."""
    opened = []

    def start(shadowed, **options):
        writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600)
        shadow = Shadow(Holder(shadowed), writer, wait_s=0.001, **options)
        client = TestClient(create_app(Holder(champion), writer, Batcher(Holder(champion), writer,
                                                                          shadow=shadow)))
        client.__enter__()
        opened.append(client)
        return client, shadow

    yield start
    for client in opened:
        client.__exit__(None, None, None)


def _answers(client, n_requests: int) -> list[dict]:
    found = []
    for seed in range(n_requests):
        answer = client.post("/predict", json={"records": records(5, seed)})
        assert answer.status_code == 200, answer.text
        found.append(answer.json())
    return found


def _label_all(client, answers: list[dict]) -> None:
    for answer in answers:
        labels = ["yes"] * len(answer["predictions"])
        assert client.post("/feedback", json={"request_id": answer["request_id"],
                                              "labels": labels}).status_code == 200


def test_shadow_predictions_are_recorded_beside_the_champions(serve, tmp_path, champion, challenger):
    """Given a champion and a challenger that disagree, the answers are the champion's, and
    after shutdown every labelled record has the challenger's prediction and version beside
    the champion's."""
    client, shadow = serve(challenger)

    answers = _answers(client, 6)
    _label_all(client, answers)
    client.__exit__(None, None, None)

    rows = with_challenger(LocalFiles(tmp_path), "m", read_labelled(LocalFiles(tmp_path), "m", "label"))
    assert len(rows) == 30 and shadow.scored == 30
    features = feature_frame(rows, champion.contract.numeric, champion.contract.categorical)
    assert rows["prediction"].tolist() == champion.pipeline.predict(features).tolist()
    assert rows[CHALLENGER_PREDICTION].tolist() == challenger.pipeline.predict(features).tolist()
    assert (rows[CHALLENGER_PREDICTION] != rows["prediction"]).any()  # they do disagree
    assert set(rows[CHALLENGER_VERSION]) == {"2"} and set(rows["model_version"]) == {"1"}
    assert [a["predictions"] for a in answers] == [
        champion.pipeline.predict(feature_frame(pd.DataFrame(records(5, s)), champion.contract.numeric,
                                                champion.contract.categorical)).tolist()
        for s in range(6)]


def test_a_challenger_that_raises_changes_no_answer(serve, tmp_path, champion):
    """Given a challenger whose predictions raise, every request is answered as without it,
    nothing is recorded beside the champion's rows, and /model counts the failed records."""
    broken = Raising(champion)
    client, _ = serve(broken)

    answers = _answers(client, 5)
    _label_all(client, answers)
    client.__exit__(None, None, None)

    assert broken.calls >= 1
    labelled = read_labelled(LocalFiles(tmp_path), "m", "label")
    assert len(labelled) == 25
    assert with_challenger(LocalFiles(tmp_path), "m", labelled).empty


def test_a_stuck_challenger_never_delays_an_answer(serve, champion):
    """Given a challenger stuck in its first prediction, later requests are still answered
    (in well under the 30 s it is stuck for), and records beyond the shadow's bound are
    skipped and counted rather than queued."""
    stuck = Blocking(champion)
    client, shadow = serve(stuck, max_records=12)
    _answers(client, 1)
    assert stuck.entered.wait(10)

    started = datetime.now(UTC)
    _answers(client, 4)  # 20 records; at most 12 may wait
    waited = (datetime.now(UTC) - started).total_seconds()

    model = client.get("/model").json()
    stuck.release.set()
    assert waited < 5
    assert model["challenger_version"] == "8" and model["records_served"] == 25
    assert model["shadow_skipped"] == 10  # 5 in scoring, 10 queued (of 12), 10 skipped


def test_without_a_challenger_nothing_is_shadowed(serve, tmp_path):
    client, shadow = serve(None)

    _answers(client, 2)

    assert client.get("/model").json()["challenger_version"] is None and shadow.scored == 0
