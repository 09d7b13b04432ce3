"""Free loopback ports for servers the tests start, and plain HTTP calls to them."""

import random
import socket
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is chosen."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ephemeral_ports() -> tuple[int, int]:
    """The ports the kernel gives connections of their own (Linux's default if unknown)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_s3_port() -> int:
    """A port for SeaweedFS, which also takes the three ports above it and each plus 10000.

    The block lies below the kernel's ephemeral ports: SeaweedFS starts its servers one after
    another for seconds, and a block among them was seen lost meanwhile (the filer's port
    taken as some connection's own, "bind: address already in use")."""
    below = ephemeral_ports()[0] - 10004
    for _ in range(200):
        port = random.randrange(10000, below) if below > 10000 else free_port()
        block = [port + i for i in range(4)] + [port + i + 10000 for i in range(4)]
        if block[-1] < 65535 and all(is_free(p) for p in block):
            return port
    raise RuntimeError("no free port block for SeaweedFS")


def http(url: str, method: str = "GET", headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str]]:
    """The status and (lower-cased) headers of one request, errors included; no proxy."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}
