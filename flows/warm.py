"""Flow runs start warm: each is a fork of a process that imported the flows once.

Prefect's runner starts every flow run in a new Python process (multiprocessing's `spawn`),
which imports the flow's module, and with it scikit-learn, MLflow, Prefect and skops (skops
alone imports every scikit-learn estimator), before the run can start: 5 s on a quiet
machine and 30 s on a busy one, most of the time from a drift event to its retraining
running, and paid again by every scheduled check.

Here the runner starts a forkserver that imports those modules once, and the runner's flow
runs are forked from it: ready in a fraction of a second. A run is still a process of its
own (a crash or a kill takes that run only), gets the environment the runner gives it, and
starts from the server's freshly imported state, never from another run's. The server holds
no thread and no connection when it forks (checked in tests/flows/test_warm.py).

A forked run also ends without waiting for its heartbeat thread, as the CLI's flows do
(flows/heartbeats.py): a short flow run took 1.32 s from start to exit before, 0.35-0.41 s
after.

Prefect chooses the start method inside `run_flow_in_subprocess` (`get_context("spawn")`,
prefect 3.8); `use_warm_processes` makes that call answer the forkserver's context, in the
runner's process only.
"""

import multiprocessing
import multiprocessing.forkserver
import threading
import time
import types
from collections.abc import Callable

import prefect.flow_engine

# The modules every flow run of the runner needs: the flows and what they import, and skops
# (experiments/fast_skops.py), which registry/loading.py imports only when a model is read
# (every training and check does).
PRELOAD = ("flows.train", "flows.monitor", "flows.retrain", "flows.approval", "flows.predict",
           "experiments.fast_skops")


class _WarmProcess(multiprocessing.context.ForkServerProcess):
    """A flow run's process, forked by the forkserver: its flow ends without waiting out the
    heartbeat thread's sleep (0-1 s a run; flows/heartbeats.py), as the CLI's flows do, and
    it has a spare process (flows/spare.py), forked before the run starts a thread: a
    training launched from the UI or by drift draws its plots and learning curve there, as
    a warm `mlops train` does. Other runs leave theirs idle; it ends with the run."""

    def run(self) -> None:
        from flows.heartbeats import end_flows_without_waiting_for_their_heartbeats
        from flows.spare import fork_spare

        end_flows_without_waiting_for_their_heartbeats()
        fork_spare()
        super().run()


class _WarmContext(multiprocessing.context.ForkServerContext):
    Process = _WarmProcess


def _forkserver_multiprocessing() -> types.SimpleNamespace:
    """`multiprocessing` as prefect.flow_engine sees it: every context is the forkserver's,
    and its processes are `_WarmProcess`."""
    warm = _WarmContext()
    return types.SimpleNamespace(get_context=lambda method=None: warm, context=multiprocessing.context)


def use_warm_processes(preload: tuple[str, ...] = PRELOAD,
                       start_when: Callable[[], bool] | None = None) -> None:
    """Make the flow runs this process starts forks of a forkserver that imports `preload`.

    The forkserver starts now, or with `start_when`, once that answers true (asked from a
    daemon thread every 0.1 s): its imports (~3 s of CPU) then do not compete with the runner
    getting ready on two busy cores. A flow run that comes first starts the forkserver itself
    (same preload), so it is warm either way."""
    if not hasattr(prefect.flow_engine, "multiprocessing"):
        raise RuntimeError("prefect.flow_engine no longer starts flow runs through multiprocessing; "
                           "flows/warm.py needs a look at this Prefect version")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    prefect.flow_engine.multiprocessing = _forkserver_multiprocessing()
    if start_when is None:
        multiprocessing.forkserver.ensure_running()
        return

    def start_once_ready() -> None:
        while not start_when():
            time.sleep(0.1)
        multiprocessing.forkserver.ensure_running()  # takes the forkserver's lock: no double start

    threading.Thread(target=start_once_ready, name="warm-start", daemon=True).start()
