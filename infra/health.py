"""A health endpoint that can change nothing: `GET /health` answers 200 while a check passes
and 503 otherwise; any other path gets 404 and any other method 501.

It stands in for Prefect's runner web server, whose `/shutdown` (and, when enabled, run
endpoints) anyone who can reach the port could call.
"""

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTH_PATH = "/health"


def serve_health(host: str, port: int, check: Callable[[], bool]) -> ThreadingHTTPServer:
    """Answer health checks on host:port from a daemon thread; `shutdown()` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            if self.path != HEALTH_PATH:
                self._answer(404, "not found")
            elif check():
                self._answer(200, "OK")
            else:
                self._answer(503, "unresponsive")

        def _answer(self, status: int, message: str) -> None:
            body = json.dumps({"message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's signature
            pass  # a health check every few seconds would fill the service's log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
