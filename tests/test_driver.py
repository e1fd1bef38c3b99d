"""The write path's statements on the drivers: what they store reads back the same through SQLAlchemy, and an
appending commit wakes readers exactly once (in this process, and through LISTEN on PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import sqlalchemy as sa

from timeline.service import Recorder
from timeline.store import audit, eventlog
from timeline.store.database import Database
from timeline.store.eventlog import WrongExpectedVersion
from timeline.store.notify import CHANNEL
from timeline.store.schema import events

from .helpers import NOW, claim_made, document, new, source, subject


async def _record(db: Database, batch: list[object]) -> list[eventlog.RecordedEvent]:
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        await recorder.record_all(batch, origin="")  # type: ignore[arg-type]
        return await recorder.finish()


async def test_events_written_on_the_driver_read_back_the_same_through_sqlalchemy(db: Database) -> None:
    written = await _record(db, [subject("s"), source("a"), document("d"), claim_made("c", "a", 5)])
    async with db.read() as conn:
        by_driver = await eventlog.read_all(conn)
        by_sqlalchemy = [
            r
            for s in ("subject-s", "source-a", "document-d", "claim-c")
            for r in await eventlog.read_stream(conn, s)
        ]
        stored = (await conn.execute(sa.select(events.c.recorded_at, events.c.event_id).limit(1))).one()
        report = await audit.verify(conn)
    assert by_driver == written
    assert by_sqlalchemy == written
    assert written[0].recorded_at.tzinfo is not None
    assert stored.event_id == written[0].event_id
    assert report.ok, report


async def test_an_appending_commit_wakes_readers_once(db: Database) -> None:
    await _record(db, [subject("s"), source("a"), document("d")])
    heard: list[str] = []
    first = asyncio.Event()

    def hear(*args: object) -> None:
        heard.append(str(args[2]))
        first.set()

    listening = None
    if db.dialect == "postgresql":
        listening = await asyncpg.connect(db.dsn)
        await listening.add_listener(CHANNEL, hear)
    try:
        before = db.notifier.generation
        await _record(db, [claim_made("c1", "a", 1), claim_made("c2", "a", 2)])
        await _record(db, [claim_made("c1", "a", 1)])  # already recorded: appends nothing, wakes no one
        assert db.notifier.generation == before + 1
        if listening is not None:
            await asyncio.wait_for(first.wait(), 5)
            await asyncio.sleep(0.2)  # a second notification would have arrived by now
            assert heard == [CHANNEL]
    finally:
        if listening is not None:
            await listening.close()


async def test_a_version_taken_behind_the_writers_back_is_a_version_conflict_that_writes_nothing(
    db: Database,
) -> None:
    # The rules are bypassed here (a raw batch): the database's unique (stream, version) key still refuses
    # the second version 1 of a stream, and the write says which stream, not an integrity error.
    async with db.write() as conn:
        await eventlog.append(conn, "claim-x", 0, [new(claim_made("x", "a", 1))], recorded_at=NOW)

    async def bypassing_the_rules() -> None:
        async with db.write() as conn:
            batch = await eventlog.Batch.start(conn, NOW)
            batch.add("claim-y", 1, new(claim_made("y", "a", 1)))
            batch.add("claim-x", 1, new(claim_made("x", "a", 2)))
            await batch.flush(conn)

    with pytest.raises(WrongExpectedVersion) as caught:
        await bypassing_the_rules()
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("claim-x", 0, None)
    assert "already has a version 1" in str(caught.value)
    async with db.read() as conn:
        assert [e.stream_id for e in await eventlog.read_all(conn)] == ["claim-x"]
