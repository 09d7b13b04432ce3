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


JSON = {"content-type": "application/json"}


def records(n: int, seed: int = 9) -> list[dict]:
    frame = binary_frame(n=n, seed=seed).drop(columns="label")
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture
def serve(tmp_path, model):
    """A started app over `model` (or none) with a writer into tmp_path; closes on exit."""
    opened = []

    def start(current=model, limits=None, token=None, writer=None, overload=None):
        limits = limits or Limits(max_records=50, max_body_bytes=20_000)
        writer = writer or TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600)
        holder = Holder(current)
        client = TestClient(create_app(holder, writer, Batcher(holder, writer), limits, token, overload))
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
     (b'{"records": [{}], "proba": "yes"}', 422, "'proba' must be true or false"),
     (b'{"records": [' + b"{}," * 50 + b"{}]}", 413, "51 records in one request; at most 50"),
     (b'{"records": [{"x1": "' + b"a" * 30_000 + b'"}]}', 413, "at most 20000")],
)
def test_bad_bodies_never_reach_the_model(serve, body, status, fragment):
    client, _ = serve()

    answer = client.post("/predict", content=body, headers=JSON)

    assert answer.status_code == status
    assert fragment in answer.json()["detail"]
    assert client.get("/model").json()["records_served"] == 0


def test_a_body_without_length_is_cut_off_at_the_limit(serve):
    client, _ = serve()

    def chunks():
        yield b'{"records": [{"x1": "'
        for _ in range(100):
            yield b"a" * 1000

    answer = client.post("/predict", content=chunks(), headers=JSON)

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


def test_only_the_requests_that_ask_get_probabilities(tmp_path, model):
    """Given requests with and without `proba` in one batch, then each that asked gets the
    classes and its own records' predict_proba rows; the others get predictions only, the
    same as when nobody asks."""
    sent = [records(3, seed=i) for i in range(6)]
    asks = [i % 2 == 0 for i in range(6)]

    async def scenario():
        writer = TrafficWriter(LocalFiles(tmp_path), "m")
        batcher = Batcher(Holder(model), writer, wait_s=0.005)
        await batcher.start()
        outcomes = await asyncio.gather(*(batcher.predict(r, a) for r, a in zip(sent, asks, strict=True)))
        await batcher.stop()
        writer.close()
        return outcomes

    outcomes = asyncio.run(scenario())

    for request, asked, outcome in zip(sent, asks, outcomes, strict=True):
        features = feature_frame(pd.DataFrame(request), model.contract.numeric, model.contract.categorical)
        assert outcome.predictions == model.pipeline.predict(features).tolist()
        if asked:
            assert outcome.classes == model.pipeline.classes_.tolist()
            assert outcome.probabilities == model.pipeline.predict_proba(features).tolist()
        else:
            assert outcome.classes is None and outcome.probabilities is None


def test_probabilities_of_a_regression_model_are_refused(serve):
    """Given a regression model, then `"proba": true` is a 422 that says why."""
    frame = binary_frame(n=200, seed=5).drop(columns="label")
    contract = infer_contract(frame, "x1", "regression")
    pipeline = build_pipeline("regression", "random_forest", {"n_estimators": 5},
                              contract.numeric, contract.categorical, seed=0)
    pipeline.fit(feature_frame(frame, contract.numeric, contract.categorical), frame["x1"])
    client, _ = serve(ServedModel("r", "1", "run-2", contract, pipeline, datetime.now(UTC)))
    sent = [{k: v for k, v in row.items() if k != "x1"} for row in records(2)]

    answer = client.post("/predict", json={"records": sent, "proba": True})

    assert answer.status_code == 422
    assert "r is a regression model; probabilities are a classifier's" in answer.json()["detail"]
    assert client.post("/predict", json={"records": sent}).status_code == 200


