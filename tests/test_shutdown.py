"""Faults survived: shutdown answers every write it holds, and the projection worker outlives any error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api.app import create_app
from timeline.api.settings import Settings
from timeline.groupcommit import Committer, Unavailable
from timeline.service import Recorder
from timeline.store import activity, eventlog, projector, tokens
from timeline.store.database import Database
from timeline.store.eventlog import RecordedEvent

from .helpers import claim_made, document, source, subject


def _recording(event: object, *, before: asyncio.Event | None = None, gate: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
    async def unit(recorder: Recorder) -> int:
        recorder.act_as(recorded_by="test", label="test")
        if before is not None:
            before.set()
        if gate is not None:
            await gate.wait()
        [recorded] = await recorder.record(event, origin="")  # type: ignore[arg-type]
        return recorded.position

    return unit


async def _streams(db: Database) -> list[str]:
    async with db.read() as conn:
        return [e.stream_id for e in await eventlog.read_all(conn, limit=1000)]


async def test_close_answers_the_write_in_flight_and_those_queued_and_does_not_hang(db: Database) -> None:
    committer = Committer(db)
    await committer.run(_recording(subject("s")))
    started, never = asyncio.Event(), asyncio.Event()
    # A write stuck in its transaction (as if the database stopped answering), and three queued behind it.
    stuck = asyncio.create_task(committer.run(_recording(source("stuck"), before=started, gate=never)))
    await started.wait()
    queued = [asyncio.create_task(committer.run(_recording(source(f"q{i}")))) for i in range(3)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in [stuck, *queued])

    await asyncio.wait_for(committer.close(grace=0.2), timeout=10)

    with pytest.raises(Unavailable, match="may or may not have been recorded"):
        await asyncio.wait_for(stuck, timeout=1)
    for task in queued:
        with pytest.raises(Unavailable, match="was not recorded"):
            await asyncio.wait_for(task, timeout=1)
    with pytest.raises(Unavailable, match="shutting down"):
        await committer.run(_recording(source("late")))
    assert await _streams(db) == ["subject-s"]


async def test_close_lets_a_committing_batch_finish_within_its_grace(db: Database) -> None:
    committer = Committer(db)
    started, gate = asyncio.Event(), asyncio.Event()
    slow = asyncio.create_task(committer.run(_recording(subject("s"), before=started, gate=gate)))
    await started.wait()
    asyncio.get_running_loop().call_later(0.1, gate.set)

    await asyncio.wait_for(committer.close(grace=5), timeout=10)

    assert await slow == 1
    assert await _streams(db) == ["subject-s"]


async def test_a_write_during_shutdown_is_503_problem_json(database_url: str) -> None:
    seeding = Database(database_url)
    try:
        async with seeding.write() as conn:
            secret = await tokens.create(conn, "editor", ("write",))
    finally:
        await seeding.dispose()
    db = Database(database_url)
    app = create_app(db, Settings())
    async with AsyncTestClient(app=app) as client:
        # Shutdown has begun (the committer closes first), on the loop the app runs on.
        client.blocking_portal.call(app.state.committer.close)
        response = await client.post(
            "/subjects",
            json={"subject_id": "s", "name": "S"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert "shutting down" in response.json()["detail"]
    seeing = Database(database_url)
    try:
        assert await _streams(seeing) == []
    finally:
        await seeing.dispose()


class _Flaky:
    """The source-activity projection, failing with errors that are not database errors at first."""

    name = activity.name
    tables = activity.tables

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def apply(self, conn: AsyncConnection, events: Sequence[RecordedEvent]) -> None:
        if self.failures:
            self.failures -= 1
            raise ValueError("the fold cannot take this event")
        await activity.apply(conn, events)


class _Unreachable(_Flaky):
    """The source-activity projection, as if the database could not be reached at first."""

    async def apply(self, conn: AsyncConnection, events: Sequence[RecordedEvent]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        await activity.apply(conn, events)


@pytest.mark.parametrize("fault", [_Unreachable, _Flaky])
async def test_a_commit_cuts_the_projection_workers_backoff_short_only_after_the_databases_fault(
    db: Database, fault: type[_Flaky]
) -> None:
    # Over an outage the backoff doubles (0.25, 0.5, ... 8 s here: 15.75 s for six failures); once writes
    # commit, the database answers again and each retry comes soon after one, so the projection catches up
    # in a few seconds. A fault of its own (a bug, an event it cannot take) keeps its backoff: a commit is
    # no reason to expect it gone.
    committer = Committer(db)
    for event in (subject("s"), source("a"), document("d"), claim_made("c1", "a", 5)):
        await committer.run(_recording(event))
    worker = projector.Worker(db, [fault(failures=6)], idle=60, settle=0, backoff=0.25, max_backoff=60)
    task = asyncio.create_task(worker.run())

    stop = asyncio.Event()

    async def writing() -> None:  # an editor's writes, committing through the outage and after it
        for n in range(2, 1000):
            await committer.run(_recording(claim_made(f"c{n}", "a", n)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            if stop.is_set():
                return

    writer = asyncio.create_task(writing())
    try:
        for _ in range(500):  # until the worker has failed once
            if activity.name in worker.failing:
                break
            await asyncio.sleep(0.01)
        passing = fault is _Unreachable
        message = (
            "[Errno 111] Connect call failed ('127.0.0.1', 5432)"
            if passing
            else "the fold cannot take this event"
        )
        assert worker.failing[activity.name] == projector.Failing(message, passing=passing)
        counts = None
        for _ in range(80):  # 8 s, half of the backoffs' sum
            async with db.read() as conn:
                counts = await activity.of(conn, "a")
            if counts is not None:
                break
            await asyncio.sleep(0.1)
        assert (counts is not None) == passing
        if counts is not None:
            assert counts["claims_made"] >= 2
            assert activity.name not in worker.failing
    finally:
        # Stopped, not cancelled: a write cancelled inside the committer leaves a connection half made.
        stop.set()
        await writer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await committer.close()


async def test_the_projection_worker_logs_any_error_and_retries_until_it_catches_up(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    committer = Committer(db)
    for event in (
        subject("s"),
        source("a"),
        document("d"),
        claim_made("c1", "a", 5),
        claim_made("c2", "a", 6),
    ):
        await committer.run(_recording(event))
    await committer.close()
    flaky = _Flaky(failures=3)
    worker = projector.Worker(db, [flaky], idle=0.05, settle=0, backoff=0.01, max_backoff=0.04)
    with caplog.at_level(logging.ERROR, logger="timeline.projector"):
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(20):
                while True:
                    async with db.read() as conn:
                        counts = await activity.of(conn, "a")
                    if counts is not None:
                        break
                    assert not task.done(), "the worker died"
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert counts == {
        "claims_made": 2,
        "statements": 0,
        "denials": 0,
        "denials_withdrawn": 0,
        "confirmations": 0,
        "evidence": 0,
        "last_position": 5,
    }
    failures = [r for r in caplog.records if "projection source_activity failed" in r.getMessage()]
    assert [r.getMessage().split("(")[1].split(")")[0] for r in failures] == [
        "1 in a row",
        "2 in a row",
        "3 in a row",
    ]
    assert all(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in failures)
    async with db.read() as conn:
        position = (
            await conn.execute(
                sa.text("SELECT position FROM projection_checkpoints WHERE name = :n"), {"n": activity.name}
            )
        ).scalar_one()
    assert position == 5
