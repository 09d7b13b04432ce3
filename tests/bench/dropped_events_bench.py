"""Events a loaded local (SQLite) Prefect server drops: `prefect server start` against ours.

    .venv/bin/python tests/bench/dropped_events_bench.py [--clients 3] [--runs 10] [--repeats 2]
        [--servers prefect ours]

Each round starts one server on a free port with a temporary PREFECT_HOME, installs the
platform's zombie automation (a bucket per flow run, written at each of its events), then
--clients processes each put --runs flow runs through their lives at once: created, Pending
(a worker took it), Running, five heartbeats, Completed. Counted from the server: trigger
evaluations that failed (its log's "Failed in consume_loop"), "database is locked" errors,
the messages moved to its dead-letter folder (events no automation saw), and the requests the
API answered 503 (a client's 2 s back-off; the UI's "Something went wrong"); and the wall
time until the load was through.
Servers alternate (Prefect's, ours, Prefect's, ...) so that other work on the machine hits both
alike. JSON on stdout; a line per round on stderr. Takes minutes: Prefect's rounds are slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVERS = {"prefect": [str(Path(sys.executable).parent / "prefect"), "server", "start"],
           "ours": [sys.executable, "-m", "infra.prefect_server"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _lives(runs: int) -> None:
    """--runs flow runs at once, each: created, Pending, Running, five heartbeats, Completed."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.events.clients import get_events_client
    from prefect.events.schemas.events import Event
    from prefect.states import Completed, Pending, Running

    @flow(name="dropped-events-bench")
    def nothing() -> None:
        pass

    async with get_client() as client, get_events_client() as events:
        async def life() -> None:
            run = await client.create_flow_run(nothing)
            await client.set_flow_run_state(run.id, Pending())
            await client.set_flow_run_state(run.id, Running())
            for _ in range(5):
                await events.emit(Event(event="prefect.flow-run.heartbeat",
                                        resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"}))
                await asyncio.sleep(0.01)
            await client.set_flow_run_state(run.id, Completed())

        await asyncio.gather(*(life() for _ in range(runs)))


def _wait_healthy(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the server at {url} did not become healthy in {timeout_s:.0f} s")


def _round(server: str, clients: int, runs: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="dropped-events-"))
    url = f"http://127.0.0.1:{_free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
           # each 503 the API answers (a retryable error) is logged, and counted below
           "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true"}
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    log = (home / "server.log").open("w")
    port = url.split(":")[2].split("/")[0]
    process = subprocess.Popen([*SERVERS[server], "--host", "127.0.0.1", "--port", port],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(url)
        install = ("from prefect.client.orchestration import get_client\n"
                   "from flows.heartbeats import install_zombie_automation\n"
                   "with get_client(sync_client=True) as c: install_zombie_automation(c, 60)")
        subprocess.run([sys.executable, "-c", install], cwd=ROOT, env=env, check=True)
        start = time.monotonic()
        loads = [subprocess.Popen([sys.executable, __file__, "--load", str(runs)], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(clients)]
        failed_clients = sum(load.wait() != 0 for load in loads)
        seconds = time.monotonic() - start
        time.sleep(5)  # the last events' evaluations
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    text = (home / "server.log").read_text(errors="replace")
    dead = home / "dlq"
    return {"server": server, "seconds": round(seconds, 1), "failed_clients": failed_clients,
            "dropped": len(list(dead.iterdir())) if dead.is_dir() else 0,
            "failed_evaluations": text.count("Failed in consume_loop"),
            "locked": text.count("sqlite3.OperationalError: database is locked"),
            "api_503": text.count("Encountered retryable exception in request")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=list(SERVERS))
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)  # a client process
    args = parser.parse_args()
    if args.load:
        asyncio.run(_lives(args.load))
        return
    rounds = []
    for _ in range(args.repeats):
        for server in args.servers:
            rounds.append(_round(server, args.clients, args.runs))
            print(json.dumps(rounds[-1]), file=sys.stderr)
    print(json.dumps({"clients": args.clients, "runs_per_client": args.runs, "rounds": rounds},
                     indent=1))


if __name__ == "__main__":
    main()
