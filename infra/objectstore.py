"""S3 for the full profile: a local SeaweedFS server when no endpoint is configured, and
the platform's bucket, created when missing. Access needs keys: SeaweedFS knows the platform's
admin identity and any restricted ones given (the serving process's, which can only write
under the traffic prefix), so anonymous requests are refused.

Behind the gateway, SeaweedFS's own servers would take any request: the master hands out
file ids with write tokens, the volume server and the filer read and write files. So every
one of their ports (HTTP and gRPC) asks for a client certificate only SeaweedFS holds, made
afresh at each start, and the volume server and filer also want a signed token per read and
write. They listen on loopback only, whatever MLOPS_HOST says; only the gateway follows it.
"""

import json
import secrets
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from infra.errors import PlatformError
from infra.services import Service, venv_bin, write_private

# SeaweedFS runs a master, a volume server and a filer behind its S3 gateway; they take
# the three ports above the S3 port, and their gRPC ports are those plus 10000.
_INTERNAL = ("master", "volume", "filer")
_LOOPBACK = "127.0.0.1"
# The servers whose gRPC port asks for the certificate, and the client side that shows it.
_GRPC = ("master", "volume", "filer", "s3", "client")
# Signed-token keys: volume server writes and reads (tokens from the master), filer writes
# and reads (tokens from the S3 gateway).
_JWT = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")


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
            # security.toml is read from here first (write_security); logs to the service's only.
            venv_bin("weed"), "-logtostderr=true", f"-config_dir={folder}", "server",
            f"-dir={folder / 'data'}", f"-ip={_LOOPBACK}", f"-ip.bind={_LOOPBACK}",
            *internal, "-filer",
            "-s3", f"-s3.port={port}", f"-s3.port.grpc={port + 10000}", f"-s3.ip.bind={host}",
            f"-s3.config={identities}",
            # Catalog servers we do not use; left on they take fixed ports 8181 and 9101.
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
            "-master.volumeSizeLimitMB=256", "-volume.max=0",
            # The filer's and gateway's unix sockets (plain HTTP) default to /tmp: put them in
            # the working directory, which only its owner can enter. Relative, so that a long
            # MLOPS_HOME cannot exceed a socket path's 107 bytes.
            "-filer.localSocket=filer.sock", "-s3.localSocket=s3.sock",
            "-master.telemetry=false",
            # One master: no peer to wait for. Raft's default 10 s made every restart on
            # existing data wait 12-19 s before the master led, and reads failed for seconds
            # after the gateway said healthy.
            "-master.electionTimeout=1s",
        ),
        host=host,
        port=port,
        url=url,
        health_url=f"{url}/healthz",
        port_variable="MLOPS_S3_PORT",
        marker="weed",
        cwd=folder,
        folders=(folder / "data",),
        files=((identities, known),),
        prepare=partial(write_security, folder),
        # At SIGTERM the filer waits 15 s for its own metadata subscriptions to end (they do
        # not), then the volume server 10 s more; everything it acknowledged is already in its
        # files, which it checks at start, so it is killed instead (tests/infra/test_objectstore_stop.py).
        stop_grace_s=2.0,
    )


def write_security(folder: Path) -> None:
    """SeaweedFS's security.toml and the certificate and keys it names, all new, readable by
    their owner only; the folder (which holds the unix sockets) only its owner can enter."""
    from infra.certificates import issue

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    tls = folder / "tls"
    credentials = issue("seaweedfs", addresses=(_LOOPBACK,))
    for name, text in (("ca.pem", credentials.ca), ("cert.pem", credentials.certificate),
                       ("key.pem", credentials.key)):
        write_private(tls / name, text)
    keys = {section: secrets.token_urlsafe(32) for section in _JWT}
    write_private(folder / "security.toml", security_config(tls, keys))


def security_config(tls: Path, jwt_keys: dict[str, str]) -> str:
    """security.toml: mutual TLS on every gRPC and internal HTTP port, signed tokens for the
    volume server and filer, and no unauthenticated UI or directory listing."""

    def quoted(path: Path) -> str:
        return json.dumps(str(path))  # a JSON string is a TOML basic string

    ca, cert, key = quoted(tls / "ca.pem"), quoted(tls / "cert.pem"), quoted(tls / "key.pem")
    pair = f"cert = {cert}\nkey = {key}\n"
    sections = [f"[grpc]\nca = {ca}\n"]
    sections += [f"[grpc.{role}]\n{pair}" for role in _GRPC]
    # With `ca` set, a server requires a client certificate signed by it.
    sections += [f"[https.{role}]\n{pair}ca = {ca}\n" for role in _INTERNAL]
    sections.append(f"[https.client]\nenabled = true\n{pair}ca = {ca}\n")
    sections += [f"[{section}]\nkey = {json.dumps(value)}\n" for section, value in jwt_keys.items()]
    sections.append("[access]\nui = false\n[filer.expose_directory_metadata]\nenabled = false\n")
    return "\n".join(sections)


def s3_client(endpoint: str, access_key: str, secret_key: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name="us-east-1",
        config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10),
    )


# Written and read back by `ensure_bucket`: SeaweedFS's gateway answers (and lists
# buckets) before its master leads and its volume server registers, when reads and writes
# of objects still fail with InternalError.
READY_KEY = "platform/ready"
_REFUSED = ("403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId")
_MISSING = ("404", "NoSuchBucket", "NotFound")


def ensure_bucket(endpoint: str, bucket: str, access_key: str, secret_key: str,
                  timeout_s: float = 60.0) -> bool:
    """Create the bucket unless it exists, then wait until an object written there reads
    back; True when created. Waits for a starting server; refused keys are one line at once."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(endpoint, access_key, secret_key)
    deadline = time.monotonic() + timeout_s
    created = None
    while True:
        try:
            if created is None:
                created = _create_unless_there(client, bucket)
            client.put_object(Bucket=bucket, Key=READY_KEY, Body=b"ok")
            if client.get_object(Bucket=bucket, Key=READY_KEY)["Body"].read() == b"ok":
                return created
            last = f"s3://{bucket}/{READY_KEY} read back other bytes"
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _REFUSED:
                raise PlatformError(
                    f"S3 at {endpoint} refused the platform's keys ({code}); check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from error
            last = error
        except BotoCoreError as error:
            last = error
        if time.monotonic() > deadline:
            raise PlatformError(f"S3 at {endpoint} did not serve bucket '{bucket}': {last}")
        time.sleep(0.5)


def _create_unless_there(client, bucket: str) -> bool:
    """Create the bucket unless it exists: True when created."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if error.response.get("Error", {}).get("Code", "") not in _MISSING:
            raise
    client.create_bucket(Bucket=bucket)
    return True
