"""Every port the platform's processes listen on, found from the processes themselves (the
pids `mlops up` recorded and their children), tried as a stranger would: a process on this
machine with no credentials."""

import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from listening import (
    descendants,
    grpc_answers,
    http_answer,
    listening_ports,
    listening_unix_sockets,
    tls_answer,
    unix_answers,
)
from network import http
from polling import wait_for

pytestmark = pytest.mark.integration

# What anyone may read: health checks, and Prefect's UI page and API description (static
# files; the API they describe needs the auth string).
PUBLIC = {"/health", "/healthz", "/api/health"}
# The worker's health server (Prefect's, FastAPI) describes its one route, GET /health.
PUBLIC_BY_SERVICE = {"prefect": {"/", "/docs", "/openapi.json"}, "worker": {"/docs", "/openapi.json"}}
# Evidently's UI has no read authentication (its token guards writes), so every read is open
# by design: it listens on 127.0.0.1 only. What a stranger must not do there is write.
READS_OPEN = {"evidently"}
# What a stranger would try: each service's reads and writes, SeaweedFS's file and cluster
# API, and the control endpoints of Prefect's runner web server.
TRIES = (
    ("GET", "/"), ("GET", "/health"), ("GET", "/healthz"), ("GET", "/api/health"),
    ("GET", "/docs"), ("GET", "/openapi.json"),
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=1"),
    ("POST", "/api/2.0/mlflow/experiments/create"), ("GET", "/version"),
    ("POST", "/api/flows/filter"), ("GET", "/api/admin/settings"), ("GET", "/api/csrf-token?client=x"),
    ("POST", "/shutdown"), ("GET", "/run_count"),
    ("GET", "/dir/assign"), ("GET", "/dir/status"), ("GET", "/cluster/status"), ("POST", "/submit"),
    ("GET", "/buckets/mlops/"), ("POST", "/buckets/mlops/stranger.txt"), ("GET", "/mlops/"),
)


def _platform_ports(home: Path) -> dict[int, str]:
    """port -> the service whose process (or a child of it) listens on it."""
    owners = {}
    for pid_file in (home / "run").glob("*.pid"):
        pid = int(pid_file.read_text().split()[0])
        for port in listening_ports(descendants(pid)):
            owners[port] = pid_file.stem
    return owners


def _platform_pids(home: Path) -> list[int]:
    return [pid for pid_file in (home / "run").glob("*.pid")
            for pid in descendants(int(pid_file.read_text().split()[0]))]


def _what_a_stranger_gets(port: int, service: str) -> list[str]:
    """Every answer that gave a stranger something beyond a public page; empty when none."""
    public = PUBLIC | PUBLIC_BY_SERVICE.get(service, set())
    got = []
    for method, path in TRIES:
        status = http_answer(port, method, path)
        read = method == "GET" and (path in public or service in READS_OPEN)
        if status is not None and status < 400 and not read:
            got.append(f"{method} {path} -> {status}")
    if (answer := tls_answer(port)) is not None:
        got.append(f"TLS without a client certificate -> {answer.splitlines()[0]!r}")
    if grpc_answers(port):
        got.append("a gRPC call in clear text was answered")
    return got


def _ports(full_platform) -> dict[str, int]:
    """service -> the port `mlops status` gives for it."""
    return {name: urlsplit(service["url"]).port
            for name, service in full_platform.status()["services"].items()}


def test_every_port_of_the_full_platform_refuses_strangers(full_platform):
    """Given `mlops up --profile full`, when every listening TCP socket of its processes is
    tried without credentials, then none gives more than a health check or a static page:
    MLflow, Prefect and S3 answer 401/403, SeaweedFS's internal HTTP ports refuse a TLS client
    without the certificate, its gRPC ports refuse clear text, the runner and the worker answer
    /health only."""
    services = _ports(full_platform)
    s3 = services["s3"]
    expected = {services[name] for name in ("mlflow", "prefect", "runner", "evidently", "worker")}
    expected |= {s3 + offset + grpc for offset in range(4) for grpc in (0, 10000)}

    ports = _platform_ports(full_platform.home)

    assert expected <= set(ports), f"not found listening: {sorted(expected - set(ports))}"
    leaks = {f"{port} ({ports[port]})": got for port in sorted(ports)
             if (got := _what_a_stranger_gets(port, ports[port]))}
    assert leaks == {}
    # The refusals are the services' own, not an accident of the tries.
    assert http_answer(services["mlflow"], "GET", TRIES[6][1]) == 401
    assert http_answer(services["prefect"], "GET", "/api/admin/settings") == 401
    assert http_answer(s3, "GET", "/mlops/") == 403
    assert http_answer(services["evidently"], "POST", "/api/projects") in (401, 403)
    for internal in (s3 + 1, s3 + 2, s3 + 3):  # master, volume, filer: HTTPS only
        assert http_answer(internal, "GET", "/dir/status") == 400


