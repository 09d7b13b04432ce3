"""Concurrent requests answered by one predict call: a queue drained by one worker.

Each batch is checked and predicted in a thread (the event loop keeps reading requests
meanwhile), and its records go to the traffic store before any of its answers is sent; then
it is handed to the challenger's shadow (serving/shadow.py), which scores it later.
"""

import asyncio
import logging
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from threadpoolctl import threadpool_limits

from monitoring.traffic import TRAFFIC, BufferFull, hour_of
from serving.model import ServedModel
from serving.records import Problem, check_batch
from serving.shadow import Scored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    predictions: list
    model_version: str
    request_id: str
    hour: str  # the partition its records went to
    classes: list | None = None  # with probabilities: their columns' classes
    probabilities: list | None = None  # one row per record, when the request asked


@dataclass(frozen=True)
class Served:
    """What feedback needs to know about an answered request."""

    records: int
    model_version: str
    hour: str


class NoModel(RuntimeError):
    """No model is loaded yet."""


class Overloaded(RuntimeError):
    """More records wait than the queue may hold: the request is refused, not queued."""

    retry_after_s = 1.0


class Batcher:
    def __init__(self, models, writer, *, wait_s: float = 0.001, max_records: int = 10_000,
                 remembered: int = 100_000, max_queued_records: int = 50_000,
                 shadow=None) -> None:
        self._models = models  # anything with a `.current` ServedModel (or None)
        self._writer = writer
        self.shadow = shadow  # a serving.shadow.Shadow, or None: no challenger is scored
        self._wait_s = wait_s
        self._max_records = max_records
        self._remembered = remembered
        self._max_queued = max_queued_records
        self._queued = 0  # records in the queue, not yet taken into a batch
        # Answered requests not labelled yet (records, model version, hour), then labelled
        # ones: each is labelled once. Plain tuples, not Served objects: the collector stops
        # tracking a tuple of plain values, where 100,000 remembered objects made each full
        # collection scan them all (pauses of 20-70 ms every few seconds under load: p99).
        self._served: OrderedDict[str, tuple[int, str, str]] = OrderedDict()
        self.labelled: OrderedDict[str, None] = OrderedDict()
        self.contracts: dict[str, object] = {}
        self.unseen_categories: dict[str, int] = {}
        self.records_served = 0
        self._busy = False
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # One thread, and one BLAS/OpenMP thread in it: batches are small and the cores are
        # shared with the event loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="predict",
                                            initializer=threadpool_limits, initargs=(1,))

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="batcher")
        if self.shadow is not None:
            self.shadow.start()

    async def stop(self) -> None:
        """Answer what is queued, then stop."""
        if self._task is not None:
            while not self._queue.empty() or self._busy:
                await asyncio.sleep(0.01)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)
        if self.shadow is not None:
            self.shadow.stop()

    async def predict(self, records: list, proba: bool = False) -> Answer | Problem:
        """The request's outcome (with class probabilities when `proba`); Overloaded at once
        when the queue holds too many records (one request alone is always taken),
        BufferFull when its traffic cannot be kept."""
        n = len(records)
        if self._queued and self._queued + n > self._max_queued:
            raise Overloaded(f"overloaded: {self._queued} records wait to be predicted (at most "
                             f"{self._max_queued}, MLOPS_SERVE_MAX_QUEUED_RECORDS); retry later")
        future = asyncio.get_running_loop().create_future()
        self._queued += n
        self._queue.put_nowait((records, future, proba))
        return await future

    def served(self, request_id: str) -> Served | None:
        """What feedback needs of an answered request not labelled yet, if it is remembered."""
        found = self._served.get(request_id)
        return None if found is None else Served(*found)

    def label(self, request_id: str) -> None:
        """Note that `request_id` got its labels: a second feedback for it is refused."""
        self._served.pop(request_id, None)
        self.labelled[request_id] = None
        while len(self.labelled) > self._remembered:
            self.labelled.popitem(last=False)

    def _take(self):
        item = self._queue.get_nowait()
        self._queued -= len(item[0])
        return item

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            self._queued -= len(item[0])
            batch = [item]
            self._busy = True
            try:
                await self._gather(batch)
                await self._settle(batch)
            finally:
                self._busy = False

    async def _settle(self, batch: list) -> None:
        """Answer one batch's futures: outcomes, or the error that stopped the batch."""
        model = self._models.current
        if model is None:
            return _fail(batch, NoModel("no model is loaded yet"))
        requests = [records for records, _, _ in batch]
        wants_proba = [proba for _, _, proba in batch]
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._executor, self._answer, model, requests,
                                                  wants_proba)
        except BufferFull as error:  # the store is behind: refuse rather than answer unrecorded
            return _fail(batch, error)
        except Exception as error:  # noqa: BLE001 - fail this batch's requests, keep serving
            log.exception("predicting a batch of %d requests failed", len(batch))
            return _fail(batch, error)
        self._remember(model, outcomes)
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def _gather(self, batch: list) -> None:
        """Add what is queued; if that is nothing, wait `wait_s` once for company."""
        size = len(batch[0][0])
        waited = self._wait_s <= 0
        while size < self._max_records:
            if self._queue.empty():
                if waited:
                    return
                waited = True
                await asyncio.sleep(self._wait_s)
                continue
            item = self._take()
            batch.append(item)
            size += len(item[0])

    def _answer(self, model: ServedModel, requests: list[list],
                wants_proba: list[bool]) -> list[Answer | Problem]:
        """Check, predict and record one batch (runs in the predict thread)."""
        check = check_batch(requests, model.contract)
        outcomes: list[Answer | Problem | None] = [check.rejected.get(i) for i in range(len(requests))]
        if not check.accepted:
            return outcomes
        features = check.features
        classes, probabilities = None, None
        if any(wants_proba[i] for i in check.accepted) and model.contract.task == "classification":
            predictions, classes, probabilities = model.predict_with_proba(features)
            classes = np.asarray(classes).tolist()  # numpy scalars as JSON's own types
        else:
            predictions = np.asarray(model.predict(features))
        ids = [uuid.uuid4().hex for _ in check.accepted]
        served_at = datetime.now(UTC)
        sizes = np.asarray(check.sizes)
        starts = np.cumsum(sizes) - sizes
        n = len(features)
        hour = hour_of(served_at)
        request_ids = np.repeat(np.asarray(ids, dtype=object), sizes)
        record_index = np.arange(n) - np.repeat(starts, sizes)
        columns = {name: features[name].to_numpy() for name in features.columns}
        self._writer.add(TRAFFIC, hour, {
            **columns,
            "prediction": predictions,
            "model_version": np.full(n, model.version, dtype=object),
            "served_at": np.full(n, np.datetime64(served_at.replace(tzinfo=None), "us")),
            "request_id": request_ids,
            "record_index": record_index,
        })
        if self.shadow is not None:
            self.shadow.submit(Scored(columns, request_ids, record_index, hour, model.contract))
        for request, request_id, start, size in zip(check.accepted, ids, starts, sizes, strict=True):
            shown = wants_proba[request] and probabilities is not None
            outcomes[request] = Answer(
                predictions[start:start + size].tolist(), model.version, request_id, hour,
                classes if shown else None,
                probabilities[start:start + size].tolist() if shown else None)
        for column, n in check.unseen_categories.items():
            self.unseen_categories[column] = self.unseen_categories.get(column, 0) + n
        self.records_served += len(features)
        return outcomes

    def _remember(self, model: ServedModel, outcomes: list) -> None:
        """Keep the last `remembered` request ids, for feedback (runs on the event loop)."""
        self.contracts.setdefault(model.version, model.contract)
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                self._served[outcome.request_id] = (len(outcome.predictions),
                                                    outcome.model_version, outcome.hour)
        while len(self._served) > self._remembered:
            self._served.popitem(last=False)


def _fail(batch: list, error: Exception) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(error)
