"""`prefect server start` whose SQLite transactions wait for the write lock (infra/prefect_server.py):
a read-then-write transaction (the trigger service's, and the one every API write request
opens), against a real SQLite file in WAL mode, with another connection writing in between,
as Prefect's event persister and API do."""

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
    prefect_server.make_transactions_wait_for_the_write_lock()
from prefect.server.database import provide_database_interface
from prefect.server.events import triggers

SESSIONS = {"triggers": lambda: triggers.automations_session(begin_transaction=True),
            "api": lambda: provide_database_interface().session_context(begin_transaction=True)}

async def main(path):
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("CREATE TABLE scratch (writer TEXT)")
    try:
        async with SESSIONS[sys.argv[3]]() as session:
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


def _evaluate(tmp_path, which: str, session: str = "triggers") -> str:
    database = tmp_path / "prefect.db"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}"}
    done = subprocess.run([sys.executable, "-c", READ_THEN_WRITE_WHILE_ANOTHER_WRITES, which,
                           str(database), session], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("session", ["triggers", "api"])
def test_prefects_own_transaction_fails_when_another_connection_wrote_in_between(tmp_path, session):
    """Given Prefect as shipped, when what a transaction read (a trigger's bucket; a row an API
    write request reads first) is written by another connection before it writes, then its
    write fails at once with "database is locked" (what made the server drop events and
    answer 503): the situation the next test's fix is for exists."""
    assert _evaluate(tmp_path, "prefect", session) == "failed: database is locked other"


@pytest.mark.parametrize("session", ["triggers", "api"])
def test_our_transaction_waits_for_the_other_writer_and_both_commit(tmp_path, session):
    """Given infra/prefect_server.py's server, when another connection writes while a
    transaction is under way, then the other writer waits for its commit and both rows are
    there."""
    assert _evaluate(tmp_path, "ours", session) == "committed evaluation,other"


def test_a_prefect_whose_transactions_begin_another_way_fails_loudly(monkeypatch):
    """Given a Prefect whose SQLite configuration begins transactions another way, then the
    server does not start with Prefect's behaviour unnoticed: the patch refuses with a line
    to act on."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    from infra.prefect_server import make_transactions_wait_for_the_write_lock

    async def begin_transaction(self, session):  # no with_for_update
        raise AssertionError("not called")

    monkeypatch.setattr(AioSqliteConfiguration, "begin_transaction", begin_transaction)
    with pytest.raises(RuntimeError, match="infra/prefect_server.py needs a look"):
        make_transactions_wait_for_the_write_lock()

