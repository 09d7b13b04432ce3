"""Writing a trial's child run, in this process or in a writer process of its own.

A search's trials are recorded from a background thread (`tracking.TrialRecorder`), but the
HTTP requests of MLflow's client are Python that holds the GIL, so the search's own thread
waits on them: 30 trials on the bench's data ran 4 % slower with the recorder than without it
(four alternated pairs each way, issue 13), while the same requests sent at the same pace from
another process slowed the same search by nothing measurable (0.96 to 1.02, four pairs).
So a search that lasts hands its trials to `python -m experiments.trial_writer`, which sends
them with MLflow's own client. The writer takes ~1 s to import MLflow, so a search's first
seconds (all of a short one) are written in its own process. A training that has a spare
process (flows/spare.py: a fork of a process with MLflow imported) writes every trial there
instead, from the first: no import, no second process to start.

The writer reads one JSON object a line on stdin, writes one JSON answer a line on the file
descriptor it is given (MLflow may print on stdout), and exits when stdin closes. It runs
nothing it is sent: every line is data for `write_trial_run`.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from experiments.priority import yield_to_training

_STATUS = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAIL: "FAILED",
}


def text_value(value: object) -> str:
    return "None" if value is None else str(value)


def trial_record(trial: optuna.trial.FrozenTrial, metric: str, best: float | None) -> dict:
    """Everything the trial's child run holds, as plain data (JSON for the writer process)."""
    start_ms = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
    end_ms = (int(trial.datetime_complete.timestamp() * 1000) if trial.datetime_complete
              else int(time.time() * 1000))
    folds = [float(s) for s in trial.user_attrs.get("fold_scores", [])]
    metrics = [(f"cv_{metric}_fold", s, step) for step, s in enumerate(folds)]
    if folds:
        mean = sum(folds) / len(folds)
        spread = (sum((s - mean) ** 2 for s in folds) / len(folds)) ** 0.5
        metrics += [(f"cv_{metric}_mean", mean, 0), (f"cv_{metric}_std", spread, 0)]
    if start_ms is not None:
        metrics.append(("duration_s", (end_ms - start_ms) / 1000, 0))
    tags = {
        "mlops.trial_number": str(trial.number),
        "mlops.trial_state": trial.state.name,
        "mlops.folds_completed": str(len(folds)),
    }
    if "one_thread" in trial.user_attrs:  # its fits were limited to one native thread
        tags["mlops.one_thread"] = str(trial.user_attrs["one_thread"]).lower()
    if trial.state == TrialState.FAIL:
        tags["mlops.fail_reason"] = str(trial.user_attrs.get("fail_reason", ""))[:5000]
    return {
        "number": trial.number, "start_ms": start_ms, "end_ms": end_ms,
        "status": _STATUS.get(trial.state, "FAILED"), "metrics": metrics, "tags": tags,
        "params": {k: text_value(v) for k, v in trial.params.items()}, "best": best,
    }


def write_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, record: dict,
                    log_best: bool) -> None:
    """The trial's child run (create, one batch, terminate) and, with `log_best`, a point of
    the parent's best-so-far curve."""
    end_ms = record["end_ms"]
    run = client.create_run(experiment_id, start_time=record["start_ms"],
                            run_name=f"trial-{record['number']:03d}",
                            tags={"mlflow.parentRunId": parent_run_id})
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(key, float(value), end_ms, int(step)) for key, value, step in record["metrics"]],
        params=[Param(key, str(value)) for key, value in record["params"].items()],
        tags=[RunTag(key, str(value)) for key, value in record["tags"].items()],
    )
    client.set_terminated(run.info.run_id, status=record["status"], end_time=end_ms)
    if log_best:
        client.log_metric(parent_run_id, "best_cv_score", float(record["best"]),
                          timestamp=end_ms, step=int(record["number"]))


_clients: dict[str, MlflowClient] = {}


def write_trial_run_to(tracking_uri: str, experiment_id: str, parent_run_id: str, record: dict,
                       log_best: bool) -> None:
    """`write_trial_run` with a client of `tracking_uri` made once in this process: a job
    for a spare process (flows/spare.py), which has MLflow imported already."""
    client = _clients.get(tracking_uri)
    if client is None:
        client = _clients[tracking_uri] = MlflowClient(tracking_uri)
    write_trial_run(client, experiment_id, parent_run_id, record, log_best)


class WriterProcess:
    """`python -m experiments.trial_writer`, started now; `ready()` says once it can take
    trials (it imports MLflow first), `write` hands it one and waits for its answer."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        answers, answers_w = os.pipe()
        self._answers = os.fdopen(answers, "r", encoding="utf-8")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "experiments.trial_writer", tracking_uri, experiment_id,
                 parent_run_id, str(answers_w)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(answers_w,),
                text=True, encoding="utf-8",
            )
        except OSError:  # no writer: nothing of the pipe is kept
            self._answers.close()
            raise
        finally:
            os.close(answers_w)  # the writer holds it now: its exit is an end of file here
        yield_to_training(self._process.pid)  # it imports MLflow while the search runs
        self._ready = False

    def ready(self) -> bool:
        """True once the writer said it is ready; never waits."""
        if not self._ready and select.select([self._answers], [], [], 0)[0]:
            self._ready = self._answer() == {"ready": True}
        return self._ready

    def write(self, record: dict, log_best: bool) -> None:
        """Has the writer write one trial; raises what it answered if it could not."""
        try:
            self._process.stdin.write(json.dumps({"record": record, "log_best": log_best}) + "\n")
            self._process.stdin.flush()
        except OSError:  # a closed pipe: it is gone
            raise RuntimeError(self._exited()) from None
        answer = self._answer()
        if "error" in answer:
            raise RuntimeError(answer["error"])

    def _answer(self) -> dict:
        line = self._answers.readline()
        if not line:
            raise RuntimeError(self._exited())
        return json.loads(line)

    def _exited(self) -> str:
        return f"the trial writer process exited (code {self._process.wait()})"

    def close(self) -> None:
        """Ends the writer: after its last answer it has nothing left; before, nothing is lost
        either (every trial handed to it was answered)."""
        try:
            self._process.stdin.close()
        except OSError:  # it is already gone
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._answers.close()


def main(argv: list[str]) -> int:
    tracking_uri, experiment_id, parent_run_id, answers_fd = argv
    # Its search's process decides when it ends (closing stdin): a Ctrl-C meant for the
    # search must not cut off the trials still to write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(int(answers_fd), "w", encoding="utf-8", buffering=1)
    client = MlflowClient(tracking_uri)
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        message = json.loads(line)
        try:
            write_trial_run(client, experiment_id, parent_run_id, message["record"],
                            bool(message["log_best"]))
        except Exception as error:  # noqa: BLE001 - answered, and the search stops on it
            answers.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
            return 1
        answers.write(json.dumps({"ok": True}) + "\n")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Every trial it was handed is answered: nothing is left to flush, and an interpreter
    # that imported MLflow takes 0.3 s to tear down, which its search would wait out.
    os._exit(code)
