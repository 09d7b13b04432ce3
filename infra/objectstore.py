"""S3 for the full profile: a local SeaweedFS server when no endpoint is configured, and
the platform's bucket, created when missing. Access needs keys: SeaweedFS knows the platform's
admin identity and any restricted ones given (the serving process's, which can only write
under the traffic prefix), so anonymous requests are refused."""

import json
import time
from collections.abc import Sequence
from pathlib import Path

from infra.errors import PlatformError
from infra.services import Service, venv_bin

# SeaweedFS runs a master, a volume server and a filer behind its S3 gateway; they take
# the three ports above the S3 port, and their gRPC ports are those plus 10000.
_INTERNAL = ("master", "volume", "filer")


def writer_identity(name: str, access_key: str, secret_key: str, bucket: str, prefix: str) -> dict:
    """An identity that can only put objects under s3://bucket/prefix/ (no read, no list).
    SeaweedFS grants `Action:bucket/key-prefix*` to keys that start with that prefix."""
    return {
        "name": name,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": [f"Write:{bucket}/{prefix.strip('/')}/*"],
    }


def seaweedfs_service(home: Path, host: str, port: int, access_key: str, secret_key: str,
                      restricted: Sequence[dict] = ()) -> Service:
    folder = home / "s3"
    identities = folder / "identities.json"
    known = json.dumps({"identities": [{
        "name": "mlops",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }, *restricted]})
    internal = []
    for offset, role in enumerate(_INTERNAL, start=1):
        internal += [f"-{role}.port={port + offset}", f"-{role}.port.grpc={port + offset + 10000}"]
    url = f"http://{host}:{port}"
    return Service(
        name="s3",
        argv=(
            venv_bin("weed"), "server",
            f"-dir={folder / 'data'}", f"-ip={host}", f"-ip.bind={host}",
            *internal, "-filer",
            "-s3", f"-s3.port={port}", f"-s3.port.grpc={port + 10000}",
            f"-s3.config={identities}",
            # Catalog servers we do not use; left on they take fixed ports 8181 and 9101.
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
            "-master.volumeSizeLimitMB=256", "-volume.max=0",
        ),
        host=host,
        port=port,
        url=url,
        health_url=f"{url}/healthz",
        port_variable="MLOPS_S3_PORT",
        marker="weed",
        folders=(folder / "data",),
        files=((identities, known),),
    )


def s3_client(endpoint: str, access_key: str, secret_key: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name="us-east-1",
        config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10),
    )


def ensure_bucket(endpoint: str, bucket: str, access_key: str, secret_key: str,
                  timeout_s: float = 60.0) -> bool:
    """Create the bucket unless it exists; True when created. Waits for a starting server."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(endpoint, access_key, secret_key)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            return False
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                try:
                    client.create_bucket(Bucket=bucket)
                    return True
                except ClientError as create_error:
                    last = create_error
            elif code in ("403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
                raise PlatformError(
                    f"S3 at {endpoint} refused the platform's keys ({code}); check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from error
            else:
                last = error
        except BotoCoreError as error:
            last = error
        if time.monotonic() > deadline:
            raise PlatformError(f"S3 at {endpoint} did not accept bucket '{bucket}': {last}")
        time.sleep(0.5)
