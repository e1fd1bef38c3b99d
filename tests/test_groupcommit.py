"""Group commit on both databases: units share a transaction, a failing unit rolls back alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.app.errors import Rejected
from timeline.domain.streams import references, stream_of
from timeline.groupcommit import Committer, Unavailable, Unit
from timeline.service import Recorder
from timeline.store import audit, driver, eventlog, idempotency
from timeline.store.database import Database
from timeline.store.idempotency import StoredResponse

from .helpers import claim_made, document, source, subject


def _unit(event: object, fail: bool = False):  # type: ignore[no-untyped-def]
    async def unit(recorder: Recorder) -> int:
        recorder.act_as(recorded_by="test", label="test")
        [recorded] = await recorder.record(event, origin="")  # type: ignore[arg-type]
        if fail:
            raise RuntimeError("this unit fails after writing")
        return recorded.position

    return unit


async def test_units_share_a_commit_and_fail_alone(db: Database) -> None:
    committer = Committer(db)
    sizes: list[int] = []
    commit = committer._commit

    async def counting(batch: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(batch))
        await commit(batch)

    committer._commit = counting  # type: ignore[method-assign]
    try:
        await committer.run(_unit(subject("s")))
        await committer.run(_unit(source("a")))
        await committer.run(_unit(document("d")))
        results = await asyncio.gather(
            *(
                committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s"), fail=i == 3))
                for i in range(8)
            ),
            return_exceptions=True,
        )
    finally:
        await committer.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1
    assert str(failed[0]) == "this unit fails after writing"
    positions = [r for r in results if isinstance(r, int)]
    assert sorted(positions) == list(range(4, 11))  # dense: the failed unit's position was given back
    async with db.read() as conn:
        streams = [e.stream_id for e in await eventlog.read_all(conn, after=3)]
        report = await audit.verify(conn)
    assert "claim-c3" not in streams
    assert len(streams) == 7
    assert report.ok
    assert max(sizes) > 1, "concurrent units should have shared a transaction"


async def test_a_unit_failing_after_writing_to_the_database_rolls_back_alone(db: Database) -> None:
    # Without a savepoint per unit, a unit that changed the database before failing makes the batch run
    # again with savepoints: its row must not survive, the other units must commit once each.
    committer = Committer(db)
    stored = StoredResponse(request_hash="h", status_code=201, body=b"{}")

    def keyed(name: str, event: object, fail: bool) -> Unit:
        async def unit(recorder: Recorder) -> int:
            recorder.act_as(recorded_by="test", label="test")
            [recorded] = await recorder.record(event, origin="")  # type: ignore[arg-type]
            await idempotency.store(recorder.conn, "test", name, stored)
            if fail:
                raise RuntimeError("failed after storing its key")
            return recorded.position

        return unit

    try:
        await committer.run(_unit(subject("s")))
        await committer.run(_unit(source("a")))
        await committer.run(_unit(document("d")))
        results = await asyncio.gather(
            *(
                committer.run(keyed(f"k{i}", claim_made(f"c{i}", "a", i, subject_id="s"), fail=i == 1))
                for i in range(4)
            ),
            return_exceptions=True,
        )
    finally:
        await committer.close()
    assert [str(r) if isinstance(r, BaseException) else "ok" for r in results] == [
        "ok",
        "failed after storing its key",
        "ok",
        "ok",
    ]
    async with db.read() as conn:
        streams = [e.stream_id for e in await eventlog.read_all(conn, after=3)]
        keys = {k for k in ("k0", "k1", "k2", "k3") if await idempotency.lookup(conn, "test", k)}
        report = await audit.verify(conn)
    assert sorted(streams) == ["claim-c0", "claim-c2", "claim-c3"]
    assert keys == {"k0", "k2", "k3"}
    assert report.ok


async def test_a_unit_whose_statement_fails_does_not_sink_the_others(db: Database) -> None:
    # On PostgreSQL a failed statement aborts the whole transaction; the batch is retried with savepoints.
    committer = Committer(db)

    async def broken(recorder: Recorder) -> int:
        await recorder.conn.execute(sa.text("SELECT * FROM no_such_table"))
        return 0

    try:
        await committer.run(_unit(subject("s")))
        await committer.run(_unit(source("a")))
        await committer.run(_unit(document("d")))
        results = await asyncio.gather(
            committer.run(_unit(claim_made("c0", "a", 0, subject_id="s"))),
            committer.run(broken),
            committer.run(_unit(claim_made("c1", "a", 1, subject_id="s"))),
            return_exceptions=True,
        )
    finally:
        await committer.close()
    assert isinstance(results[1], sa.exc.DBAPIError)
    assert [r for r in results if not isinstance(r, BaseException)] == [4, 5]
    async with db.read() as conn:
        assert [e.stream_id for e in await eventlog.read_all(conn, after=3)] == ["claim-c0", "claim-c1"]


async def test_a_batch_reads_its_streams_in_one_query_and_sees_its_own_registrations(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The units' streams are read for the whole batch at once: a unit still sees what a unit before it in
    # the batch recorded (a new source exists for the claim after it), and not what a failed unit recorded.
    committer = Committer(db)
    await committer.run(_unit(subject("s")))
    await committer.run(_unit(document("d")))
    reads: list[tuple[list[str], list[str]]] = []
    # Every read of the log a writer makes goes through this one query, sent to the driver.
    read_for_write = driver.read_for_write

    async def counting(
        conn: AsyncConnection, whole: list[str], probe: list[str], head: bool, record_format: int, *ahead: Any
    ) -> list[Any]:
        reads.append((whole, probe))
        return await read_for_write(conn, whole, probe, head, record_format, *ahead)

    monkeypatch.setattr(driver, "read_for_write", counting)

    plan = [
        (source("a"), False),
        (claim_made("c1", "a", 1, subject_id="s"), False),  # needs the source registered just before
        (source("b"), True),  # fails: source b must not exist for the next unit
        (claim_made("c2", "b", 2, subject_id="s"), False),
        *((claim_made(f"c{i}", "a", i, subject_id="s"), False) for i in range(3, 9)),
    ]
    try:
        results = await asyncio.gather(
            *(
                committer.run(_unit(event, fail=fail), reads=[stream_of(event)], probes=references(event))
                for event, fail in plan
            ),
            return_exceptions=True,
        )
    finally:
        await committer.close()
    assert isinstance(results[2], RuntimeError)
    assert isinstance(results[3], Rejected)
    assert "source 'b'" in str(results[3])
    assert [r for i, r in enumerate(results) if i not in (2, 3)] == list(range(3, 11))
    assert len(reads) == 1, reads


async def test_a_write_reads_the_view_rows_it_needs_with_its_streams(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write that says what it proposes gets the claim rows its views need in the query that reads its
    # streams: no query of its own for them, and the figure already chosen still stands where it should.
    committer = Committer(db)
    for event in (subject("s"), source("a"), document("d")):
        await committer.run(_unit(event))
    asked: list[object] = []
    claims_for = driver.claims_for

    async def counting(*args: Any) -> Any:
        asked.append(args[1:])
        return await claims_for(*args)

    monkeypatch.setattr(driver, "claims_for", counting)

    async def write(event: Any) -> None:
        await committer.run(
            _unit(event), reads=[stream_of(event)], probes=references(event), proposed=[event]
        )

    try:
        await write(claim_made("c9", "a", 9))
        # Same source, day and kind: the tie goes to the claim id that sorts last, the one chosen already.
        await write(claim_made("c1", "a", 1))
    finally:
        await committer.close()
    assert asked == []
    async with db.read() as conn:
        chosen = await conn.execute(sa.text("SELECT asserted_claim_id FROM estimates WHERE source_id = 'a'"))
        assert chosen.scalars().all() == ["c9"]


def _counted(committer: Committer) -> list[int]:
    sizes: list[int] = []
    commit = committer._commit

    async def counting(batch: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(batch))
        await commit(batch)

    committer._commit = counting  # type: ignore[method-assign]
    return sizes


async def test_writes_arriving_just_after_a_batch_began_gathering_join_it(db: Database) -> None:
    # Four writers in a steady rhythm: the first to come back must not commit alone while the other three
    # are still on their way (over HTTP they are still being authenticated), it waits for them.
    committer = Committer(db, gather_limit=5.0)
    sizes = _counted(committer)
    slow = asyncio.Event()

    async def slowly(recorder: Recorder) -> int:
        await slow.wait()  # the batch's transaction takes a while: stragglers would wait that long anyway
        return await _unit(subject("s"))(recorder)

    asyncio.get_running_loop().call_later(0.3, slow.set)
    try:
        first = await asyncio.gather(
            committer.run(slowly),
            committer.run(_unit(source("a"))),
            committer.run(_unit(source("b"))),
            committer.run(_unit(document("d"))),
        )
        leader = asyncio.create_task(committer.run(_unit(claim_made("c0", "a", 0, subject_id="s"))))
        await asyncio.sleep(0.05)
        rest = await asyncio.gather(
            *(committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s"))) for i in (1, 2, 3))
        )
        second = [await leader, *rest]
        # A lone writer now (the last batch was all of them) does not wait for company that never comes.
        sizes_before = len(sizes)
        lone = await asyncio.wait_for(committer.run(_unit(claim_made("c4", "a", 4, subject_id="s"))), 1)
    finally:
        await committer.close()
    assert sizes[:2] == [4, 4]
    assert sorted(first) == [1, 2, 3, 4]
    assert sorted(second) == [5, 6, 7, 8]
    assert lone == 9
    assert len(sizes) == sizes_before + 1


async def test_close_refuses_the_writes_a_batch_was_gathering(db: Database) -> None:
    committer = Committer(db, gather_limit=60.0)
    sizes = _counted(committer)
    slow = asyncio.Event()

    async def slowly(recorder: Recorder) -> int:
        await slow.wait()
        return await _unit(subject("s"))(recorder)

    asyncio.get_running_loop().call_later(0.3, slow.set)
    await asyncio.gather(committer.run(slowly), committer.run(_unit(source("a"))))
    # The next batch waits for a second write that never comes; closing must answer it, not strand it.
    waiting = asyncio.create_task(committer.run(_unit(source("b"))))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(committer.close(), timeout=10)
    with pytest.raises(Unavailable, match="was not recorded"):
        await asyncio.wait_for(waiting, timeout=1)
    assert sizes == [2]
    async with db.read() as conn:
        assert [e.stream_id for e in await eventlog.read_all(conn)] == ["subject-s", "source-a"]


async def test_writes_queued_while_the_lock_is_awaited_join_the_batch_that_gets_it(db: Database) -> None:
    # Another writer (here the test itself; another process in production) holds the log's lock. The
    # batch that was waiting for it takes every write queued meanwhile, rather than leaving them a turn of
    # their own.
    batches: list[tuple[int, int]] = []
    committer = Committer(db, on_commit=lambda units, events: batches.append((units, events)))
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        batches.clear()
        async with db.write():
            first = asyncio.ensure_future(committer.run(_unit(claim_made("c0", "a", 0, subject_id="s"))))
            await asyncio.sleep(0.1)  # the committer has taken it and waits for the lock
            rest = [
                asyncio.ensure_future(committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s"))))
                for i in range(1, 6)
            ]
            await asyncio.sleep(0.1)
        positions = await asyncio.gather(first, *rest)
    finally:
        await committer.close()
    assert batches == [(6, 6)]
    assert positions == list(range(4, 10))
