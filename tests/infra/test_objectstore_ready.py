"""`ensure_bucket` waits until the bucket serves objects, not only until the gateway answers;
refused keys end it at once. A stand-in client (tests/infra/test_objectstore_stop.py runs it
against a real SeaweedFS)."""

import pytest
from botocore.exceptions import ClientError

from infra import objectstore
from infra.errors import PlatformError


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class StartingServer:
    """A bucket that exists, and objects that fail `failures` times before they work."""

    def __init__(self, failures: int = 0, refuse: bool = False):
        self.failures, self.refuse, self.stored = failures, refuse, {}

    def head_bucket(self, Bucket):
        return {}

    def put_object(self, Bucket, Key, Body):
        if self.refuse:
            raise _error("AccessDenied", "PutObject")
        self.stored[Key] = Body

    def get_object(self, Bucket, Key):
        if self.failures:
            self.failures -= 1
            raise _error("InternalError", "GetObject")
        body = self.stored[Key]
        return {"Body": type("Body", (), {"read": lambda self: body})()}


def test_it_returns_once_an_object_reads_back(monkeypatch):
    server = StartingServer(failures=2)
    monkeypatch.setattr(objectstore, "s3_client", lambda *_: server)
    monkeypatch.setattr(objectstore.time, "sleep", lambda _: None)

    assert objectstore.ensure_bucket("http://s3", "mlops", "key", "secret") is False
    assert server.failures == 0 and server.stored == {objectstore.READY_KEY: b"ok"}


def test_a_server_that_never_serves_objects_is_one_line_after_the_timeout(monkeypatch):
    monkeypatch.setattr(objectstore, "s3_client", lambda *_: StartingServer(failures=10**9))
    monkeypatch.setattr(objectstore.time, "sleep", lambda _: None)

    with pytest.raises(PlatformError, match=r"did not serve bucket 'mlops'.*InternalError"):
        objectstore.ensure_bucket("http://s3", "mlops", "key", "secret", timeout_s=0.05)


def test_refused_keys_end_it_at_once(monkeypatch):
    monkeypatch.setattr(objectstore, "s3_client", lambda *_: StartingServer(refuse=True))

    with pytest.raises(PlatformError, match="refused the platform's keys"):
        objectstore.ensure_bucket("http://s3", "mlops", "key", "secret", timeout_s=3600)