def test_every_unix_socket_of_the_full_platform_refuses_strangers(full_platform):
    """Given SeaweedFS's unix sockets (the filer's plain HTTP, the gateway's S3, each server's
    gRPC), which a process of the same user can reach, then plain HTTP and clear-text gRPC over
    them get nothing: the filer wants a token, the gateway its keys, gRPC the certificate.
    The filer's and gateway's sockets are in MLOPS_HOME/s3, which only its owner can enter."""
    private = full_platform.home / "s3"

    sockets = listening_unix_sockets(_platform_pids(full_platform.home))

    assert {str(private / "filer.sock"), str(private / "s3.sock")} <= set(sockets)
    assert len([path for path in sockets if "-grpc-" in path]) == 4  # master, volume, filer, s3
    assert {path: got for path in sorted(sockets) if (got := unix_answers(path))} == {}
    assert oct(private.stat().st_mode & 0o777) == "0o700"


def _tls(folder: Path | None) -> ssl.SSLContext:
    """A TLS client: with SeaweedFS's own certificate from `folder`, or (None) a stranger's."""
    if folder is None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def test_seaweedfs_takes_no_file_from_strangers(full_platform):
    """Given SeaweedFS's master, volume server and filer, which took a file from anyone before:
    with the platform's certificate the master hands out a file id and a write token, and the
    volume server takes the file with that token only; without the certificate, the master,
    the volume server and the filer refuse at the handshake, and the filer's unix socket wants
    a token."""
    s3 = _ports(full_platform)["s3"]
    master, volume, filer = s3 + 1, s3 + 2, s3 + 3
    ours, stranger = _tls(full_platform.home / "s3" / "tls"), _tls(None)

    assigned = httpx.get(f"https://127.0.0.1:{master}/dir/assign", verify=ours, trust_env=False)
    assert assigned.status_code == 200, assigned.text
    target = f"https://{assigned.json()['url']}/{assigned.json()['fid']}"
    file = {"file": ("probe.txt", b"written directly")}
    without_token = httpx.post(target, files=file, verify=ours, trust_env=False)
    token = {"Authorization": assigned.headers["authorization"]}
    written = httpx.post(target, files=file, headers=token, verify=ours, trust_env=False)

    assert without_token.status_code == 401
    assert written.status_code == 201, written.text
    assert httpx.get(target, verify=ours, trust_env=False).status_code == 401  # reads want a token too
    for url in (f"https://127.0.0.1:{master}/dir/assign", target,
                f"https://127.0.0.1:{filer}/buckets/mlops/stranger.txt"):
        with pytest.raises(httpx.TransportError):
            httpx.post(url, files=file, headers=token, verify=stranger, trust_env=False)
    assert str(volume) in target
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(full_platform.home / "s3" / "filer.sock")),
                      trust_env=False) as local:
        assert local.post("http://filer/buckets/mlops/stranger.txt", files=file).status_code == 401
        assert local.get("http://filer/buckets/mlops/").status_code in (401, 403)


def test_the_runner_port_offers_no_shutdown(platform):
    """Given the local platform's runner, when a stranger POSTs /shutdown (Prefect's runner web
    server stopped the runner on it), then the answer is not a success, and the runner keeps
    asking Prefect for work: its health check, which fails once polls stop for two poll
    intervals (6 s), still passes 10 s later."""
    runner = next(s for s in platform.services if s.name == "runner")
    pid = int((platform.home / "run" / "runner.pid").read_text().split()[0])

    shutdown, _ = http(f"{runner.url}/shutdown", "POST")
    run_count, _ = http(f"{runner.url}/run_count")
    time.sleep(10)  # proving a stop did not happen takes longer than a stop would

    assert shutdown >= 400 and run_count == 404
    assert wait_for(lambda: http(runner.health_url)[0] == 200, timeout_s=30)
    assert Path(f"/proc/{pid}").exists()


def test_the_local_platform_leaves_open_only_mlflow_prefect_and_evidently(platform):
    """Given the local profile, which has no authentication on purpose (one user, loopback
    only), then MLflow, Prefect and Evidently's UI are the only ports that answer a stranger:
    the runner's port and any other its processes open (Prefect's per-run control channel)
    refuse."""
    open_by_design = {s.port for s in platform.services if s.name in ("mlflow", "prefect", "evidently")}
    runner = next(s for s in platform.services if s.name == "runner")

    ports = _platform_ports(platform.home)

    assert open_by_design | {runner.port} <= set(ports)
    leaks = {f"{port} ({ports[port]})": got for port in sorted(set(ports) - open_by_design)
             if (got := _what_a_stranger_gets(port, ports[port]))}
    assert leaks == {}
    assert http_answer(runner.port, "GET", "/health") == 200
    sockets = listening_unix_sockets(_platform_pids(platform.home))
    assert {path: got for path in sorted(sockets) if (got := unix_answers(path))} == {}
