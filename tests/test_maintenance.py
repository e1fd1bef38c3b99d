"""`timeline rebuild` beside a running server: the asynchronous projections it resets are not counted twice
when the server's projection worker is in the middle of a batch, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.app import maintenance
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import activity, projector
from timeline.store.database import Database
from timeline.store.eventlog import RecordedEvent
from timeline.store.schema import source_activity

from .conftest import SEED


class Held:
    """The activity projection, its batch held open after applying (as a server's worker mid-batch)."""

    name = activity.name
    tables = activity.tables

    def __init__(self) -> None:
        self.applied = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, conn: AsyncConnection, events: Sequence[RecordedEvent]) -> None:
        await activity.apply(conn, events)
        self.applied.set()
        await self.release.wait()


async def _rows(db: Database) -> list[tuple[object, ...]]:
    async with db.read() as conn:
        result = await conn.execute(sa.select(source_activity).order_by(source_activity.c.source_id))
        return [tuple(row) for row in result]


async def _someone_waits_for_a_lock(db: Database) -> None:
    """Until a session of this PostgreSQL database waits for a row or table lock (the rebuild's reset)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        async with asyncio.timeout(30):
            waiting = 0
            while not waiting:
                await asyncio.sleep(0.02)
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
    finally:
        await conn.close()


async def test_a_rebuild_beside_a_server_mid_batch_counts_each_event_once(db: Database) -> None:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    await projector.catch_up(db, activity)
    expected = await _rows(db)
    async with db.write() as conn:
        await projector.reset(conn, activity)
    await projector.run_batch(db, activity, size=10)
    before = await _rows(db)
    # The rest of the log brings sources the first ten events did not name: rows the server's batch inserts.
    assert {r[0] for r in before} < {r[0] for r in expected}

    server = Database(db.url)  # another process's engine, leading the projection as a server's worker does
    lead = projector.Leadership(server, activity.name)
    assert await lead.acquire()
    held = Held()
    try:
        batch = asyncio.create_task(projector.run_batch(server, held, size=500))
        await held.applied.wait()
        rebuild = asyncio.create_task(maintenance.rebuild_all(db))
        if db.dialect == "postgresql":
            await _someone_waits_for_a_lock(db)
        else:
            await asyncio.sleep(0.2)  # SQLite: the rebuild waits for the write lock the batch holds
        held.release.set()
        assert await batch == 29 - 10
        assert await rebuild == 29
        # The server's worker carries on from wherever the projection now stands.
        await projector.catch_up(server, activity)
        assert await _rows(db) == expected
    finally:
        held.release.set()
        await lead.release()
        await server.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_server_leaves_the_leads_to_the_projection_process_while_it_runs(db: Database) -> None:
    # After a database restart cut every session, whichever process came back first took the leads it
    # could, and a server that won one kept it. A server defers: it takes no lead while `timeline project`
    # runs (which it says by a lock of its own), and gives up one it took before that process came back.
    server, projecting = Database(db.url), Database(db.url)
    lead = projector.Leadership(server, activity.name, deferring=True)
    present = projector.Leadership(projecting, projector.PROJECTION_PROCESS)
    theirs = projector.Leadership(projecting, activity.name)
    try:
        assert await lead.acquire()  # no projection process: the server leads
        assert not await lead.give_way()
        assert await present.acquire()  # the projection process comes back
        assert await lead.give_way()
        assert await theirs.acquire()
        await theirs.release()
        assert not await lead.acquire()  # free, but the projection process runs
        await present.release()  # and is gone
        assert await lead.acquire()
        assert not await theirs.acquire()
    finally:
        for held in (lead, present, theirs):
            await held.release()
        await server.dispose()
        await projecting.dispose()
