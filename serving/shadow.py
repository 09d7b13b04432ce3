"""The challenger's shadow: every served batch scored again by the challenger, off the
request path, its predictions kept beside the champion's.

The predict thread hands each recorded batch over (a queue put of the column arrays it
made for the traffic store, nothing else) after the batch's traffic is buffered; a thread of
its own gathers what came in over `wait_s`, scores it in one call (one call for many
batches costs far less than one each) and buffers the predictions as SHADOW rows keyed by
request id and record index (monitoring/traffic.py joins them on reading). A challenger
that cannot be loaded, raises, or falls behind costs its own rows only: the answers were
sent already, and what would not fit in `max_records` is skipped and counted.

The thread keeps the default OS priority: it takes the GIL like any other thread, and a
lowered one, descheduled while holding it, would hold up the threads that answer.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from experiments.pipelines import feature_frame
from monitoring.traffic import CHALLENGER_PREDICTION, CHALLENGER_VERSION, SHADOW, BufferFull

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """One recorded batch: its feature columns as the champion's contract typed them, and
    the names its traffic rows give its records."""

    columns: dict[str, np.ndarray]
    request_ids: np.ndarray
    record_index: np.ndarray
    hour: str
    contract: object  # the champion's DataContract the columns were typed by


class Shadow:
    """Scores recorded batches with `models.current` (the challenger, or None: no shadow)."""

    def __init__(self, models, writer, *, wait_s: float = 0.2, max_records: int = 20_000) -> None:
        self._models = models  # a ChallengerWatcher, or anything with `.current`
        self._writer = writer
        self._wait_s = wait_s
        self._max_records = max_records
        self._queue: queue.SimpleQueue[Scored | None] = queue.SimpleQueue()
        self._pending = 0  # records queued, not scored yet
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.scored = 0  # records the challenger scored and that were buffered for the store
        self.skipped = 0  # records not shadowed: the queue or the store was full
        self.failed = 0  # records whose scoring raised
        self._failing: str | None = None  # the version that failed last, logged once

    @property
    def version(self) -> str | None:
        model = self._models.current
        return None if model is None else model.version

    def start(self) -> None:
        if hasattr(self._models, "start"):
            self._models.start()
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Score what is queued, then stop (before the writer's last flush)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        if hasattr(self._models, "stop"):
            self._models.stop()

    def submit(self, batch: Scored) -> None:
        """Queue a recorded batch for the challenger; never raises, never waits."""
        if self._models.current is None:
            return
        n = len(batch.request_ids)
        with self._lock:
            if self._pending + n > self._max_records:
                self.skipped += n
                return
            self._pending += n
        self._queue.put(batch)

    def _run(self) -> None:
        with threadpool_limits(1):
            while True:
                first = self._queue.get()
                if first is None:
                    return
                time.sleep(self._wait_s)  # company
                batches, stopped = self._drain([first])
                self._score(batches)
                if stopped:
                    return

    def _drain(self, batches: list) -> tuple[list[Scored], bool]:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batches, False
            if item is None:
                return batches, True
            batches.append(item)

    def _score(self, batches: list[Scored]) -> None:
        n = sum(len(b.request_ids) for b in batches)
        with self._lock:
            self._pending -= n
        model = self._models.current
        if model is None:
            return
        try:
            predictions = np.asarray(model.predict(_features(batches, model.contract)))
        except Exception as error:  # noqa: BLE001 - the challenger's fault costs its rows only
            self.failed += n
            if self._failing != model.version:
                self._failing = model.version
                log.warning("the challenger %s version %s failed to score %d records (%s: %s); "
                            "answers are not affected", model.name, model.version, n,
                            type(error).__name__, error)
            return
        self._failing = None
        self._keep(batches, predictions, model.version)

    def _keep(self, batches: list[Scored], predictions: np.ndarray, version: str) -> None:
        """The predictions as SHADOW rows, one add per served hour."""
        scored_at = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "us")
        ends = np.cumsum([len(b.request_ids) for b in batches])
        hours: dict[str, list[int]] = {}
        for i, batch in enumerate(batches):
            hours.setdefault(batch.hour, []).append(i)
        for hour, members in hours.items():
            rows = np.concatenate([np.arange(ends[i] - len(batches[i].request_ids), ends[i])
                                   for i in members])
            size = len(rows)
            try:
                self._writer.add(SHADOW, hour, {
                    "request_id": np.concatenate([batches[i].request_ids for i in members]),
                    "record_index": np.concatenate([batches[i].record_index for i in members]),
                    CHALLENGER_PREDICTION: predictions[rows],
                    CHALLENGER_VERSION: np.full(size, version, dtype=object),
                    "scored_at": np.full(size, scored_at),
                })
                self.scored += size
            except BufferFull:  # the store is behind: the champion's rows come first
                with self._lock:  # submit counts its skips from the predict thread
                    self.skipped += size


def _features(batches: list[Scored], contract) -> pd.DataFrame:
    """The batches' records as one model input for `contract` (the challenger's): as they
    are when the champion's contract typed every column alike, else typed again."""
    names = contract.feature_names
    frame = pd.DataFrame({name: np.concatenate([b.columns[name] for b in batches])
                          for name in names}, columns=names)
    typed_by = batches[0].contract
    if all(b.contract is typed_by for b in batches) and (
            typed_by.numeric, typed_by.categorical) == (contract.numeric, contract.categorical):
        return frame
    return feature_frame(frame, contract.numeric, contract.categorical)
