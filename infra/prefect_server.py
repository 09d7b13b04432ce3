"""`prefect server start` whose automations wait for SQLite's write lock instead of
dropping events: `python -m infra.prefect_server [prefect server start options]`.

Prefect evaluates each event against the automations in a transaction that reads an
automation's bucket, then writes it, begun `DEFERRED`. On SQLite in WAL mode such a
transaction fails at once with "database is locked" when another connection wrote in
between (the busy timeout cannot help: the snapshot it read is stale), and the server's
in-memory broker retries the event three times, at once, then moves it to its dead-letter
folder: no automation sees it, not the failure alert, not the retraining on drift: 1-3
events in each round of tests/bench/dropped_events_bench.py (30 flow runs at once).

Here the same transactions begin `IMMEDIATE` (what Prefect does itself where it reads then
writes, e.g. a flow run's state): they take the write lock first and wait their turn for
it. On PostgreSQL the flag means nothing. The rest is `prefect server start` unchanged.
"""

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager


@asynccontextmanager
async def automations_session_writing_first(begin_transaction: bool = False) -> AsyncIterator:
    """Prefect's `automations_session`, with its transactions begun IMMEDIATE on SQLite."""
    from prefect.server.database import provide_database_interface

    db = provide_database_interface()
    async with db.session_context(begin_transaction=begin_transaction,
                                  with_for_update=begin_transaction) as session:
        yield session


def make_triggers_wait_for_the_write_lock() -> None:
    """Point the triggers service at `automations_session_writing_first`; fail loudly on a
    Prefect whose triggers open their sessions another way."""
    from prefect.server.events import triggers

    if not callable(getattr(triggers, "automations_session", None)):
        raise RuntimeError("prefect.server.events.triggers has no automations_session in this "
                           "Prefect version: infra/prefect_server.py needs a look")
    triggers.automations_session = automations_session_writing_first


def main(argv: Sequence[str] | None = None) -> None:
    """`prefect server start` with `argv` (this process's arguments by default), here."""
    make_triggers_wait_for_the_write_lock()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *(sys.argv[1:] if argv is None else argv)]
    sys.exit(app())  # Prefect's command reads its arguments from sys.argv


if __name__ == "__main__":
    main()
