"""Pooled database connections pinged only after sitting idle (real PostgreSQL)."""

import os
import time

import pytest
import sqlalchemy
from sqlalchemy import text

from experiments.idle_ping import ping_when_idle
from infra.database import database_uri

pytestmark = pytest.mark.integration  # a real PostgreSQL

SERVER = os.environ.get("MLOPS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def engine():
    engine = sqlalchemy.create_engine(database_uri(SERVER, "postgres", driver="psycopg2"), pool_size=1)
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def terminate(pid: int) -> None:
    other = sqlalchemy.create_engine(database_uri(SERVER, "postgres", driver="psycopg2"),
                                     poolclass=sqlalchemy.pool.NullPool)
    with other.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    other.dispose()


def counting_pings(engine) -> list:
    pings, ping = [], engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi_connection: pings.append(1) or ping(dbapi_connection)
    return pings


def test_a_connection_used_moments_ago_is_not_pinged(engine):
    pings = counting_pings(ping_when_idle(engine, idle_s=30))

    pids = {backend_pid(engine) for _ in range(20)}

    assert len(pids) == 1 and pings == []


def test_an_idle_connection_that_died_is_replaced_before_use(engine):
    pings = counting_pings(ping_when_idle(engine, idle_s=0.2))
    first = backend_pid(engine)
    terminate(first)
    time.sleep(0.3)

    second = backend_pid(engine)

    assert second != first and pings == [1]


def test_without_the_ping_the_dead_connection_fails_the_call(engine):
    """What the ping is for: a dead pooled connection surfaces in the caller's query."""
    ping_when_idle(engine, idle_s=30)
    terminate(backend_pid(engine))
    time.sleep(0.3)

    with pytest.raises(sqlalchemy.exc.OperationalError):
        backend_pid(engine)
