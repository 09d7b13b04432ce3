"""The HTTP API in process (no servers): answers, refusals, feedback, batching, shutdown."""

import asyncio
import warnings
from datetime import UTC, datetime

import pandas as pd
import pytest
from synthetic import binary_frame

from experiments.contract import infer_contract
from experiments.pipelines import build_pipeline, feature_frame
from monitoring.traffic import FEEDBACK, TRAFFIC, LocalFiles, TrafficWriter, read_labelled, read_parts
from serving.app import Limits, create_app
from serving.batching import Answer, Batcher
from serving.model import ServedModel
from serving.records import Problem

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette would rather use httpx2, which is not installed
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def model() -> ServedModel:
    frame = binary_frame(n=300, seed=5)
    contract = infer_contract(frame, "label", "classification")
    pipeline = build_pipeline("classification", "random_forest", {"n_estimators": 20},
                              contract.numeric, contract.categorical, seed=0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame["label"])
    return ServedModel("m", "3", "run-1", contract, pipeline, datetime.now(UTC))


class Holder:
    """Stands in for the champion watcher: holds a model, polls nothing."""

    def __init__(self, current=None):
        self.current = current

    def start(self):
        pass

    def stop(self):
        pass


def records(n: int, seed: int = 9) -> list[dict]:
    frame = binary_frame(n=n, seed=seed).drop(columns="label")
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture
def serve(tmp_path, model):
    """A started app over `model` (or none) with a writer into tmp_path; closes on exit."""
    opened = []

    def start(current=model, limits=None):
        limits = limits or Limits(max_records=50, max_body_bytes=20_000)
        writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600)
        holder = Holder(current)
        client = TestClient(create_app(holder, writer, Batcher(holder, writer), limits))
        client.__enter__()
        opened.append(client)
        return client, holder

    yield start
    for client in opened:
        client.__exit__(None, None, None)


def test_predictions_are_the_pipelines(serve, model):
    client, _ = serve()
    sent = records(12)

    answer = client.post("/predict", json={"records": sent})

    assert answer.status_code == 200
    body = answer.json()
    features = feature_frame(pd.DataFrame(sent), model.contract.numeric, model.contract.categorical)
    assert body["predictions"] == model.pipeline.predict(features).tolist()
    assert body["model_version"] == "3" and len(body["request_id"]) == 32


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [(b'{"records": [', 400, "malformed JSON"),
     (b"[1, 2]", 422, "expected a JSON object with 'records'"),
     (b'{"records": []}', 422, "at least one record"),
     (b'{"records": {"x1": 1}}', 422, "'records' must be a list"),
     (b'{"records": [{}], "extra": 1}', 422, "unknown field(s) extra"),
     (b'{"records": [' + b"{}," * 50 + b"{}]}", 413, "51 records in one request; at most 50"),
     (b'{"records": [{"x1": "' + b"a" * 30_000 + b'"}]}', 413, "at most 20000")],
)
def test_bad_bodies_never_reach_the_model(serve, body, status, fragment):
    client, _ = serve()

    answer = client.post("/predict", content=body)

    assert answer.status_code == status
    assert fragment in answer.json()["detail"]
    assert client.get("/model").json()["records_served"] == 0


def test_a_body_without_length_is_cut_off_at_the_limit(serve):
    client, _ = serve()

    def chunks():
        yield b'{"records": [{"x1": "'
        for _ in range(100):
            yield b"a" * 1000

    answer = client.post("/predict", content=chunks())

    assert answer.status_code == 413


def test_a_contract_violation_names_record_and_field(serve):
    client, _ = serve()
    sent = records(3)
    sent[2]["x2"] = "high"

    answer = client.post("/predict", json={"records": sent})

    assert answer.status_code == 422
    assert answer.json()["record"] == 2 and answer.json()["field"] == "x2"
    assert "record 2, field 'x2'" in answer.json()["detail"]