def test_with_a_token_every_route_but_health_needs_it(serve):
    """Given a token, a request without it or with another gets 401 with WWW-Authenticate:
    Bearer, before its body is looked at; /health stays open; the right token is answered."""
    client, _ = serve(token="s3cret-token")
    body = {"records": records(2)}

    missing = client.post("/predict", json=body)
    wrong = client.post("/predict", json=body, headers={"Authorization": "Bearer s3cret-tokeN"})
    basic = client.post("/predict", json=body, headers={"Authorization": "Basic s3cret-token"})
    unparsed = client.post("/feedback", content=b"not json", headers={"Authorization": "Bearer x"})
    right = client.post("/predict", json=body, headers={"Authorization": "Bearer s3cret-token"})

    for refused in (missing, wrong, basic, unparsed, client.get("/model")):
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "s3cret" not in refused.text
    assert right.status_code == 200 and client.get("/health").status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(serve, content_type):
    client, _ = serve()
    headers = {"content-type": content_type} if content_type else {}

    answer = client.post("/predict", content=b'{"records": []}', headers=headers)

    assert answer.status_code == 415
    assert answer.json()["detail"].startswith("Content-Type must be application/json")
    charset = client.post("/predict", json={"records": records(1)},
                          headers={"content-type": "application/json; charset=utf-8"})
    assert charset.status_code == 200


def test_a_request_is_labelled_once(serve, tmp_path):
    """Given labels accepted for a request, a second feedback for it is 409 and nothing more is
    stored; a refused (422) feedback does not use up the request's one labelling."""
    client, _ = serve()
    request_id = client.post("/predict", json={"records": records(2)}).json()["request_id"]

    bad = client.post("/feedback", json={"request_id": request_id, "labels": ["yes", "maybe"]})
    first = client.post("/feedback", json={"request_id": request_id, "labels": ["yes", "no"]})
    second = client.post("/feedback", json={"request_id": request_id, "labels": ["no", "no"]})
    client.__exit__(None, None, None)

    assert (bad.status_code, first.status_code, second.status_code) == (422, 200, 409)
    assert "already has its labels" in second.json()["detail"]
    stored = read_parts(LocalFiles(tmp_path), "m", FEEDBACK)
    assert stored["label"].tolist() == ["yes", "no"]


def test_beyond_the_queue_bound_requests_get_503_with_retry_after(tmp_path, model):
    """Given a batcher that may hold 10 queued records and a model that is busy, requests
    beyond the bound are refused at once with Overloaded; the admitted ones are answered."""
    from serving.batching import Overloaded

    async def scenario():
        writer = TrafficWriter(LocalFiles(tmp_path), "m")
        batcher = Batcher(Holder(model), writer, wait_s=0.05, max_queued_records=10)
        await batcher.start()
        outcomes = await asyncio.gather(*(batcher.predict(records(4, seed=i)) for i in range(6)),
                                        return_exceptions=True)
        await batcher.stop()
        writer.close()
        return outcomes

    outcomes = asyncio.run(scenario())

    assert [type(o).__name__ for o in outcomes] == ["Answer"] * 2 + ["Overloaded"] * 4
    assert isinstance(outcomes[-1], Overloaded) and "MLOPS_SERVE_MAX_QUEUED_RECORDS" in str(outcomes[-1])
    assert len(read_parts(LocalFiles(tmp_path), "m", TRAFFIC)) == 8


def test_a_full_traffic_buffer_refuses_rather_than_answer_unrecorded(serve, tmp_path):
    """Given a writer that may keep 5 unwritten rows, a request that would take it beyond is
    503 with Retry-After and is not recorded; feedback too; after a flush, both work again."""
    writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600, max_rows=5)
    client, _ = serve(writer=writer)

    first = client.post("/predict", json={"records": records(4)})
    refused = client.post("/predict", json={"records": records(2)})
    feedback = {"request_id": first.json()["request_id"], "labels": ["yes"] * 4}
    refused_feedback = client.post("/feedback", json=feedback)
    writer.flush()
    labelled = client.post("/feedback", json=feedback)
    again = client.post("/predict", json={"records": records(1)})

    assert (first.status_code, refused.status_code, refused_feedback.status_code) == (200, 503, 503)
    assert int(refused.headers["retry-after"]) >= 1 and "MLOPS_TRAFFIC_MAX_ROWS" in refused.text
    assert (again.status_code, labelled.status_code) == (200, 200)
    client.__exit__(None, None, None)
    stored = read_parts(LocalFiles(tmp_path), "m", TRAFFIC)
    assert sorted(stored.groupby("request_id").size()) == [1, 4]
    assert len(read_parts(LocalFiles(tmp_path), "m", FEEDBACK)) == 4


