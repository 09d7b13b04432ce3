"""Stopping the local SeaweedFS (infra/objectstore.py) kills it two seconds after SIGTERM
instead of waiting out its own 25 s shutdown: on a real server, everything written before
the stop, whole and in parts, reads back after a start on the same data, and the restarted
server takes writes; it writes no log files of its own in /tmp. And `ensure_bucket` (what
`up` calls once S3 is healthy) returns only once the bucket serves objects."""

import io
import os
import tempfile
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from network import free_s3_port

from infra.objectstore import ensure_bucket, s3_client, seaweedfs_service
from infra.secrets import generate
from infra.services import _alive_pid, _group_runs, start_services, stop_services

MiB = 1024 * 1024


def _read(client, key: str) -> bytes:
    return client.get_object(Bucket="kept", Key=key)["Body"].read()


def test_objects_written_before_a_stop_read_back_after_a_start(tmp_path):
    keys = generate()
    credentials = keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]
    service = seaweedfs_service(tmp_path, "127.0.0.1", free_s3_port(), keys["AWS_ACCESS_KEY_ID"],
                                keys["AWS_SECRET_ACCESS_KEY"])
    assert service.stop_grace_s < 15  # what this test is about: no 25 s wait, a kill

    def client():
        return s3_client(service.url, *credentials)

    written = {f"small/{i}": os.urandom(100 + 997 * i) for i in range(30)}
    written["parts"] = os.urandom(11 * MiB)  # three parts of 5 MiB at most
    try:
        start_services([service], tmp_path, timeout_s=120)
        assert ensure_bucket(service.url, "kept", *credentials) is True
        before = client()
        for key, body in written.items():
            if key == "parts":
                config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
                before.upload_fileobj(io.BytesIO(body), "kept", key, Config=config)
            else:
                before.put_object(Bucket="kept", Key=key, Body=body)
        pid = _alive_pid(tmp_path, service)
        # Its log is the service's log, not glog's files in the temporary folder.
        assert not list(Path(tempfile.gettempdir()).glob(f"weed.*.{pid}"))
        assert "volume" in (tmp_path / "logs" / "s3.log").read_text()

        stop_services([service], tmp_path)
        assert pid is not None and not _group_runs(pid)

        start_services([service], tmp_path, timeout_s=120)  # the same data and ports
        # What `up` does next: wait until an object written reads back. Without it, reads
        # failed here for seconds after the gateway said healthy, on a busy machine even with
        # the 1 s election.
        assert ensure_bucket(service.url, "kept", *credentials) is False
        after = client()
        assert {key: _read(after, key) for key in written} == written
        listed = after.list_objects_v2(Bucket="kept", Prefix="small/")["KeyCount"]
        assert listed == 30
        after.put_object(Bucket="kept", Key="after-restart", Body=b"new")
        assert _read(after, "after-restart") == b"new"
    finally:
        stop_services([service], tmp_path)
