"""The event log contract, on both databases: append with expected version, read stream, read all."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import sqlalchemy as sa

from timeline.service import Recorder
from timeline.store import eventlog
from timeline.store.database import Database
from timeline.store.eventlog import WrongExpectedVersion
from timeline_bench.generator import generate

from .helpers import NOW, claim_made, new, source


async def test_append_then_read_stream_in_order(db: Database) -> None:
    async with db.write() as conn:
        first = await eventlog.append(conn, "source-a", 0, [new(source("a"))], recorded_at=NOW)
        more = await eventlog.append(
            conn, "claim-x", 0, [new(claim_made("x", "a", 1)), new(claim_made("x", "a", 2))], recorded_at=NOW
        )
    async with db.read() as conn:
        stream = await eventlog.read_stream(conn, "claim-x")
        from_two = await eventlog.read_stream(conn, "claim-x", from_version=2)
        assert await eventlog.stream_version(conn, "claim-x") == 2
        assert await eventlog.stream_version(conn, "claim-nothing") == 0
    assert [e.stream_version for e in stream] == [1, 2]
    assert [e.event for e in stream] == [claim_made("x", "a", 1), claim_made("x", "a", 2)]
    assert [e.position for e in stream] == [m.position for m in more]
    assert first[0].position < stream[0].position < stream[1].position
    assert [e.stream_version for e in from_two] == [2]
    assert stream[0].metadata.recorded_by == "test"
    assert stream[0].recorded_at == NOW
    assert stream[0].type == "ClaimMade"
    assert stream[0].schema_version == 1


async def test_wrong_expected_version_writes_nothing(db: Database) -> None:
    async with db.write() as conn:
        await eventlog.append(conn, "claim-x", 0, [new(claim_made("x", "a", 1))], recorded_at=NOW)

    async def batch() -> None:
        async with db.write() as conn:
            # The first append of the batch succeeds inside the transaction; the second conflicts.
            await eventlog.append(conn, "claim-y", 0, [new(claim_made("y", "a", 1))], recorded_at=NOW)
            await eventlog.append(conn, "claim-x", 0, [new(claim_made("x", "a", 2))], recorded_at=NOW)

    with pytest.raises(WrongExpectedVersion) as caught:
        await batch()
    assert caught.value.stream_id == "claim-x"
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    async with db.read() as conn:
        everything = await eventlog.read_all(conn)
    assert [e.stream_id for e in everything] == ["claim-x"]


async def test_unique_stream_version_is_enforced_by_the_database(db: Database) -> None:
    async with db.write() as conn:
        await eventlog.append(conn, "claim-x", 0, [new(claim_made("x", "a", 1))], recorded_at=NOW)
    row = {
        "event_id": uuid.uuid4(),
        "stream_id": "claim-x",
        "stream_version": 1,
        "type": "ClaimMade",
        "schema_version": 1,
        "data": "{}",
        "metadata": "{}",
        "recorded_at": NOW,
    }
    with pytest.raises(sa.exc.IntegrityError):
        async with db.write() as conn:
            await conn.execute(sa.insert(eventlog.events), [row])


async def test_read_all_after_position_with_limit(db: Database) -> None:
    async with db.write() as conn:
        for i in range(7):
            await eventlog.append(conn, f"claim-{i}", 0, [new(claim_made(str(i), "a", i))], recorded_at=NOW)
    async with db.read() as conn:
        page1 = await eventlog.read_all(conn, after=0, limit=3)
        page2 = await eventlog.read_all(conn, after=page1[-1].position, limit=3)
        page3 = await eventlog.read_all(conn, after=page2[-1].position, limit=3)
        head = await eventlog.head_position(conn)
    streams = [e.stream_id for e in page1 + page2 + page3]
    assert streams == [f"claim-{i}" for i in range(7)]
    assert len(page3) == 1
    assert head == page3[-1].position


async def test_tailing_reader_sees_every_event_once_in_order_under_concurrent_writers(
    database_url: str,
) -> None:
    writers, batches, per_batch = 6, 15, 3
    expected_total = writers * batches * per_batch
    db = Database(database_url, pool_size=writers + 2)
    seen: list[eventlog.RecordedEvent] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for b in range(batches):
            async with db.write() as conn:
                stream = f"claim-w{w}-b{b}"
                await eventlog.append(
                    conn,
                    stream,
                    0,
                    [new(claim_made(f"w{w}-b{b}", "a", i)) for i in range(per_batch)],
                    recorded_at=NOW,
                )
                # Hold the transaction open a moment after taking positions: without a serialized append,
                # later positions would commit first and a tailer that already passed them would skip these.
                await asyncio.sleep(random.uniform(0, 0.004))

    async def tailer() -> None:
        after = 0
        while True:
            async with db.read() as conn:
                batch = await eventlog.read_all(conn, after=after, limit=50)
            seen.extend(batch)
            if batch:
                after = batch[-1].position
            elif done.is_set():
                # One last read after every writer finished: nothing may appear behind us.
                async with db.read() as conn:
                    seen.extend(await eventlog.read_all(conn, after=after, limit=expected_total))
                return
            await asyncio.sleep(0)

    try:
        tail = asyncio.create_task(tailer())
        await asyncio.gather(*(writer(w) for w in range(writers)))
        done.set()
        await tail
        async with db.read() as conn:
            stored = await eventlog.read_all(conn, limit=expected_total + 1)
    finally:
        await db.dispose()
    positions = [e.position for e in seen]
    assert len(stored) == expected_total
    assert positions == sorted(set(positions)), "the tailer saw an event twice or out of order"
    assert {e.event_id for e in seen} == {e.event_id for e in stored}, "the tailer missed events"


async def test_read_for_write_reads_streams_existence_and_head_together(db: Database) -> None:
    async with db.write() as conn:
        empty = await eventlog.read_for_write(conn, ["claim-x"], probe=["source-a"], head=True)
        await eventlog.append(conn, "source-a", 0, [new(source("a"))], recorded_at=NOW)
        await eventlog.append(
            conn, "claim-x", 0, [new(claim_made("x", "a", 1)), new(claim_made("x", "a", 2))], recorded_at=NOW
        )
        reading = await eventlog.read_for_write(
            conn, ["claim-x", "claim-y"], probe=["source-a", "source-b", "claim-x"], head=True
        )
        head = await eventlog.head_link(conn)
        without_head = await eventlog.read_for_write(conn, [], probe=["source-a"])
    assert empty.streams == {"claim-x": []}
    assert empty.existing == set()
    assert empty.head == (0, "0" * 64)
    assert [e.stream_version for e in reading.streams["claim-x"]] == [1, 2]
    assert reading.streams["claim-y"] == []
    assert reading.existing == {"source-a", "claim-x"}
    assert reading.head == head == (3, reading.streams["claim-x"][-1].hash)
    assert without_head.existing == {"source-a"}
    assert without_head.head is None


async def test_streams_read_for_writing_come_in_version_order_in_a_large_log(db: Database) -> None:
    """Found by the benchmark on PostgreSQL: without an ORDER BY, a plan over thousands of streams returned
    a claim's events out of order, and the next transaction refused a valid event as coming before
    ClaimMade. Only a log this large gets that plan."""
    events = list(generate(12_000))
    for start in range(0, len(events), 4_000):
        async with db.write() as conn:
            recorder = Recorder(conn, recorded_by="test", label="generated")
            await recorder.record_all(events[start : start + 4_000], origin="")
            await recorder.finish()
    async with db.read() as conn:
        ids = [f"claim-c{i}" for i in range(2_000)]
        reading = await eventlog.read_for_write(conn, ids)
    versions = {s: [e.stream_version for e in stored] for s, stored in reading.streams.items()}
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    assert sum(len(v) for v in versions.values()) > 5_000


async def test_a_rolled_back_write_leaves_its_positions_to_the_next_one(database_url: str) -> None:
    """Positions are never drawn by the database (the log has no AUTOINCREMENT): a write that rolls back
    took positions nobody saw, so the next write takes them again, chained to the last committed event, and
    the chain, the tree and the signed checkpoints all verify."""
    from timeline import signing
    from timeline.store import audit

    signer = signing.Signer.generate("test.example/log")
    db = Database(database_url, signer=signer)
    try:
        async with db.write() as conn:
            kept = await eventlog.append(conn, "source-a", 0, [new(source("a"))], recorded_at=NOW)
        undone: list[eventlog.RecordedEvent] = []

        async def failing() -> None:
            async with db.write() as conn:
                undone.extend(
                    await eventlog.append(
                        conn,
                        "claim-x",
                        0,
                        [new(claim_made("x", "a", 1)), new(claim_made("x", "a", 2))],
                        recorded_at=NOW,
                    )
                )
                raise RuntimeError("the write fails after appending")

        with pytest.raises(RuntimeError):
            await failing()
        async with db.write() as conn:
            retaken = await eventlog.append(
                conn, "claim-y", 0, [new(claim_made("y", "a", 3))], recorded_at=NOW
            )
        async with db.read() as conn:
            everything = await eventlog.read_all(conn)
            report = await audit.verify(conn, verifier=signer.verifier_text())
    finally:
        await db.dispose()
    assert retaken[0].position == undone[0].position == kept[0].position + 1
    assert [(e.position, e.stream_id) for e in everything] == [(1, "source-a"), (2, "claim-y")]
    assert report.ok
    assert (report.checked, report.head_position, report.checkpoints_checked) == (2, 2, 2)
