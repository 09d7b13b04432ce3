"""What a process tree listens on, read from /proc (Linux): its processes, the listening TCP
sockets among their open files, and what a stranger (no credentials) gets from each port."""

import os
import socket
import ssl
from pathlib import Path

import httpx


def descendants(*pids: int) -> list[int]:
    """The pids and every process below them (a worker starts flow runs in sessions of
    their own, so a process group would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], list(pids)
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # gone, or not ours to read
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _listening_tcp() -> dict[int, int]:
    """inode -> port of every listening TCP socket on the machine (IPv4 and IPv6)."""
    found = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def listening_ports(pids: list[int]) -> dict[int, set[int]]:
    """port -> the pids (of `pids`) that hold a socket listening on it."""
    listening = _listening_tcp()
    ports: dict[int, set[int]] = {}
    for pid in pids:
        for inode in _socket_inodes(pid) & listening.keys():
            ports.setdefault(listening[inode], set()).add(pid)
    return ports


def listening_unix_sockets(pids: list[int]) -> dict[str, set[int]]:
    """path -> the pids (of `pids`) that listen on a unix socket there (a relative path is
    the process's working directory's)."""
    listening = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[5] == "01" and int(fields[3], 16) & 0x10000:  # listening
            listening[int(fields[6])] = fields[7]
    found: dict[str, set[int]] = {}
    for pid in pids:
        for inode in _socket_inodes(pid) & listening.keys():
            path = listening[inode]
            if not path.startswith("@"):  # abstract sockets have no file
                path = os.path.join(os.readlink(f"/proc/{pid}/cwd"), path)
            found.setdefault(path, set()).add(pid)
    return found


def unix_answers(path: str) -> list[str]:
    """What plain HTTP and clear-text gRPC calls over a unix socket got that was a success."""
    got = []
    for method, target in (("GET", "/"), ("GET", "/buckets/"), ("POST", "/buckets/stranger.txt"),
                           ("GET", "/dir/assign")):
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=path), trust_env=False, timeout=10) as client:
                status = client.request(method, f"http://local{target}", files=(
                    {"file": ("stranger.txt", b"x")} if method == "POST" else None)).status_code
        except httpx.HTTPError:
            continue
        if status < 400:
            got.append(f"{method} {target} -> {status}")
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=path, http1=False, http2=True),
                          trust_env=False, timeout=10) as client:
            response = client.post("http://local/master_pb.Seaweed/GetMasterConfiguration",
                                   headers={"Content-Type": "application/grpc", "TE": "trailers"},
                                   content=b"\0\0\0\0\0")
            if response.headers.get("content-type", "").startswith("application/grpc"):
                got.append("a gRPC call in clear text was answered")
    except httpx.HTTPError:
        pass
    return got


def http_answer(port: int, method: str, path: str) -> int | None:
    """The status a plain HTTP request gets, or None when the port gives no HTTP answer."""
    try:
        with httpx.Client(trust_env=False, timeout=10) as client:
            return client.request(method, f"http://127.0.0.1:{port}{path}",
                                  headers={"Content-Type": "application/json"},
                                  content=b"{}" if method == "POST" else None).status_code
    except httpx.HTTPError:
        return None


def tls_answer(port: int) -> str | None:
    """What a TLS client with no certificate of its own reads after a request; None when the
    handshake or the request is refused (or the port does not speak TLS)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return tls.recv(200).decode(errors="replace") or None
    except (OSError, ssl.SSLError):
        return None


def grpc_answers(port: int) -> bool:
    """Whether a gRPC call in clear text (HTTP/2 without TLS) gets a gRPC answer."""
    try:
        with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
            response = client.post(f"http://127.0.0.1:{port}/master_pb.Seaweed/GetMasterConfiguration",
                                   headers={"Content-Type": "application/grpc", "TE": "trailers"},
                                   content=b"\0\0\0\0\0")  # an empty message, uncompressed
            return response.headers.get("content-type", "").startswith("application/grpc")
    except httpx.HTTPError:
        return False
