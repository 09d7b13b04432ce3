"""The HTTP API: /predict, /feedback, /health, /model, and its description /openapi.json, /docs.

Routes are plain Starlette endpoints that read the body themselves (size limit first, then
orjson) instead of FastAPI body models; nothing malformed, too large or outside the
contract reaches the model. /openapi.json is written from the data contract of the model in
service (serving/openapi.py), so it follows `champion` as the model does.

With a token, every route but /health and /docs needs `Authorization: Bearer <token>` first
of all. /openapi.json needs it too: it tells the column names, the categories seen in
training and each numeric column's training range, more than /model (which needs it) tells,
and a client team that is to call /predict has the token anyway. /docs stays open because
it holds nothing: its script fetches /openapi.json with the token typed into the page.
"""

import hmac
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from experiments.contract import DataContract
from monitoring.traffic import FEEDBACK, LABEL, BufferFull, TrafficWriter, hour_of
from serving.batching import Answer, Batcher, NoModel, Overloaded, Served
from serving.docs import DOCS_PAGE
from serving.model import ChampionWatcher
from serving.openapi import describe_api
from serving.overload import Overload, retry_after
from serving.records import Problem, check_labels


@dataclass(frozen=True)
class Limits:
    max_records: int = 10_000
    max_body_bytes: int = 1 << 20


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None, **extra) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers
        self.body = {"detail": detail, **extra}

    def response(self) -> Response:
        return json_response(self.body, self.status, self.headers)


def json_response(content: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json",
                    headers=headers)


