"""`prefect server start` whose SQLite transactions wait for the write lock instead of
failing: `python -m infra.prefect_server [prefect server start options]`.

Prefect begins most of its write transactions `DEFERRED`: they read, then write. On SQLite
in WAL mode such a transaction fails at once with "database is locked" when another
connection wrote in between (the busy timeout cannot help: the snapshot it read is stale).
Measured on this machine, loaded as a test run loads it:
- the trigger service's evaluation of an event (read an automation's bucket, write it): the
  in-memory broker retries the event three times, at once, then moves it to its dead-letter
  folder, so no automation sees it, not the failure alert, not the retraining on drift (1-3
  events in each round of tests/bench/dropped_events_bench.py, 30 flow runs at once);
- an API request (the UI's "Run" of a deployment, a training's gate taking its lock slot):
  the server answers 503. Prefect's Python client waits 2 s and tries again; its UI shows
  "Oops. Something went wrong." and drops the submission.

Here every transaction the server begins on SQLite begins `IMMEDIATE`, as Prefect itself
does where it marks one `with_for_update` (a flow run's state): it takes the write lock
first and waits its turn for it (the busy timeout, 60 s). Reads outside a transaction are
unchanged, and so is PostgreSQL. The rest is `prefect server start` unchanged.
"""

import inspect
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager


def make_transactions_wait_for_the_write_lock() -> None:
    """Begin every SQLite transaction of this process's Prefect server `IMMEDIATE`; fail
    loudly on a Prefect whose SQLite configuration begins transactions another way."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "writing_first", False):
        return
    if "with_for_update" not in inspect.signature(original).parameters:
        raise RuntimeError("prefect's AioSqliteConfiguration.begin_transaction takes no "
                           "with_for_update in this Prefect version: infra/prefect_server.py "
                           "needs a look")

    @asynccontextmanager
    async def writing_first(self, session, with_for_update: bool = False) -> AsyncIterator:
        async with original(self, session, with_for_update=True) as transaction:
            yield transaction

    writing_first.writing_first = True
    AioSqliteConfiguration.begin_transaction = writing_first


def main(argv: Sequence[str] | None = None) -> None:
    """`prefect server start` with `argv` (this process's arguments by default), here."""
    make_transactions_wait_for_the_write_lock()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *(sys.argv[1:] if argv is None else argv)]
    sys.exit(app())  # Prefect's command reads its arguments from sys.argv


if __name__ == "__main__":
    main()
