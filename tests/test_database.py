"""Connections: a server process keeps a fixed pool, and a burst waits for it instead of opening more."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from timeline.store import database, inline
from timeline.store.database import Database

from . import helpers
from .helpers import scalar, until


async def test_a_burst_beyond_the_pool_waits_for_pooled_connections(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    opened = 0

    @event.listens_for(db.engine.sync_engine, "connect")
    def _count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    async def read() -> int:
        async with db.read() as conn:
            await asyncio.sleep(0.01)  # hold the connection so the burst overlaps
            return int((await conn.execute(sa.text("SELECT 1"))).scalar_one())

    try:
        answers = await asyncio.gather(*(read() for _ in range(20)))
    finally:
        await db.dispose()
    assert answers == [1] * 20
    assert opened == 2


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_writer_waits_for_the_log_lock_at_most_30_seconds(database_url: str) -> None:
    """PostgreSQL: set on every pooled connection, so no write transaction spends a round trip on it."""
    db = Database(database_url)
    try:
        async with db.write() as conn:
            assert (await conn.execute(sa.text("SHOW lock_timeout"))).scalar_one() == "30s"
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_sqlite_writer_waiting_for_another_process_leaves_the_loop_free(database_url: str) -> None:
    """SQLite statements run on the event loop's thread: waiting for another connection's write lock must
    not stall the loop (reads and other requests go on), and the write goes through once the lock is free."""
    path = make_url(database_url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)  # as another process would hold the lock
    other.execute("BEGIN IMMEDIATE")
    db = Database(database_url)
    insert = sa.text("INSERT INTO projection_checkpoints (name, position) VALUES ('waiting', 1)")
    count = sa.text("SELECT count(*) FROM projection_checkpoints WHERE name = 'waiting'")

    async def write() -> None:
        async with db.write() as conn:
            await conn.execute(insert)

    try:
        async with db.read() as conn:  # statements run inline, where the busy handler would stall the loop
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, inline.InlineConnection)
        writing = asyncio.create_task(write())
        started = time.monotonic()
        for _ in range(10):
            await asyncio.sleep(0.01)
        async with db.read() as conn:
            assert (await conn.execute(count)).scalar_one() == 0
        assert time.monotonic() - started < 1  # ten ticks and a read, not a wait for the lock
        assert not writing.done()
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
        async with db.read() as conn:
            assert (await conn.execute(count)).scalar_one() == 1
    finally:
        other.close()
        await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_sqlite_lock_held_past_the_timeout_fails_the_statement(database_url: str) -> None:
    path = make_url(database_url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    conn = await inline.creator(path, timeout=0.2)()
    try:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await conn.execute("BEGIN IMMEDIATE")
        assert time.monotonic() - started >= 0.2
    finally:
        await conn.close()
        other.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_sqlite_writer_behind_another_in_this_process_fails_clearly_after_the_timeout(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "LOCK_TIMEOUT", 0.2)
    db = Database(database_url, pool_size=2)
    try:
        async with db.write():
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=r"waited 0\.2 s for the SQLite write lock"):
                async with db.write():
                    pass
            assert time.monotonic() - started >= 0.2
        async with db.write() as conn:  # the lock was given back both times
            await conn.execute(sa.text("SELECT 1"))
    finally:
        await db.dispose()


# Records of 400 bytes: thousands fill hundreds of pages, which a sequential scan reads every one of.
_RECORDS = sa.text(
    "INSERT INTO stream_records (stream_id, version, format, state) "
    "SELECT 'claim-' || n, 1, 1, repeat('x', 400) FROM generate_series(1, :rows) AS n"
)


async def _grow_records(url: str, rows: int) -> None:
    other = Database(url)
    try:
        async with other.write() as conn:
            await conn.execute(_RECORDS, {"rows": rows})
    finally:
        await other.dispose()


async def _cached_plan(raw: Any) -> str:
    return "\n".join(row[0] for row in await raw.fetch("EXPLAIN EXECUTE probe('{claim-7}', '{}', true, 1)"))


_PROBE = (
    "PREPARE probe AS SELECT r.state FROM unnest($1::text[]) AS w(s) CROSS JOIN LATERAL "
    "(SELECT * FROM stream_records WHERE stream_id = w.s AND format = $4 OFFSET 0) AS r "
    "WHERE $3::boolean AND cardinality($2::text[]) >= 0"
)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_writes_plans_made_over_an_empty_table_use_its_index_once_it_has_grown(db: Database) -> None:
    """Generic plans are made once per connection: one made after an ANALYZE saw a table empty (autovacuum
    may be off) must still look keys up through the index when the table holds thousands of rows, both in
    a write transaction and on a connection that appends without one."""
    async with db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(sa.text("ANALYZE stream_records"))
    async with db.write() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute(_PROBE)
        await raw.fetch("EXECUTE probe('{claim-7}', '{}', true, 1)")  # the generic plan, over no rows
        await conn.execute(_RECORDS, {"rows": 5000})
        in_transaction = await _cached_plan(raw)
        await raw.execute("DEALLOCATE probe")
        await conn.execute(sa.text("DELETE FROM stream_records"))
    async with db.append() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute(_PROBE)
        await raw.fetch("EXECUTE probe('{claim-7}', '{}', true, 1)")
        await _grow_records(db.url, 5000)
        appending = await _cached_plan(raw)
        await raw.execute("DEALLOCATE probe")
    for plan in (in_transaction, appending):
        assert "Seq Scan on stream_records" not in plan, plan
        assert "Index Scan using pk_stream_records" in plan, plan


async def test_a_write_keeps_its_connection_for_the_next_gives_back_one_that_failed_and_dispose_closes_it(
    db: Database,
) -> None:
    checkouts = helpers.checkouts(db.engine)
    pool = db.engine.sync_engine.pool
    for _ in range(3):
        async with db.write() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    assert checkouts == [1]  # the second and third writes took the connection the first one kept
    with pytest.raises(RuntimeError):
        async with db.write():
            raise RuntimeError("the writer failed midway")
    async with db.write() as conn:
        assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    assert checkouts == [2]  # the failed write's connection went back to the pool to be reset
    assert pool.checkedout() == 1  # kept for the next write
    await db.dispose()
    assert pool.checkedout() == 0


@pytest.mark.parametrize("pool_size", [1, 2])
async def test_a_small_pool_keeps_no_connection_for_writes_so_reads_never_wait_for_one(
    database_url: str, pool_size: int
) -> None:
    db = Database(database_url, pool_size=pool_size)
    inside = 0
    everyone = asyncio.Event()

    async def read() -> int:
        nonlocal inside
        async with db.read() as conn:
            inside += 1
            if inside == pool_size:
                everyone.set()
            await everyone.wait()  # each holds its connection until every read has one
            return int((await conn.execute(sa.text("SELECT 1"))).scalar_one())

    try:
        async with db.write() as conn:
            await conn.execute(sa.text("SELECT 1"))
        async with asyncio.timeout(10):
            assert await asyncio.gather(*(read() for _ in range(pool_size))) == [1] * pool_size
    finally:
        await db.dispose()


async def test_a_write_connection_used_after_its_write_ended_is_not_handed_to_the_next(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(sa.text("SELECT 1"))
    # A caller that kept the connection past its write begins a transaction of its own on it (on SQLite one
    # that takes the file's write lock).
    await conn.execute(sa.text("SELECT 1"))
    async with asyncio.timeout(30), db.write() as again:
        assert (await again.execute(sa.text("SELECT 1"))).scalar_one() == 1


async def test_a_write_that_ends_after_dispose_began_keeps_no_connection(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(sa.text("SELECT 1"))
        await db.dispose()
    # Given back to the pool it came from (whose connections dispose closes), not kept open past it.
    assert db._writing.held is None


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_kept_write_connection_the_server_closed_is_not_handed_to_the_next_write(
    db: Database,
) -> None:
    async with db.write() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
    assert await scalar(db, "SELECT pg_terminate_backend(:pid)", pid=pid)
    held = db._writing.held
    assert held is not None
    await until(held[1].is_closed)  # the loop has read the server's goodbye
    async with db.write() as conn:
        assert (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one() != pid