@pytest.mark.parametrize(
    ("profile", "token", "expected"),
    [("local", "", None), ("local", "t0ken", "t0ken"), ("full", "t0ken", "t0ken"), ("full", "", "error")],
)
def test_the_token_is_required_in_the_full_profile_only(profile, token, expected):
    from infra.errors import PlatformError
    from infra.settings import Settings
    from serving.runner import serve_token

    settings = Settings(profile=profile, serve_token=token, _env_file=None)

    if expected == "error":
        with pytest.raises(PlatformError, match="MLOPS_SERVE_TOKEN is not set"):
            serve_token(settings)
    else:
        assert serve_token(settings) == expected


def test_without_a_free_place_a_request_is_503_before_its_body_is_read(serve):
    """Given no place for a request in flight, /predict and /feedback are 503 with Retry-After
    naming the bound; /health still answers; the refusals are counted."""
    from serving.overload import Overload

    client, _ = serve(overload=Overload(max_in_flight=0))

    refused = client.post("/predict", json={"records": records(1)})
    feedback = client.post("/feedback", content=b"not even json", headers=JSON)

    for answer in (refused, feedback):
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "MLOPS_SERVE_MAX_IN_FLIGHT" in answer.json()["detail"]
    assert client.get("/health").status_code == 200
    assert client.get("/model").json()["refused_overloaded"] == 2


def test_the_description_follows_the_model_in_service(serve, model):
    """Given the served model, /openapi.json types its record fields from its contract; when
    the model in service changes to one with another contract, so does the description."""
    from dataclasses import replace

    client, holder = serve()
    first = client.get("/openapi.json")
    narrower = replace(model.contract, columns=tuple(
        replace(c, categories=("red",)) if c.name == "colour" else c for c in model.contract.columns))
    holder.current = replace(model, version="4", contract=narrower)
    second = client.get("/openapi.json")

    assert first.status_code == second.status_code == 200
    fields = [d.json()["components"]["schemas"]["Record"]["properties"]["colour"]["enum"]
              for d in (first, second)]
    assert fields == [["blue", "green", "red", None], ["red", None]]
    assert (first.json()["info"]["version"], second.json()["info"]["version"]) == ("3", "4")


def test_the_description_is_503_until_a_model_is_loaded(serve):
    client, _ = serve(current=None)

    assert client.get("/openapi.json").status_code == 503
    assert client.get("/docs").status_code == 200


def test_the_described_example_is_answered(serve):
    """The example request in the description is one the server answers."""
    client, _ = serve()
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]

    answer = client.post("/predict", json=example)

    assert answer.status_code == 200, answer.text


def test_with_a_token_the_description_needs_it_and_docs_do_not(serve):
    """Given a token, /openapi.json (column names, categories, ranges) is 401 without it and
    declares the bearer scheme with it; /docs, which holds no contract data, answers anyone."""
    client, _ = serve(token="s3cret-token")

    refused = client.get("/openapi.json")
    described = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token"})
    docs = client.get("/docs")

    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert described.status_code == 200
    document = described.json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "401" in document["paths"]["/predict"]["post"]["responses"]
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "colour" not in docs.text


def test_remembered_requests_leave_nothing_for_the_garbage_collector_to_scan(tmp_path, model):
    """Given 3,000 answered requests remembered for feedback, then the collector tracks no
    more objects than before them (a tracked object per request made every full collection
    under load a pause of tens of milliseconds: the p99's tail); feedback still finds them."""
    import gc

    async def scenario():
        writer = TrafficWriter(LocalFiles(tmp_path), "m", flush_s=3600)
        batcher = Batcher(Holder(model), writer, wait_s=0)
        await batcher.start()
        first = await batcher.predict(records(2))
        writer.flush()  # its buffer holds each batch's rows until written
        gc.collect()
        before = len(gc.get_objects())
        for i in range(3000):  # only the last answer is kept here: the batcher keeps the rest
            last = await batcher.predict(records(2, seed=i))
        writer.flush()
        gc.collect()
        after = len(gc.get_objects())
        await batcher.stop()
        writer.close()
        return batcher, first, last, after - before

    batcher, first, last, growth = asyncio.run(scenario())

    assert growth < 300, f"{growth} more objects tracked after 3,000 remembered requests"
    served = batcher.served(last.request_id)
    assert (served.records, served.model_version, served.hour) == (2, "3", last.hour)
    assert batcher.served(first.request_id) is not None
    batcher.label(first.request_id)
    assert batcher.served(first.request_id) is None
