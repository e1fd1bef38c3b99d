"""How each engine's connections are set up: SQLite's pragmas and its BEGIN, PostgreSQL's write plans, the
write transaction's one-round-trip BEGIN that takes the log's lock, and the checks a pooled connection
passes before a write takes it."""

from __future__ import annotations

from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from timeline.store.faults import NeedsLock

# Set on a connection's execution options for a write transaction: SQLite then begins it IMMEDIATE.
WRITE = "timeline_write"


def configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, synchronous=NORMAL and foreign keys on every connection; BEGIN IMMEDIATE for writes."""

    # pysqlite's own transaction handling would defer BEGIN and cannot take the write lock up front,
    # so SQLAlchemy emits BEGIN itself: IMMEDIATE for writes (allocation order = commit order).
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE) else "DEFERRED"
        # On the driver's cursor: SQLAlchemy's statement machinery cost more than the BEGIN itself.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"BEGIN {mode}")
        finally:
            cursor.close()


# A write's statements are key lookups and unnest() inserts whose best plan does not depend on the values
# bound, but PostgreSQL re-plans each call while a custom plan looks cheaper than the generic one: planning
# the read for a single write took 1.4 ms against 0.4 ms of executing it (EXPLAIN ANALYZE, 2026-12-04).
# Set here, single writes went from 431 to 551 a second (medians of three alternating rounds against the
# code before, bench/results-2026-12-04-write-plans.txt). SET LOCAL: reads keep the planner's choice. (A
# transaction begun otherwise, below, takes the lock alone and keeps the planner's choice too.)
# A generic plan is made once, from the table sizes of the moment, and kept for the connection's life unless
# an ANALYZE invalidates it (autovacuum may be off). Made while a table was empty, a key lookup in it became
# a sequential scan, which stayed as the table grew: on a log whose stream records were not yet written, each
# single write's read scanned every record written since (20 ms a read after a minute, the API's writes 254
# a second on a 1,000,000-event log against 643 with this: bench/results-2026-12-04-seqscan-plans.txt). Every
# statement a write sends looks rows up by a key an index serves, so sequential scans are ruled out.
WRITE_PLANS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}
_BEGIN_LOCKED = (
    "BEGIN ISOLATION LEVEL READ COMMITTED; "
    + "".join(f"SET LOCAL {name} = {value}; " for name, value in WRITE_PLANS.items())
    + "LOCK TABLE events IN EXCLUSIVE MODE"
)


class _Begun:
    """A transaction begun by our own statement, in the place SQLAlchemy's asyncpg adapter keeps the one it
    begins: the adapter then sends no BEGIN of its own, and ends this one with COMMIT or ROLLBACK."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def commit(self) -> None:
        await self._driver.execute("COMMIT")

    async def rollback(self) -> None:
        if not self._driver.is_closed():
            await self._driver.execute("ROLLBACK")


async def begin_locked(conn: AsyncConnection) -> None:
    """Begin the write transaction, choose generic plans in it and take the log's write lock in one round
    trip (a simple query of three statements), where the adapter would send BEGIN and then the LOCK. Taking
    the lock in the first round trip is what keeps every later statement's snapshot after the previous
    writer's commit."""
    adapted: Any = (await conn.get_raw_connection()).dbapi_connection
    if adapted._transaction is not None or adapted.isolation_level not in (None, "read_committed"):
        # Begun already, or at another isolation level: the adapter begins it, then the lock.
        await conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
        return
    driver = adapted.driver_connection
    # Set first: if the lock times out, the transaction the BEGIN opened is rolled back like any other.
    adapted._transaction = _Begun(driver)
    try:
        await driver.execute(_BEGIN_LOCKED)
    except asyncpg.InternalClientError as error:
        # "another operation is in progress": a restart of the server cut a statement on this pooled
        # connection off midway (seen in test_faults' restart under writes). The connection is closed, so the
        # pool replaces it, and the write fails as one the database could not be reached for (503, retry).
        driver.terminate()
        raise ConnectionError(f"the database connection was left unusable: {error}") from error


def refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """At checkout (PostgreSQL): a pooled connection the server closed is replaced, not handed out."""
    # A pooled connection the server closed (a restart) is known closed as soon as the loop read the
    # server's goodbye; the write path's statements go to the driver itself, past SQLAlchemy's handling of
    # a disconnect, so without this check the pool handed each such connection to a write in turn (five
    # 503s in a row for a pool of five, test_faults). Costs no round trip; the pool connects anew.
    if dbapi_connection.driver_connection.is_closed():
        raise sa.exc.DisconnectionError("the server closed this pooled connection")


# How often (ms) PostgreSQL checks that the client of an append is still there while the append waits for the
# lock: the append would commit by itself once it got the lock, though the process that sent it was killed
# and can no longer answer for it (a transaction of its own would have been rolled back). PostgreSQL 14+.
CLIENT_CHECK_MS = 500


def check_client(dbapi_connection: Any, _record: Any) -> None:
    """At connect (an appending connection): the server checks every ``CLIENT_CHECK_MS`` that we are there."""
    if dbapi_connection.driver_connection.get_server_version() >= (14,):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
        finally:
            cursor.close()


def refuse_unlocked(*_args: Any) -> None:
    """Before any statement through SQLAlchemy on an appending connection: only the driver's may run there."""
    raise NeedsLock("a statement through SQLAlchemy in a write without the log's lock")
