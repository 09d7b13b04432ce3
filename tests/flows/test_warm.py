"""Flow runs the runner starts are forks of a warm process that imported the flows once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A flow run started as the runner starts one (prefect.flow_engine.run_flow_in_subprocess),
# reporting what its process had imported before the flow's own code ran.
PROBE = '''
import json, os, sys
import prefect.flow_engine
from prefect import flow
from prefect.flow_engine import run_flow_in_subprocess

@flow
def probe(out: str):
    from flows.spare import beside

    with open(out, "w") as f:
        json.dump({"skops_imported": "skops.io" in sys.modules, "parent": os.getppid(),
                   "heartbeats_unjoined": getattr(prefect.flow_engine._send_heartbeats,
                                                  "unjoined", False),
                   "spare": beside(os.getpid).result() != os.getpid()}, f)

if __name__ == "__main__":
    if sys.argv[2] == "warm":
        from flows.warm import use_warm_processes
        use_warm_processes()
    elif sys.argv[2] == "warm-later":  # its start deferred past this run: the run starts it
        from flows.warm import use_warm_processes
        use_warm_processes(start_when=lambda: False)
    process = run_flow_in_subprocess(probe, parameters={"out": sys.argv[1]})
    process.join()
    print(json.dumps({"kind": type(process).__name__, "exitcode": process.exitcode,
                      "pid": os.getpid()}))
'''


def run_probe(tmp_path: Path, mode: str) -> tuple[dict, dict]:
    script, out = tmp_path / "probe.py", tmp_path / f"{mode}.json"
    script.write_text(PROBE)
    done = subprocess.run([sys.executable, str(script), str(out), mode], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), json.loads(out.read_text())


@pytest.mark.parametrize("mode", ["warm", "warm-later", "spawn"])
def test_a_flow_run_starts_in_a_fork_of_the_warm_process(platform, tmp_path, mode):
    """Given the runner's warm processes, then a flow run is a forkserver's child that finds
    the flows' libraries imported (skops, which the probe never imports), has a spare process
    for its plots, and ends without waiting for its heartbeat thread; without them, a
    spawned process of the starter's own, which imports everything anew and has no spare. A
    run that comes before the deferred start of the warm process is warm too."""
    started, seen = run_probe(tmp_path, mode)

    assert started["exitcode"] == 0
    if mode.startswith("warm"):
        assert started["kind"] == "_WarmProcess"  # a ForkServerProcess
        assert seen["skops_imported"] is True and seen["heartbeats_unjoined"] is True
        assert seen["parent"] != started["pid"]  # forked by the server, not by the starter
        assert seen["spare"] is True
    else:
        assert started["kind"] == "SpawnProcess"
        assert seen["skops_imported"] is False and seen["heartbeats_unjoined"] is False
        assert seen["parent"] == started["pid"]
        assert seen["spare"] is False


def test_the_preloaded_modules_leave_no_thread_or_socket_to_fork():
    """Given a process that imports what the warm process preloads, then it holds one thread
    and no socket: forking it copies no lock held by another thread, no shared connection."""
    check = (
        "import os, threading\n"
        "from flows.warm import PRELOAD\n"
        "import importlib\n"
        "[importlib.import_module(m) for m in PRELOAD]\n"
        "fds = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd')\n"
        "       if os.path.exists(f'/proc/self/fd/{fd}')]\n"
        "print(threading.active_count(), sum(f.startswith('socket:') for f in fds))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "0"]
