"""Group commit on both databases: units share a transaction, a failing unit rolls back alone."""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import groupcommit, signing
from timeline.app.errors import Rejected
from timeline.domain import claims
from timeline.domain.events import ClaimDenied, ClaimRevised, Quantity
from timeline.domain.streams import references, stream_of
from timeline.groupcommit import Committer, Unavailable, Unit
from timeline.service import Recorder
from timeline.store import audit, connections, driver, eventlog, idempotency, refold, schema, statements, tree
from timeline.store.database import UNLOCKED, Database
from timeline.store.idempotency import StoredResponse

from . import helpers
from .helpers import DAY, FoldCounter, claim_made, document, scalar, source, subject, until


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


async def test_a_batch_folds_each_claim_event_once_and_keeps_no_state_after(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules, the views' look ahead and the views each fold a batch's claim events: inside the batch the
    # second and third folds are the first's; after it, nothing is kept alive.
    committer = Committer(db)
    try:
        for registration in (subject("s"), source("a"), source("b"), document("d")):
            await committer.run(_unit(registration))
        counted = FoldCounter()
        monkeypatch.setattr(claims, "_step", counted)
        await asyncio.gather(
            *(committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s"))) for i in range(6))
        )
        made = counted.steps
        # Events on claims made before: the views fold them from the writer's own states of those claims.
        counted.steps = 0
        later = [
            *(_revised(f"c{i}", i + 100) for i in range(3)),
            *(_denied(f"c{i}", "b") for i in range(3, 6)),
        ]
        await asyncio.gather(*(committer.run(_unit(event)) for event in later))
    finally:
        await committer.close()
    assert made == 6
    # Each claim's stream is read by folding its ClaimMade (no stream record under 8 events), then each new
    # event is folded once.
    assert counted.steps == 6 + 6
    assert not claims._FOLDED


def _revised(claim_id: str, value: int) -> ClaimRevised:
    return ClaimRevised(
        claim_id=claim_id,
        revision_id=f"{claim_id}-r",
        statement=f"now {value}",
        stated_on=DAY,
        document_ids=("d",),
        quantity=Quantity(comparator="about", value=value, unit="soldiers"),
    )


def _denied(claim_id: str, by: str) -> ClaimDenied:
    return ClaimDenied(
        claim_id=claim_id,
        denial_id=f"{claim_id}-no",
        denied_by=by,
        statement="no",
        stated_on=DAY,
        document_ids=("d",),
    )


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
    # Another writer (here the test itself; another process in production) holds the log's lock and
    # appends. The batch that was waiting for it takes every write queued meanwhile, rather than leaving
    # them a turn of their own. (On PostgreSQL the batch waited in its one unlocked statement, which finds
    # the log moved on and runs the batch again under the lock, taking them then. A holder that appends
    # nothing, as a rebuild's swap or a token's creation, lets that statement commit the batch as it was,
    # and the writes queued meanwhile make the next one.)
    batches: list[tuple[int, int]] = []
    committer = Committer(db, on_commit=lambda units, events: batches.append((units, events)))
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        batches.clear()
        async with db.write() as conn:
            first = asyncio.ensure_future(committer.run(_unit(claim_made("c0", "a", 0, subject_id="s"))))
            await asyncio.sleep(0.1)  # the committer has taken it and waits for the lock
            rest = [
                asyncio.ensure_future(committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s"))))
                for i in range(1, 6)
            ]
            recorder = Recorder(conn, recorded_by="other", label="other")
            await recorder.record(source("b"), origin="")
            await recorder.finish()
            await asyncio.sleep(0.1)
        positions = await asyncio.gather(first, *rest)
    finally:
        await committer.close()
    assert batches == [(6, 6)]
    assert positions == list(range(5, 11))
    async with db.read() as conn:
        assert (await audit.verify(conn)).ok


async def _rounds(db: Database, writers: int, rounds: int, away: float) -> list[int]:
    """The batch sizes (units) when ``writers`` each write ``rounds`` claims, spending ``away`` seconds
    elsewhere between one write's answer and the next (a client's round trip and the server's parsing)."""
    batches: list[int] = []
    committer = Committer(db, on_commit=lambda units, _events: batches.append(units))
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        batches.clear()

        async def writer(w: int) -> None:
            for i in range(rounds):
                await committer.run(_unit(claim_made(f"c{w}-{i}", "a", i, subject_id="s")))
                if away:
                    await asyncio.sleep(away)

        await asyncio.gather(*(writer(w) for w in range(writers)))
    finally:
        await committer.close()
    async with db.read() as conn:
        assert await eventlog.head_position(conn) == 3 + writers * rounds
    return batches


async def test_writers_that_come_back_slowly_are_committed_in_two_halves(db: Database) -> None:
    # 32 writers, each away a while between writes (as HTTP clients are): after the first batch took all
    # of them, one half is committed while the other is away, so the process has work during the
    # database's round trips. A batch of 32 a round would leave it idle then.
    batches = await _rounds(db, writers=32, rounds=3, away=0.05)
    assert batches[0] == 32
    # Once they all went in one batch, the next holds at most a half of them, whatever the timing. How the
    # rest fall into batches depends on when each comes back: usually in halves of 16, but on a loaded host a
    # half can come back while the other's batch waits for the lock and join it, and writers woken apart
    # make smaller batches (seen with two test processes and two busy loops on two cores).
    assert batches[1] <= 16
    assert sum(batches) == 96


async def test_writers_that_write_again_at_once_keep_one_batch(db: Database) -> None:
    # In-process writers with nothing to do between writes: halves would only cost a transaction more.
    assert await _rounds(db, writers=32, rounds=4, away=0) == [32] * 4


async def test_too_few_writers_for_two_halves_keep_one_batch(db: Database) -> None:
    # Halves of fewer than groupcommit.HALF_AT_LEAST writes cost more than their overlap gives back.
    writers = 2 * groupcommit.HALF_AT_LEAST - 1
    assert (await _rounds(db, writers=writers, rounds=3, away=0.05))[:2] == [writers] * 2


# A write on PostgreSQL without a transaction of its own: its read, then one call that locks, checks the head,
# writes and commits (statements.APPEND). Only PostgreSQL has it; SQLite's statements run in process.
on_postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def _kept(db: Database) -> tuple[AsyncConnection, Any] | None:
    """The connection the last write without the lock kept for the next (store.parking), if any."""
    assert db._appending is not None
    return db._appending.held


def _statements(db: Database) -> list[str]:
    """Every statement the committer's connections send from now on, as asyncpg runs them."""
    sent: list[str] = []
    logged: weakref.WeakSet[Any] = weakref.WeakSet()  # the connections that have the logger already

    def log_on(dbapi: Any, *_: Any) -> None:
        connection = dbapi.driver_connection
        if connection not in logged:
            logged.add(connection)
            connection.add_query_logger(lambda record: sent.append(record.query))

    assert db._appender is not None
    sa.event.listen(db._appender.sync_engine.pool, "checkout", log_on)
    held = _kept(db)
    if held is not None:
        # The connection the last write kept is taken again without a checkout.
        log_on(held[0].sync_connection.connection.dbapi_connection)  # type: ignore[union-attr]
    return sent


def _tries(committer: Committer) -> list[tuple[bool, str | None]]:
    """The committer's transactions from now on: whether each began without the lock, and the class of the
    error it ended in (None if it committed)."""
    tries: list[tuple[bool, str | None]] = []
    transaction = committer._transaction

    async def noting(batch: list, *, savepoints: bool, unlocked: bool = False) -> Any:  # type: ignore[type-arg]
        try:
            outcomes = await transaction(batch, savepoints=savepoints, unlocked=unlocked)
        except Exception as exc:
            tries.append((unlocked, type(exc).__name__))
            raise
        tries.append((unlocked, None))
        return outcomes

    committer._transaction = noting  # type: ignore[method-assign]
    return tries


def _refusals(tries: list[tuple[bool, str | None]]) -> list[str]:
    return [error for unlocked, error in tries if unlocked and error is not None]


@on_postgresql
async def test_a_batch_on_postgresql_is_its_read_and_one_call_that_locks_checks_and_commits(
    db: Database,
) -> None:
    committer = Committer(db)
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        sent = _statements(db)
        events = [claim_made(f"c{i}", "a", i, subject_id="s") for i in range(3)]
        positions = await asyncio.gather(
            *(
                committer.run(_unit(e), reads=[stream_of(e)], probes=references(e), proposed=[e])
                for e in events
            )
        )
    finally:
        await committer.close()
    assert sorted(positions) == [4, 5, 6]
    # No BEGIN, LOCK or COMMIT of their own: the read, and the function that does all three.
    assert [q.split("(")[0].split()[0] for q in sent] == ["SELECT", "SELECT"]
    assert "timeline_append(" in sent[1]
    async with db.read() as conn:
        assert (await audit.verify(conn)).ok
        assert [e.stream_id for e in await eventlog.read_all(conn, after=3)] == [
            "claim-c0",
            "claim-c1",
            "claim-c2",
        ]


async def _backend_gone(db: Database, pid: int) -> bool:
    return bool(await scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=pid) == 0)


@on_postgresql
async def test_a_write_without_the_lock_keeps_its_connection_for_the_next_and_dispose_closes_it(
    db: Database,
) -> None:
    committer = Committer(db)
    assert db._appender is not None
    checkouts = helpers.checkouts(db._appender)
    try:
        for n, registered in enumerate((subject("s"), source("a"), document("d")), start=1):
            assert await committer.run(_unit(registered)) == n
        # The second and third writes took the connection the first one kept.
        assert checkouts == [1]
        kept = _kept(db)
        assert kept is not None
        pid = kept[1].get_server_pid()
    finally:
        await committer.close()
    await db.dispose()
    await until(lambda: _backend_gone(db, pid))


@on_postgresql
async def test_a_kept_connection_the_server_closed_is_not_handed_to_the_next_write(db: Database) -> None:
    committer = Committer(db)
    try:
        await committer.run(_unit(subject("s")))
        kept = _kept(db)
        assert kept is not None
        assert await scalar(db, "SELECT pg_terminate_backend(:pid)", pid=kept[1].get_server_pid())
        await until(kept[1].is_closed)  # the loop has read the server's goodbye
        # Not a failure and a 503: the write takes a connection of the pool instead.
        assert await committer.run(_unit(source("a"))) == 2
    finally:
        await committer.close()


@on_postgresql
async def test_a_write_without_the_lock_that_fails_or_is_cancelled_gives_its_connection_back(
    db: Database,
) -> None:
    committer = Committer(db)
    assert db._appender is not None
    checkouts = helpers.checkouts(db._appender)
    try:
        await committer.run(_unit(subject("s")))
        with pytest.raises(RuntimeError):
            async with db.append():
                raise RuntimeError("the caller failed midway")
        assert await committer.run(_unit(source("a"))) == 2
        assert checkouts == [2]  # the failed write's connection went back; the next checked one out

        async def stuck() -> None:
            async with db.append() as conn:
                await conn.info[UNLOCKED].execute("SELECT pg_sleep(30)")

        async def sleeping() -> bool:
            query = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"
            return bool(await scalar(db, query) == 1)

        task = asyncio.create_task(stuck())
        await until(sleeping)  # cancelled with its statement under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Given back as a failed write's is (asyncpg would wait for its own cancel before another statement
        # on it, so the next write goes through either way).
        assert await committer.run(_unit(document("d"))) == 3
        assert checkouts == [3]
    finally:
        await committer.close()


@on_postgresql
async def test_a_write_without_the_lock_that_left_a_transaction_open_is_not_kept_in_it(db: Database) -> None:
    committer = Committer(db)
    try:
        await committer.run(_unit(subject("s")))
        async with db.append() as conn:
            await conn.info[UNLOCKED].execute("BEGIN")
        # Had the next write run in that transaction, its append would not have committed.
        assert await committer.run(_unit(source("a"))) == 2
        async with db.read() as conn:
            assert [e.stream_id for e in await eventlog.read_all(conn, after=0)] == [
                "subject-s",
                "source-a",
            ]
    finally:
        await committer.close()


@on_postgresql
async def test_a_batch_whose_log_moved_on_after_its_reads_runs_again_under_the_lock(db: Database) -> None:
    # Between the batch's read and its write, another transaction appends (as another process would). The
    # one call finds the head moved and writes nothing; the batch runs again holding the lock, continuing
    # the chain from the new head.
    committer = Committer(db)
    tries = _tries(committer)
    # Another process's database: this one's sealer does not see its commit.
    other = Database(db.url)
    runs = 0

    async def interleaved(recorder: Recorder) -> int:
        nonlocal runs
        runs += 1
        position = await _unit(claim_made("c0", "a", 0, subject_id="s"))(recorder)
        if runs == 1:
            async with other.write() as conn:
                elsewhere = Recorder(conn, recorded_by="other", label="other")
                await elsewhere.record(source("b"), origin="")
                await elsewhere.finish()
        return position

    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        tries.clear()  # the first write of a process reads the tree back, under the lock
        position = await committer.run(interleaved)
        later = await committer.run(_unit(claim_made("c1", "a", 1, subject_id="s")))
    finally:
        await committer.close()
        await other.dispose()
    assert _refusals(tries) == ["MovedOn"]
    assert runs == 2
    assert (position, later) == (5, 6)
    async with db.read() as conn:
        assert [e.stream_id for e in await eventlog.read_all(conn, after=3)] == [
            "source-b",
            "claim-c0",
            "claim-c1",
        ]
        assert (await audit.verify(conn)).ok


@on_postgresql
async def test_processes_writing_in_turn_append_without_the_lock_and_sign_every_checkpoint(
    db: Database,
) -> None:
    # Each process's remembered frontier goes stale whenever the other writes. Reading it back takes one
    # statement on the driver, not the tree's queries through SQLAlchemy, which only a transaction holding
    # the log's lock may send: so a write after another process's commits as it would have anyway, in its
    # read and one call, and its checkpoint is signed over the right root.
    signer = signing.Signer.generate("test.example/log")
    one, two = Database(db.url, signer=signer), Database(db.url, signer=signer)
    first, second = Committer(one), Committer(two)
    tries = [_tries(first), _tries(second)]
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await first.run(_unit(registered))
        # Past 16 events, so the frontier read back holds stored nodes as well as events after them.
        for i in range(24):
            committer = (first, second)[i % 2 if i < 12 else (i // 3) % 2]
            await committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s")))
    finally:
        await first.close()
        await second.close()
        await two.dispose()
    assert [t for both in tries for t in both] == [(True, None)] * 27
    async with one.read() as conn:
        report = await audit.verify(conn, verifier=signer.verifier_text())
        checkpoints = await tree.all_checkpoints(conn)
    await one.dispose()
    assert report.ok
    assert (report.signed_size, report.unsigned) == (27, 0)
    assert [c.size for c in checkpoints] == list(range(1, 28))


@on_postgresql
async def test_a_batch_that_would_leave_events_unsigned_does_so_under_the_lock_and_says_so(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Another process appended without the key: this one's seal reads that back without the lock, but a
    # write that leaves events unsigned runs under it, where the transaction logs the warning an operator
    # acts on and signs nothing over the event written without the key.
    signer = signing.Signer.generate("test.example/log")
    keyed = Database(db.url, signer=signer)
    committer = Committer(keyed)
    tries = _tries(committer)
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        async with db.write() as conn:  # db has no key
            elsewhere = Recorder(conn, recorded_by="other", label="other")
            await elsewhere.record(source("b"), origin="")
            await elsewhere.finish()
        tries.clear()
        with caplog.at_level(logging.WARNING, logger="timeline.store"):
            assert await committer.run(_unit(claim_made("c0", "a", 0, subject_id="s"))) == 5
    finally:
        await committer.close()
    assert tries == [(True, "NeedsLock"), (False, None)]
    assert "events 4-5 are left unsigned" in caplog.text
    async with keyed.read() as conn:
        assert [c.size for c in await tree.all_checkpoints(conn)] == [1, 2, 3]
    await keyed.dispose()


@on_postgresql
async def test_a_unit_that_sends_its_own_statement_runs_under_the_lock_and_commits_once(
    db: Database,
) -> None:
    # A statement through SQLAlchemy could write, and outside a transaction it would commit alone: it is
    # refused before it is sent, and the batch runs again in a transaction that holds the lock.
    committer = Committer(db)
    runs = 0

    async def querying(recorder: Recorder) -> int:
        nonlocal runs
        runs += 1
        await recorder.conn.execute(sa.text("SELECT 1"))
        return await _unit(claim_made("c0", "a", 0, subject_id="s"))(recorder)

    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        position = await committer.run(querying)
    finally:
        await committer.close()
    assert runs == 2
    assert position == 4
    async with db.read() as conn:
        assert [e.stream_id for e in await eventlog.read_all(conn, after=3)] == ["claim-c0"]
        assert (await audit.verify(conn)).ok


@on_postgresql
async def test_batches_take_the_lock_up_front_for_a_while_after_two_unlocked_tries_failed(
    db: Database,
) -> None:
    # Each failed try costs the batch's read: with another process appending all the time, trying every
    # batch would double the reads. After two refusals in a row, batches lock first for LOCKED_SPELL.
    committer = Committer(db)
    tries = _tries(committer)

    async def querying(recorder: Recorder) -> None:
        await recorder.conn.execute(sa.text("SELECT 1"))

    try:
        await committer.run(_unit(subject("s")))
        await committer.run(_unit(source("a")))
        await committer.run(querying)
        await committer.run(querying)
        await committer.run(_unit(document("d")))
        spell = committer._locked_until - asyncio.get_running_loop().time()
    finally:
        await committer.close()
    # The first write of a process reads the tree's frontier back in one statement and needs no lock, nor
    # does the second; then two refusals in a row, after which the next batch takes the lock up front.
    assert [unlocked for unlocked, _ in tries] == [True, True, True, False, True, False, False]
    assert 0 < spell <= groupcommit.LOCKED_SPELL


@on_postgresql
async def test_the_append_function_in_the_database_is_the_statement_the_code_sends(db: Database) -> None:
    # The function is schema, created by a migration from this text: a change to the statement without a
    # migration that replaces it would leave the database running the old one.
    async with db.read() as conn:
        found = (
            await conn.execute(
                sa.text(
                    "SELECT prosrc, pg_get_function_identity_arguments(p.oid), prorettype::regtype::text, "
                    "l.lanname, p.provolatile::text, p.proconfig FROM pg_proc p "
                    "JOIN pg_language l ON l.oid = p.prolang WHERE proname = :name AND pronargs = :arguments"
                ),
                {"name": statements.APPEND_FUNCTION, "arguments": len(statements._APPEND_TYPES)},
            )
        ).one()
    assert found[0] == statements.APPEND_BODY
    assert tuple(found[2:]) == ("bigint", "plpgsql", "v", ["plan_cache_mode=force_generic_plan"])
    assert "RETURNS bigint" in statements.CREATE_APPEND_FUNCTION
    assert found[1] == ", ".join(
        {
            "int[]": "integer[]",
            "timestamptz": "timestamp with time zone",
            "timestamptz[]": "timestamp with time zone[]",
        }.get(t, t)
        for t in statements._APPEND_TYPES
    )


@on_postgresql
async def test_an_online_rebuild_between_a_batchs_read_and_its_write_makes_it_run_again(
    db: Database,
) -> None:
    # A rebuild swaps repaired view rows in under the lock without appending: the head does not move, but
    # a batch that read the old rows must not write rows worked out from them over the repaired ones.
    committer = Committer(db)
    tries = _tries(committer)
    other = Database(db.url)
    c2 = claim_made("c2", "a", 5, subject_id="s")
    runs = 0

    async def racing(recorder: Recorder) -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            await refold.rebuild_online(other)  # after this batch's read
        return await _unit(c2)(recorder)

    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        await committer.run(_unit(claim_made("c0", "a", 0, subject_id="s")))
        await committer.run(_unit(claim_made("c1", "a", 1, subject_id="s")))
        async with db.write() as conn:  # a wrong row in a view: what a rebuild is for
            await conn.execute(sa.update(schema.estimates).values(asserted_claim_id="c0"))
        tries.clear()  # the first write of a process reads the tree back, under the lock
        await committer.run(racing, reads=[stream_of(c2)], probes=references(c2), proposed=[c2])
        served = await _views(db)
        await refold.rebuild_online(other)
        rebuilt = await _views(db)
    finally:
        await committer.close()
        await other.dispose()
    assert _refusals(tries) == ["MovedOn"]
    assert runs == 2
    assert served == rebuilt


async def _views(db: Database) -> dict[str, list[tuple[object, ...]]]:
    async with db.read() as conn:
        return {
            table.name: sorted(tuple(row) for row in await conn.execute(sa.select(table)))
            for table in (schema.claims, schema.estimates, schema.timeline, schema.registrations)
        }


_KILLED_WRITER = """
import asyncio, sys
from timeline.groupcommit import Committer
from timeline.store.database import Database
from tests.helpers import claim_made, subject

async def main():
    db = Database(sys.argv[1])
    committer = Committer(db)

    def unit(event):
        async def run(recorder):
            recorder.act_as(recorded_by="killed", label="killed")
            await recorder.record(event, origin="")
        return run

    await committer.run(unit(subject("w")))  # a process's first write reads the tree back, under the lock
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await committer.run(unit(claim_made("killed", "a", 9, subject_id="s")))

asyncio.run(main())
"""


@on_postgresql
async def test_an_append_waiting_for_the_lock_when_its_process_is_killed_writes_nothing(
    db: Database,
) -> None:
    # The append commits by itself once it has the lock; had nobody noticed its process died meanwhile, a
    # write that no one acknowledged would appear later, and a client retrying it would write it twice.
    committer = Committer(db)
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
    finally:
        await committer.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WRITER,
        db.url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        async with db.write():  # holds the lock while the killed process's append waits for it
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            for _ in range(100):  # until its append waits for the lock
                if await _appends_waiting(db):
                    break
                await asyncio.sleep(0.1)
            assert await _appends_waiting(db) == 1
            proc.kill()
            await proc.wait()
            await asyncio.sleep(connections.CLIENT_CHECK_MS / 1000 * 3)
        for _ in range(100):  # until the append, given the lock, has committed or been dropped
            if not await _appends_waiting(db):
                break
            await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    async with db.read() as conn:
        streams = [e.stream_id for e in await eventlog.read_all(conn, after=3)]
    assert streams == ["subject-w"]


async def _appends_waiting(db: Database) -> int:
    """Calls of the append function the server is running now, from other connections."""
    async with db.read() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                "AND datname = current_database() AND query LIKE 'SELECT timeline_append(%'"
            )
        )
        return int(found.scalar_one())


@on_postgresql
async def test_the_append_function_before_0020_stays_for_servers_still_running_the_code_before_it(
    db: Database,
) -> None:
    # API processes upgraded one at a time: one still on the code before migration 0020 calls the function
    # with its 57 arguments, and would fail every write until restarted had 0020 dropped it.
    async with db.read() as conn:
        found = await conn.execute(
            sa.text("SELECT pronargs FROM pg_proc WHERE proname = :name ORDER BY pronargs"),
            {"name": statements.APPEND_FUNCTION},
        )
        arguments = list(found.scalars())
    assert arguments == [57, len(statements._APPEND_TYPES)]


def _keyed_unit(key: str, event: object | None) -> Unit:
    """A unit that answers from ``key``'s stored response if there is one, else records ``event`` (if any)
    and stores its answer under the key, as commands.record does."""

    async def unit(recorder: Recorder) -> int:
        recorder.act_as(recorded_by="test", label="test")
        if await idempotency.lookup(recorder.conn, "test", key) is not None:
            return -1
        position = 0
        if event is not None:
            [recorded] = await recorder.record(event, origin="")  # type: ignore[arg-type]
            position = recorded.position
        answer = StoredResponse(request_hash="h", status_code=201, body=b'{"position": %d}' % position)
        await idempotency.store(recorder.conn, "test", key, answer)
        return position

    return unit


@on_postgresql
async def test_keyed_writes_append_without_the_lock_with_their_answers_in_the_same_call(db: Database) -> None:
    # A batch with idempotency keys reads them beside its streams and stores their answers in the appending
    # call: no transaction of its own, as an unkeyed batch (it had always taken the lock, six round trips).
    committer = Committer(db)
    tries = _tries(committer)
    keys = [("test", "k0")]
    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        tries.clear()
        first = await committer.run(_keyed_unit("k0", claim_made("c0", "a", 0, subject_id="s")), keys=keys)
        retried = await committer.run(_keyed_unit("k0", claim_made("c1", "a", 1, subject_id="s")), keys=keys)
    finally:
        await committer.close()
    assert (first, retried) == (4, -1)
    assert tries == [(True, None), (True, None)]
    async with db.read() as conn:
        stored = await idempotency.lookup(conn, "test", "k0")
        assert [e.stream_id for e in await eventlog.read_all(conn, after=3)] == ["claim-c0"]
        assert (await audit.verify(conn)).ok
    assert stored is not None
    assert stored.body == b'{"position": 4}'


@on_postgresql
async def test_a_keyed_batch_that_appends_nothing_stores_its_answer_under_the_lock(db: Database) -> None:
    # Every write of the batch replayed or already recorded: its keys' answers are all it writes. Without
    # the lock their insert would not take it either, and a batch of another process that read the key as
    # unanswered under the lock would then fail on the key (a 500 for all its writes): every insert of a key
    # is made under the log's lock, so this batch takes it.
    committer = Committer(db)
    tries = _tries(committer)
    try:
        await committer.run(_unit(subject("s")))
        tries.clear()
        assert await committer.run(_keyed_unit("k0", None), keys=[("test", "k0")]) == 0
        assert await committer.run(_keyed_unit("k0", None), keys=[("test", "k0")]) == -1
    finally:
        await committer.close()
    # The replay writes nothing, and needs no lock.
    assert tries == [(True, "NeedsLock"), (False, None), (True, None)]
    async with db.read() as conn:
        stored = await idempotency.lookup(conn, "test", "k0")
        assert await eventlog.read_all(conn, after=1) == []
    assert stored is not None
    assert stored.body == b'{"position": 0}'


@on_postgresql
async def test_a_key_answered_by_another_process_meanwhile_fails_the_append_and_the_retry_replays_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the lock, another process can answer a key between this batch's read of it and its append
    # (by a write that appends nothing, so the log's head has not moved). The append then fails on the
    # keys' primary key with nothing written, and the batch runs again under the lock, where it finds the
    # other process's answer and replays it: the request is not recorded twice.
    other = Database(db.url)
    elsewhere = Committer(other)
    committer = Committer(db)
    tries = _tries(committer)
    refused: list[str] = []
    transaction = committer._transaction

    async def noting(batch: list, *, savepoints: bool, unlocked: bool = False) -> Any:  # type: ignore[type-arg]
        try:
            return await transaction(batch, savepoints=savepoints, unlocked=unlocked)
        except Exception as exc:
            refused.append(str(exc))
            raise

    committer._transaction = noting  # type: ignore[method-assign]
    keys = [("test", "k0")]
    read = idempotency.Pending.read.__func__  # type: ignore[attr-defined]
    raced = False

    async def racing(cls: type, conn: AsyncConnection, asked: Any) -> Any:
        nonlocal raced
        found = await read(cls, conn, asked)
        if conn.info.get(UNLOCKED) is not None and not raced:
            raced = True
            assert await elsewhere.run(_keyed_unit("k0", None), keys=keys) == 0
        return found

    try:
        for registered in (subject("s"), source("a"), document("d")):
            await committer.run(_unit(registered))
        tries.clear()
        monkeypatch.setattr(idempotency.Pending, "read", classmethod(racing))
        answered = await committer.run(_keyed_unit("k0", claim_made("c0", "a", 0, subject_id="s")), keys=keys)
    finally:
        await committer.close()
        await elsewhere.close()
        await other.dispose()
    assert raced
    assert answered == -1
    assert tries == [(True, "MovedOn"), (False, None)]
    # Refused by the keys' primary key, not by a moved head: the other process appended nothing.
    assert refused == ["an idempotency key was answered since this write read it"]
    async with db.read() as conn:
        stored = await idempotency.lookup(conn, "test", "k0")
        assert await eventlog.read_all(conn, after=3) == []
        assert (await audit.verify(conn)).ok
    assert stored is not None
    assert stored.body == b'{"position": 0}'


def test_a_batch_answers_each_idempotency_key_once() -> None:
    # A unit that stored an answer under a key already answered (before the batch, or by an earlier unit)
    # would replace it in the batch's answers, and a rewind of that unit, which drops the answers it added,
    # would not bring the first one back: it is refused instead, as the unit's own error.
    first = StoredResponse(request_hash="h1", status_code=201, body=b"{}")
    second = StoredResponse(request_hash="h2", status_code=201, body=b"{}")
    pending = idempotency.Pending({("test", "old"), ("test", "new")}, {("test", "old"): first})
    with pytest.raises(RuntimeError, match="'old' of 'test' is answered already: look a key up"):
        pending.put(("test", "old"), second)
    pending.put(("test", "new"), first)
    mark = pending.mark()
    with pytest.raises(RuntimeError, match="answered already"):
        pending.put(("test", "new"), second)
    pending.rewind(mark)
    assert pending.get(("test", "new")) == first
    assert pending.take() == [("test", "new", "h1", 201, "{}")]
