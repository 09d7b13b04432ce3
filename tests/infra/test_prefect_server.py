"""`prefect server start` whose automations wait for SQLite's write lock (infra/prefect_server.py):
the trigger service's read-then-write transaction, against a real SQLite file in WAL mode,
with another connection writing in between, as Prefect's event persister and API do."""

import os
import subprocess
import sys

import pytest

# In a child: Prefect's database interface is process-wide, and the patch is too.
READ_THEN_WRITE_WHILE_ANOTHER_WRITES = """
import asyncio, sqlite3, sys, threading
import sqlalchemy as sa
from infra import prefect_server
if sys.argv[1] == "ours":
    prefect_server.make_triggers_wait_for_the_write_lock()
from prefect.server.events import triggers

async def main(path):
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("CREATE TABLE scratch (writer TEXT)")
    try:
        async with triggers.automations_session(begin_transaction=True) as session:
            await session.execute(sa.text("SELECT count(*) FROM scratch"))  # a bucket read
            writer = threading.Thread(target=other.execute,
                                      args=("INSERT INTO scratch VALUES ('other')",))
            writer.start()
            writer.join(1.0)  # done at once unless our transaction holds the write lock
            await session.execute(sa.text("INSERT INTO scratch VALUES ('evaluation')"))
        print("committed", end=" ")
    except sa.exc.OperationalError as error:
        print(f"failed: {error.orig}", end=" ")
    writer.join(30)
    print(",".join(sorted(row[0] for row in other.execute("SELECT writer FROM scratch"))))

asyncio.run(main(sys.argv[2]))
"""


def _evaluate(tmp_path, which: str) -> str:
    database = tmp_path / "prefect.db"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}"}
    done = subprocess.run([sys.executable, "-c", READ_THEN_WRITE_WHILE_ANOTHER_WRITES, which,
                           str(database)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_prefects_own_trigger_transaction_fails_when_another_connection_wrote_in_between(tmp_path):
    """Given Prefect's triggers as shipped, when the bucket it read is written by another
    connection before it writes, then its write fails at once with "database is locked" (what
    made the server drop events): the situation the next test's fix is for exists."""
    assert _evaluate(tmp_path, "prefect") == "failed: database is locked other"


def test_our_trigger_transaction_waits_for_the_other_writer_and_both_commit(tmp_path):
    """Given infra/prefect_server.py's triggers, when another connection writes while the
    evaluation is under way, then the other writer waits for the evaluation's commit and
    both rows are there."""
    assert _evaluate(tmp_path, "ours") == "committed evaluation,other"


def test_a_prefect_without_the_triggers_session_fails_loudly(monkeypatch):
    """Given a Prefect whose triggers open their sessions another way, then the server does
    not start with Prefect's behaviour unnoticed: the patch refuses with a line to act on."""
    from prefect.server.events import triggers

    from infra.prefect_server import make_triggers_wait_for_the_write_lock

    monkeypatch.delattr(triggers, "automations_session")
    with pytest.raises(RuntimeError, match="infra/prefect_server.py needs a look"):
        make_triggers_wait_for_the_write_lock()
