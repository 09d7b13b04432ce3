"""Refusing work the server cannot hold: 503 with Retry-After, logged once per episode.

Four bounds keep what a flood can make the server hold: requests being read, queued or
predicted (MLOPS_SERVE_MAX_IN_FLIGHT; beyond it a request is refused before its body is read),
records waiting to be predicted (MLOPS_SERVE_MAX_QUEUED_RECORDS), rows waiting for the traffic
store (MLOPS_TRAFFIC_MAX_ROWS), and, as a backstop, open connections (uvicorn's
`limit_concurrency`, MLOPS_SERVE_MAX_CONNECTIONS: beyond it every request is refused and its
connection closed). Each answers 503 with Retry-After.
"""

import logging
import math

import orjson

log = logging.getLogger(__name__)

UVICORN_REFUSAL = "Exceeded concurrency limit."


class Overload:
    """Requests in flight against their bound, and refused ones: logs when refusing starts
    and when a request is answered again, never once per refused request. Used from the
    event loop only."""

    def __init__(self, max_in_flight: int = 64) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.refused = 0
        self._in_episode = 0

    def enter(self) -> bool:
        """Take a place for a request; False (and counted as refused) when none is free."""
        if self.in_flight >= self.max_in_flight:
            self.refuse(f"{self.in_flight} requests in progress (MLOPS_SERVE_MAX_IN_FLIGHT)")
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1

    def refuse(self, reason: str) -> None:
        if not self._in_episode:
            log.warning("overloaded, answering 503 with Retry-After: %s", reason)
        self._in_episode += 1
        self.refused += 1

    def answered(self) -> None:
        if self._in_episode:
            log.warning("no longer overloaded: %d requests were refused", self._in_episode)
            self._in_episode = 0


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def connection_refusal(overload: Overload, limit: int, max_body_bytes: int):
    """The ASGI app uvicorn runs for a request beyond `limit_concurrency`: its own says 503
    with no Retry-After (and logs a line per request).

    The body (up to `max_body_bytes`) is read and dropped before the answer: uvicorn closes
    the connection after it, and closing a socket with unread data sends a reset, which the
    client may see before the 503.
    """
    body = orjson.dumps({"detail": f"overloaded: more than {limit} connections or requests at "
                                   "once (MLOPS_SERVE_MAX_CONNECTIONS); retry later"})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", b"1"), (b"connection", b"close")]

    async def refuse(scope, receive, send) -> None:
        overload.refuse(f"more than {limit} connections or requests at once")
        drained = 0
        while drained <= max_body_bytes:
            message = await receive()
            drained += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return refuse


class DropUvicornRefusals(logging.Filter):
    """uvicorn logs every request it refuses; Overload logs the episode instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != UVICORN_REFUSAL
