"""`mlops up` that starts the runner says which runs stopped processes left, and they are
crashed: the runner settles them before it reports healthy, so `up` need not (a second, running
`up` settles them itself: test_outages.py). Real MLflow, Prefect and runner, on the spare
platform (it goes down and up)."""

import socket
import subprocess

import pytest

pytestmark = pytest.mark.integration


def test_an_up_that_starts_the_runner_prints_the_runs_it_crashed(breakable_platform):
    """Given a flow run left Running by a process that is gone, when the platform goes down
    and up, then `up` prints that the run was marked crashed, and it is Crashed."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from flows.recovery import PROCESS_LABEL

    @flow(name="it-left-by-a-gone-process")
    def left() -> None:
        pass

    ended = subprocess.Popen(["true"])
    ended.wait()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(left, state=Running())
        client.update_flow_run_labels(run.id, {PROCESS_LABEL: f"{socket.gethostname()}:{ended.pid}:1"})

    breakable_platform.down()
    up = breakable_platform.run("up")

    assert up.returncode == 0, up.stderr[-3000:]
    line = f"flow run {run.name} ({run.id}) was left RUNNING by a process that is gone: marked crashed"
    assert line in " ".join(up.stderr.split()), up.stderr[-3000:]  # the console wraps long lines
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state.type.value == "CRASHED"
