"""The HTTP API: /predict, /feedback, /health, /model.

Routes are plain Starlette endpoints that read the body themselves (size limit first, then
orjson) instead of FastAPI body models; nothing malformed, too large or outside the
contract reaches the model.
"""

from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from monitoring.traffic import FEEDBACK, LABEL, TrafficWriter, hour_of
from serving.batching import Answer, Batcher, NoModel
from serving.model import ChampionWatcher
from serving.records import check_labels


@dataclass(frozen=True)
class Limits:
    max_records: int = 10_000
    max_body_bytes: int = 1 << 20


class Refused(Exception):
    def __init__(self, status: int, detail: str, **extra) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"detail": detail, **extra}


def json_response(content: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def create_app(watcher: ChampionWatcher, writer: TrafficWriter, batcher: Batcher,
               limits: Limits = Limits()) -> FastAPI:
    """The app; its lifespan starts the watcher, the writer and the batcher, and on
    shutdown answers what is queued, then writes every buffered record."""

    @asynccontextmanager
    async def lifespan(app):
        writer.start()
        watcher.start()
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            watcher.stop()
            writer.close()

    app = FastAPI(title="mlops serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    async def predict(request: Request) -> Response:
        try:
            payload = await _read_json(request, limits.max_body_bytes)
            records = _field(payload, "records", list, ("records",))
            if not records:
                raise Refused(422, "'records' must hold at least one record")
            if len(records) > limits.max_records:
                raise Refused(413, f"{len(records)} records in one request; at most "
                              f"{limits.max_records} (MLOPS_SERVE_MAX_RECORDS)")
            try:
                outcome = await batcher.predict(records)
            except NoModel as error:
                raise Refused(503, str(error)) from error
            except Exception as error:  # noqa: BLE001 - logged by the batcher; the client gets JSON
                raise Refused(500, f"prediction failed: {type(error).__name__}") from error
        except Refused as refused:
            return json_response(refused.body, refused.status)
        if not isinstance(outcome, Answer):
            return json_response({"detail": outcome.describe(), "record": outcome.record,
                                  "field": outcome.field}, 422)
        return json_response({"predictions": outcome.predictions,
                              "model_version": outcome.model_version,
                              "request_id": outcome.request_id})

    async def feedback(request: Request) -> Response:
        try:
            payload = await _read_json(request, limits.max_body_bytes)
            request_id = _field(payload, "request_id", str, ("request_id", "labels"))
            labels = _field(payload, "labels", list, ("request_id", "labels"))
            served = batcher.served.get(request_id)
            if served is None:
                raise Refused(404, f"unknown request id '{request_id}' (too old, or never answered "
                              "by this server)")
            if len(labels) != served.records:
                raise Refused(422, f"{len(labels)} labels for a request of {served.records} records")
            contract = batcher.contracts[served.model_version]
            problem = check_labels(labels, contract)
            if problem is not None:
                raise Refused(422, f"label {problem.record}: {problem.message}", label=problem.record)
        except Refused as refused:
            return json_response(refused.body, refused.status)
        received_at = datetime.now(UTC)
        n = len(labels)
        writer.add(FEEDBACK, hour_of(received_at), {
            "request_id": np.full(n, request_id, dtype=object),
            "record_index": np.arange(n),
            LABEL: (np.array([str(v) for v in labels], dtype=object)
                    if contract.task == "classification" else np.array(labels, dtype="float64")),
            "model_version": np.full(n, served.model_version, dtype=object),
            "served_hour": np.full(n, served.hour, dtype=object),
            "received_at": np.full(n, np.datetime64(received_at.replace(tzinfo=None), "us")),
        })
        return json_response({"request_id": request_id, "labels": len(labels)})

    async def health(request: Request) -> Response:
        model = watcher.current
        if model is None:
            return json_response({"status": "loading", "model": None, "model_version": None}, 503)
        return json_response({"status": "ok", "model": model.name, "model_version": model.version})

    async def model_info(request: Request) -> Response:
        model = watcher.current
        if model is None:
            return json_response({"detail": "no model is loaded yet"}, 503)
        return json_response({**model.describe(), "records_served": batcher.records_served,
                              "unseen_categories": dict(batcher.unseen_categories),
                              "traffic_rows_pending": writer.pending_rows})

    app.add_route("/predict", predict, methods=["POST"])
    app.add_route("/feedback", feedback, methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    app.add_route("/model", model_info, methods=["GET"])
    return app


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