def create_app(watcher: ChampionWatcher, writer: TrafficWriter, batcher: Batcher,
               limits: Limits = Limits(), token: str | None = None,
               overload: Overload | None = None) -> FastAPI:
    """The app; its lifespan starts the watcher, the writer and the batcher, and on
    shutdown answers what is queued, then writes every buffered record. With `token`,
    /predict, /feedback, /model and /openapi.json need it as a bearer token."""
    api = Api(watcher, writer, batcher, limits, token.encode() if token else None,
              overload or Overload())
    app = FastAPI(title="mlops serve", lifespan=api.lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_route("/predict", api.predict, methods=["POST"])
    app.add_route("/feedback", api.feedback, methods=["POST"])
    app.add_route("/health", api.health, methods=["GET"])
    app.add_route("/model", api.model_info, methods=["GET"])
    app.add_route("/openapi.json", api.openapi, methods=["GET"])
    app.add_route("/docs", api.docs, methods=["GET"])
    return app


@dataclass(frozen=True)
class Api:
    """The route handlers, over the parts they share."""

    watcher: ChampionWatcher
    writer: TrafficWriter
    batcher: Batcher
    limits: Limits
    token: bytes | None
    overload: Overload

    @asynccontextmanager
    async def lifespan(self, app):
        self.writer.start()
        self.watcher.start()
        await self.batcher.start()
        try:
            yield
        finally:
            await self.batcher.stop()
            self.watcher.stop()
            self.writer.close()

    async def predict(self, request: Request) -> Response:
        try:
            self._admit(request)
            with self._place():
                records, proba = await self._records(request)
                outcome = await self._answer(records, proba)
        except Refused as refused:
            return refused.response()
        if not isinstance(outcome, Answer):
            return json_response({"detail": outcome.describe(), "record": outcome.record,
                                  "field": outcome.field}, 422)
        self.overload.answered()
        answer = {"predictions": outcome.predictions, "model_version": outcome.model_version,
                  "request_id": outcome.request_id}
        if outcome.probabilities is not None:
            answer |= {"classes": outcome.classes, "probabilities": outcome.probabilities}
        return json_response(answer)

    async def feedback(self, request: Request) -> Response:
        try:
            self._admit(request)
            with self._place():
                request_id, labels, served, contract = await self._labels(request)
                # No await from the check in _labels to here: two feedbacks for one request
                # cannot both pass.
                received_at = datetime.now(UTC)
                self._keep(FEEDBACK, hour_of(received_at),
                           feedback_columns(request_id, labels, served, contract.task, received_at))
        except Refused as refused:
            return refused.response()
        self.batcher.label(request_id)
        return json_response({"request_id": request_id, "labels": len(labels)})

    async def health(self, request: Request) -> Response:
        model = self.watcher.current
        if model is None:
            return json_response({"status": "loading", "model": None, "model_version": None}, 503)
        return json_response({"status": "ok", "model": model.name, "model_version": model.version})

    async def model_info(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except Refused as refused:
            return refused.response()
        model = self.watcher.current
        if model is None:
            return json_response({"detail": "no model is loaded yet"}, 503)
        return json_response({**model.describe(), "records_served": self.batcher.records_served,
                              "unseen_categories": dict(self.batcher.unseen_categories),
                              "traffic_rows_pending": self.writer.pending_rows,
                              "traffic_failed_attempts": self.writer.failed_attempts,
                              "refused_overloaded": self.overload.refused,
                              **_shadow_info(self.batcher.shadow)})

    async def openapi(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except Refused as refused:
            return refused.response()
        model = self.watcher.current
        if model is None:
            return json_response({"detail": "no model is loaded yet; its data contract makes "
                                  "the description"}, 503)
        return json_response(describe_api(model.name, model.version, model.contract,
                                          self.limits.max_records, self.limits.max_body_bytes,
                                          self.token is not None))

    async def docs(self, request: Request) -> Response:
        return Response(DOCS_PAGE, media_type="text/html")

    def _authorize(self, request: Request) -> None:
        """401 unless the request carries the bearer token (when there is one)."""
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Starlette decodes headers as latin-1, so this gives back the bytes sent.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("latin-1"), self.token):
            raise Refused(401, "missing or wrong bearer token (Authorization: Bearer "
                          "<MLOPS_SERVE_TOKEN>)", {"WWW-Authenticate": "Bearer"})

    def _admit(self, request: Request) -> None:
        """A POST's checks before its body is read: the token, then a JSON content type."""
        self._authorize(request)
        declared = request.headers.get("content-type", "")
        if declared.partition(";")[0].strip().lower() != "application/json":
            shown = declared[:40] or "none"
            raise Refused(415, f"Content-Type must be application/json (got {shown})")

    @contextmanager
    def _place(self):
        """One of the MLOPS_SERVE_MAX_IN_FLIGHT places, for the whole request; 503 if none."""
        if not self.overload.enter():
            raise Refused(503, f"overloaded: {self.overload.in_flight} requests in progress (at "
                          f"most {self.overload.max_in_flight}, MLOPS_SERVE_MAX_IN_FLIGHT); retry "
                          "later", retry_after(1))
        try:
            yield
        finally:
            self.overload.leave()

    def _keep(self, kind: str, hour: str, columns: dict) -> None:
        try:
            self.writer.add(kind, hour, columns)
        except BufferFull as error:
            self.overload.refuse(str(error))
            raise Refused(503, f"{error}; retry later", retry_after(error.retry_after_s)) from error

    async def _records(self, request: Request) -> tuple[list, bool]:
        """The records of a /predict body, within the limits, and whether it asks for class
        probabilities (a classifier's only)."""
        payload = await _read_json(request, self.limits.max_body_bytes)
        records = _field(payload, "records", list, ("records", "proba"))
        proba = payload.get("proba", False)
        if not isinstance(proba, bool):
            raise Refused(422, "'proba' must be true or false")
        model = self.watcher.current
        if proba and model is not None and model.contract.task != "classification":
            raise Refused(422, f"'proba': {model.name} is a {model.contract.task} model; "
                          "probabilities are a classifier's")
        if not records:
            raise Refused(422, "'records' must hold at least one record")
        if len(records) > self.limits.max_records:
            raise Refused(413, f"{len(records)} records in one request; at most "
                          f"{self.limits.max_records} (MLOPS_SERVE_MAX_RECORDS)")
        return records, proba

    async def _answer(self, records: list, proba: bool) -> Answer | Problem:
        try:
            return await self.batcher.predict(records, proba)
        except NoModel as error:
            raise Refused(503, str(error)) from error
        except (Overloaded, BufferFull) as error:
            self.overload.refuse(str(error))
            detail = str(error) if isinstance(error, Overloaded) else f"{error}; retry later"
            raise Refused(503, detail, retry_after(error.retry_after_s)) from error
        except Exception as error:  # noqa: BLE001 - logged by the batcher; the client gets JSON
            raise Refused(500, f"prediction failed: {type(error).__name__}") from error

    async def _labels(self, request: Request) -> tuple[str, list, Served, DataContract]:
        """A /feedback body's request id and labels, checked against the request it answers."""
        payload = await _read_json(request, self.limits.max_body_bytes)
        request_id = _field(payload, "request_id", str, ("request_id", "labels"))
        labels = _field(payload, "labels", list, ("request_id", "labels"))
        if request_id in self.batcher.labelled:
            raise Refused(409, f"request '{request_id}' already has its labels; a request is "
                          "labelled once")
        served = self.batcher.served(request_id)
        if served is None:
            raise Refused(404, f"unknown request id '{request_id}' (not among the last "
                          "MLOPS_SERVE_FEEDBACK_IDS requests this server answered since it started)")
        if len(labels) != served.records:
            raise Refused(422, f"{len(labels)} labels for a request of {served.records} records")
        contract = self.batcher.contracts[served.model_version]
        problem = check_labels(labels, contract)
        if problem is not None:
            raise Refused(422, f"label {problem.record}: {problem.message}", label=problem.record)
        return request_id, labels, served, contract


def _shadow_info(shadow) -> dict:
    """The challenger scored beside the champion, and how many records it scored or missed."""
    if shadow is None:
        return {"challenger_version": None}
    return {"challenger_version": shadow.version, "shadow_scored": shadow.scored,
            "shadow_skipped": shadow.skipped, "shadow_failed": shadow.failed}


def feedback_columns(request_id: str, labels: list, served: Served, task: str,
                     received_at: datetime) -> dict:
    """The feedback rows to store: class labels as text, regression targets as numbers."""
    n = len(labels)
    return {
        "request_id": np.full(n, request_id, dtype=object),
        "record_index": np.arange(n),
        LABEL: (np.array([str(v) for v in labels], dtype=object)
                if task == "classification" else np.array(labels, dtype="float64")),
        "model_version": np.full(n, served.model_version, dtype=object),
        "served_hour": np.full(n, served.hour, dtype=object),
        "received_at": np.full(n, np.datetime64(received_at.replace(tzinfo=None), "us")),
    }


async def _read_json(request: Request, limit: int):
    """The parsed body; 413 as soon as it is known to exceed `limit` bytes, 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "bad Content-Length header")
        if int(declared) > limit:
            raise Refused(413, f"body of {declared} bytes; at most {limit} "
                          "(MLOPS_SERVE_MAX_BODY_BYTES)")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Refused(413, f"body over {limit} bytes (MLOPS_SERVE_MAX_BODY_BYTES)")
    except ClientDisconnect as error:
        raise Refused(400, "the client went away") from error
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Refused(400, f"malformed JSON: {error}") from error


def _field(payload, name: str, kind: type, allowed: tuple[str, ...]):
    if not isinstance(payload, dict):
        raise Refused(422, f"expected a JSON object with {_keys(allowed)}")
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise Refused(422, f"unknown field(s) {', '.join(unknown)}; expected {_keys(allowed)}")
    if not isinstance(payload.get(name), kind):
        raise Refused(422, f"'{name}' must be a {'list' if kind is list else 'string'}")
    return payload[name]


def _keys(names: tuple[str, ...]) -> str:
    return " and ".join(f"'{n}'" for n in names)
