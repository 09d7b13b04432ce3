"""`mlops serve` under overload and with a failing traffic store, as a real process on the
real local platform: bounded memory, 503 with Retry-After, every answered request recorded,
and a store outage ridden out without losing what was answered."""

import asyncio
import signal
import socket
import textwrap
import threading
import time

import httpx
import orjson
import pytest
from polling import wait_for
from serve_process import Server, as_records, user_environment
from synthetic import binary_frame

from monitoring.traffic import TRAFFIC, LocalFiles, read_parts

pytestmark = pytest.mark.integration

NAME = "it-serve-guard"
MB = 1 << 20


@pytest.fixture(scope="module")
def trained(platform, tmp_path_factory):
    """A champion for NAME: one quick logistic regression."""
    from flows.train import TrainParameters, train

    folder = tmp_path_factory.mktemp("serving-guard")
    binary_frame(n=300, seed=41).to_csv(folder / "train.csv", index=False)
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {NAME}
        task: classification
        data: {{source: {folder / 'train.csv'}, target: label}}
        tuning: {{trials: 1, cv_folds: 3, models: [logistic_regression]}}
        profile: false  # the data profile is test_training's (8 CPU-s a training)
        """))
    train(TrainParameters(experiment=str(spec)))
    return folder


class Flood:
    """`clients` concurrent clients, each sending `requests` POSTs of one body in a row;
    what each got back, by status, and the request ids of the answered ones."""

    def __init__(self, url: str, body: bytes, clients: int, requests: int):
        self.url, self.body, self.clients, self.requests = url, body, clients, requests
        self.statuses: dict[int, int] = {}
        self.answered: dict[str, int] = {}
        self.retry_after: set[str | None] = set()
        self.transport_errors: list[str] = []

    def run(self) -> None:
        asyncio.run(self._all())

    async def _all(self) -> None:
        # An idle connection is dropped by the client after 1 s, well before the server's
        # keep-alive (uvicorn's 5 s) closes it. With both at 5 s (httpx's default), a POST
        # sent on a connection the server was closing just then failed with ReadError: an
        # ordinary HTTP race, not a refusal of the server's.
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients,
                              keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, trust_env=False,
                                     limits=limits) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.clients)))

    async def _client(self, http: httpx.AsyncClient) -> None:
        for _ in range(self.requests):
            try:
                answer = await http.post("/predict", content=self.body,
                                         headers={"content-type": "application/json"})
            except httpx.TransportError as error:
                self.transport_errors.append(repr(error))
                continue
            self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
            if answer.status_code == 200:
                body = answer.json()
                self.answered[body["request_id"]] = len(body["predictions"])
            elif answer.status_code == 503:
                self.retry_after.add(answer.headers.get("retry-after"))


def test_a_flood_gets_503s_memory_stays_bounded_and_every_answer_is_recorded(platform, trained,
                                                                              tmp_path):
    """Given a server bounded at 8 requests in flight and 8,000 queued records, when 200
    clients send 3 requests of 4,000 records each at once (about 200 MB of JSON), then some
    are answered and the others get 503 with Retry-After, the server's resident memory grows
    by less than 200 MB (unbounded, it grew by about 400 MB), it still answers afterwards,
    and the store holds exactly the answered requests."""
    traffic = tmp_path / "traffic"
    server = Server(NAME, user_environment(platform.home, {
        "MLOPS_TRAFFIC_URI": str(traffic), "MLOPS_TRAFFIC_FLUSH_S": "1",
        "MLOPS_SERVE_MAX_IN_FLIGHT": "8", "MLOPS_SERVE_MAX_QUEUED_RECORDS": "8000"}), trained)
    records = as_records(binary_frame(n=4000, seed=42))
    body = orjson.dumps({"records": records})
    for _ in range(3):  # the first answers load what later ones use: measure from there
        assert server.client.post("/predict", content=body,
                                  headers={"content-type": "application/json"}).status_code == 200
    start = server.rss_bytes()
    peak = [start]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], server.rss_bytes())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    flood = Flood(server.url, body, clients=200, requests=3)
    try:
        flood.run()
    finally:
        sampling.set()
        sampler.join()
    after = server.predict(records[:5])
    log = server.log.read_text()
    code = server.stop()

    print(f"flood: {flood.statuses}, transport errors {len(flood.transport_errors)}, RSS start "
          f"{start / MB:.0f} MB, peak {peak[0] / MB:.0f} MB")
    assert peak[0] - start < 200 * MB, f"RSS grew from {start / MB:.0f} to {peak[0] / MB:.0f} MB"
    assert set(flood.statuses) == {200, 503}, (flood.statuses, flood.transport_errors[:3])
    assert flood.transport_errors == []
    assert flood.retry_after == {"1"}
    assert after.status_code == 200 and code in (0, -signal.SIGTERM)
    assert log.count("overloaded, answering 503") < flood.statuses[503]  # per episode, not per request
    stored = read_parts(LocalFiles(traffic), NAME, TRAFFIC)
    answered = {**flood.answered, after.json()["request_id"]: 5}
    warm_up = set(stored["request_id"]) - set(answered)
    assert len(warm_up) == 3
    assert stored[~stored["request_id"].isin(warm_up)].groupby("request_id").size().to_dict() == answered


def test_beyond_the_connection_bound_every_request_is_503_until_connections_close(
        platform, trained, tmp_path):
    """Given a server bounded at 8 connections and 10 idle connections open to it, a request
    gets 503 with Retry-After and its connection closed; once they close, it is answered."""
    server = Server(NAME, user_environment(platform.home, {
        "MLOPS_TRAFFIC_URI": str(tmp_path / "traffic"), "MLOPS_SERVE_MAX_CONNECTIONS": "8"}), trained)
    sent = as_records(binary_frame(n=5, seed=44))
    idle = [socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
            for _ in range(10)]
    try:
        refused = httpx.post(f"{server.url}/predict", json={"records": sent}, trust_env=False)
    finally:
        for sock in idle:
            sock.close()
    try:
        assert wait_for(lambda: server.predict(sent).status_code == 200, timeout_s=30, interval_s=0.2)
    finally:
        server.stop()
    log = server.log.read_text()

    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert "MLOPS_SERVE_MAX_CONNECTIONS" in refused.json()["detail"]
    assert log.count("overloaded, answering 503") == 1 and "no longer overloaded" in log
    assert "Exceeded concurrency limit" not in log  # uvicorn's line per refused request


def test_an_idle_connection_is_kept_open_longer_than_clients_keep_theirs(platform, trained,
                                                                         tmp_path):
    """Given a server on its default settings, a connection idle for 6 s (past httpx's 5 s
    and uvicorn's own default of 5 s) still takes the next request: a client does not send a
    request on a connection the server is closing just then (with both at 5 s the flood's
    client met that race as ReadError)."""
    server = Server(NAME, user_environment(platform.home, {
        "MLOPS_TRAFFIC_URI": str(tmp_path / "traffic")}), trained)
    request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])),
                                      timeout=30) as sock:
            sock.sendall(request)
            first = read_response(sock)
            time.sleep(6)
            sock.sendall(request)
            second = read_response(sock)
    finally:
        server.stop()

    assert first.startswith(b"HTTP/1.1 200"), first
    assert second.startswith(b"HTTP/1.1 200"), second  # b"" when the server had closed it


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, whole; what came before the connection
    closed otherwise."""
    data = b""
    while b"\r\n\r\n" not in data:
        if not (chunk := sock.recv(65536)):
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_failing_store_is_ridden_out_without_losing_an_answered_request(platform, trained,
                                                                         tmp_path):
    """Given a running server whose traffic folder becomes unwritable (a file where its model's
    folder goes), then the writer backs off and logs the failure once, requests are answered
    until its bounded buffer is full and refused with 503 after; when the folder is writable
    again, the buffered records are written, the log says so once, and requests are answered
    again. The store then holds exactly the answered requests."""
    traffic = tmp_path / "traffic"
    traffic.mkdir()
    (traffic / NAME).write_text("in the way")
    server = Server(NAME, user_environment(platform.home, {
        "MLOPS_TRAFFIC_URI": str(traffic), "MLOPS_TRAFFIC_FLUSH_S": "0.2",
        "MLOPS_TRAFFIC_BACKOFF_MAX_S": "1", "MLOPS_TRAFFIC_MAX_ROWS": "300"}), trained)
    sent = as_records(binary_frame(n=50, seed=43))
    answered: dict[str, int] = {}
    try:
        statuses = []
        for _ in range(10):
            answer = server.predict(sent)
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                answered[answer.json()["request_id"]] = 50
            else:
                refused = answer
        assert wait_for(lambda: writer_state(server)["traffic_failed_attempts"] >= 3,
                        timeout_s=60, interval_s=0.2)
        (traffic / NAME).unlink()
        assert wait_for(lambda: writer_state(server)["traffic_rows_pending"] == 0,
                        timeout_s=60, interval_s=0.2), server.log.read_text()[-2000:]
        recovered = server.predict(sent)
        answered[recovered.json()["request_id"]] = 50
    finally:
        server.stop()
    log = server.log.read_text()

    assert statuses == [200] * 6 + [503] * 4
    assert refused.headers["retry-after"].isdigit() and "MLOPS_TRAFFIC_MAX_ROWS" in refused.text
    assert recovered.status_code == 200
    assert log.count("writing live traffic failed") == 1, log[-3000:]
    assert log.count("live traffic written again") == 1, log[-3000:]
    stored = read_parts(LocalFiles(traffic), NAME, TRAFFIC)
    assert stored.groupby("request_id").size().to_dict() == answered


def writer_state(server: Server) -> dict:
    return server.client.get("/model").json()