def test_health_is_503_until_a_model_is_loaded(serve, model):
    client, holder = serve(current=None)

    assert client.get("/health").status_code == 503
    assert client.post("/predict", json={"records": records(1)}).status_code == 503

    holder.current = model
    assert client.get("/health").json() == {"status": "ok", "model": "m", "model_version": "3"}
    assert client.get("/model").json()["run_id"] == "run-1"


def test_a_failing_model_is_a_500_in_json_and_the_server_goes_on(serve, model, monkeypatch):
    """Given a model whose predict raises, the request gets a 500 naming the error's type, and
    the next request is answered once the model works again."""
    real_predict = ServedModel.predict

    def broken(self, features):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ServedModel, "predict", broken)
    client, _ = serve()

    answer = client.post("/predict", json={"records": records(2)})

    assert answer.status_code == 500
    assert answer.json() == {"detail": "prediction failed: RuntimeError"}
    monkeypatch.setattr(ServedModel, "predict", real_predict)
    assert client.post("/predict", json={"records": records(2)}).status_code == 200


def test_feedback_is_checked_and_joined(serve, tmp_path):
    client, _ = serve()
    request_id = client.post("/predict", json={"records": records(2)}).json()["request_id"]

    assert client.post("/feedback", json={"request_id": "nope", "labels": ["yes"]}).status_code == 404
    assert client.post("/feedback", json={"request_id": request_id, "labels": ["yes"]}).status_code == 422
    bad = client.post("/feedback", json={"request_id": request_id, "labels": ["yes", "maybe"]})
    assert bad.status_code == 422 and "label 1" in bad.json()["detail"]
    good = client.post("/feedback", json={"request_id": request_id, "labels": ["yes", "no"]})
    assert good.status_code == 200
    client.__exit__(None, None, None)  # shutdown writes the buffer

    labelled = read_labelled(LocalFiles(tmp_path), "m", "label")
    assert labelled.sort_values("record_index")["label"].tolist() == ["yes", "no"]
    assert len(read_parts(LocalFiles(tmp_path), "m", FEEDBACK)) == 2


def test_shutdown_writes_every_answered_record(serve, tmp_path):
    client, _ = serve()
    answered = 0
    for i in range(10):
        answer = client.post("/predict", json={"records": records(i + 1, seed=i)})
        answered += len(answer.json()["predictions"])

    client.__exit__(None, None, None)

    stored = read_parts(LocalFiles(tmp_path), "m", TRAFFIC)
    assert len(stored) == answered == 55
    assert set(stored.columns) >= {"x1", "x2", "noise", "colour", "prediction", "model_version",
                                   "served_at", "request_id", "record_index"}


def test_concurrent_requests_share_predict_calls(tmp_path, model, monkeypatch):
    """Given 40 requests at once, the batcher answers each correctly with far fewer model
    calls, and a bad request in the crowd gets its own 422 without failing the others."""
    calls = []
    real_predict = ServedModel.predict

    def counted(self, features):
        calls.append(len(features))
        return real_predict(self, features)

    monkeypatch.setattr(ServedModel, "predict", counted)
    sent = [records(3, seed=i) for i in range(40)]
    sent[7][1]["colour"] = 5

    async def scenario():
        writer = TrafficWriter(LocalFiles(tmp_path), "m")
        batcher = Batcher(Holder(model), writer, wait_s=0.005)
        await batcher.start()
        outcomes = await asyncio.gather(*(batcher.predict(r) for r in sent))
        await batcher.stop()
        writer.close()
        return outcomes

    outcomes = asyncio.run(scenario())

    assert isinstance(outcomes[7], Problem) and outcomes[7].field == "colour"
    for request, outcome in zip(sent, outcomes, strict=True):
        if isinstance(outcome, Answer):
            features = feature_frame(pd.DataFrame(request), model.contract.numeric,
                                     model.contract.categorical)
            assert outcome.predictions == model.pipeline.predict(features).tolist()
    assert len(calls) <= 5 and sum(calls) == 39 * 3
    assert len(read_parts(LocalFiles(tmp_path), "m", TRAFFIC)) == 39 * 3
