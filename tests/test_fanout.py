"""Live fan-out: one read of each new batch for every stream of a process, writes from other processes seen
promptly on both databases, LISTEN re-established after it drops, and streams ended when their token is
revoked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from timeline.api.fanout import Filter, Hub, follow
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import tokens
from timeline.store.database import Database

from .conftest import SEED, PostgresTemplate, fresh_postgres
from .test_live import Message, confirm, messages


@pytest.fixture
async def seeded(db: Database) -> AsyncIterator[Database]:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    yield db  # noqa: PT022 - the db fixture disposes it


class Reader:
    """A stream read in the background, keeping the ids of its events."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.ids: list[int] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read(messages(chunks)))

    async def _read(self, stream: AsyncIterator[Message]) -> None:
        async for message in stream:
            if message.id is not None:
                self.ids.append(message.id)
                self.arrived.set()

    async def until(self, count: int, seconds: float) -> list[int]:
        """The ids once there are ``count`` of them, or those that came within ``seconds``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while len(self.ids) < count and not self.task.done():
                    self.arrived.clear()
                    await self.arrived.wait()
        return self.ids

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_many_streams_share_one_read_per_batch_and_each_gets_its_events(seeded: Database) -> None:
    hub = Hub(seeded)
    everything = [Reader(follow(hub, 29, Filter(), keepalive=30)) for _ in range(40)]
    by_source = [Reader(follow(hub, 29, Filter(source="kremlin"), keepalive=30)) for _ in range(40)]
    quiet = [Reader(follow(hub, 29, Filter(subject="nobody-writes-here"), keepalive=30)) for _ in range(40)]
    await asyncio.sleep(0.3)
    batches_before = hub.batches
    written = [await confirm(seeded, f"fan-{i}", by="kremlin" if i % 2 else "france") for i in range(6)]
    for reader in everything:
        assert await reader.until(6, 5) == written
    for reader in by_source:
        assert await reader.until(3, 5) == written[1::2]
    assert all(reader.ids == [] for reader in quiet)
    # One read of the log per commit at most, however many streams are open (120 here).
    assert 1 <= hub.batches - batches_before <= len(written)
    for reader in [*everything, *by_source, *quiet]:
        await reader.close()
    await hub.close()


async def test_a_stream_far_behind_catches_up_from_the_log_without_gaps(seeded: Database) -> None:
    hub = Hub(seeded)
    live = Reader(follow(hub, 29, Filter(), keepalive=30))
    await asyncio.sleep(0.2)
    written = [await confirm(seeded, f"behind-{i}") for i in range(5)]
    assert await live.until(5, 5) == written
    late = Reader(follow(hub, 0, Filter(), keepalive=30))  # from the start of the log: before the window
    assert await late.until(34, 5) == list(range(1, 35))
    written.append(await confirm(seeded, "after-catch-up"))
    assert await late.until(35, 5) == list(range(1, 36))
    assert await live.until(6, 5) == written
    await late.close()
    await live.close()
    await hub.close()


async def test_a_write_through_another_process_reaches_a_stream_within_a_second(
    seeded: Database, database_url: str
) -> None:
    """Another Database object has its own notifier, as another process would: only the log tells."""
    hub = Hub(seeded, fallback=60)
    listener = seeded.listener()
    if listener is not None:
        await listener.start()
    reader = Reader(follow(hub, 29, Filter(), keepalive=60))
    await asyncio.sleep(0.3)
    other = Database(database_url)
    try:
        position = await confirm(other, "elsewhere")
        assert await reader.until(1, 1.0) == [position]
    finally:
        await other.dispose()
        await reader.close()
        await hub.close()
        if listener is not None:
            await listener.stop()


@pytest.fixture
async def pg_seeded(pg_template: PostgresTemplate | None) -> AsyncIterator[Database]:
    """A seeded PostgreSQL database (LISTEN is PostgreSQL's; SQLite streams look at the log instead)."""
    async with fresh_postgres(pg_template, "f") as url:
        db = Database(url)
        try:
            await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
            yield db
        finally:
            await db.dispose()


async def test_streams_resume_after_the_listen_connection_is_killed(pg_seeded: Database) -> None:
    seeded, database_url = pg_seeded, pg_seeded.url
    hub = Hub(seeded, fallback=60)  # no fallback look within the test: only LISTEN can wake the reader
    listener = seeded.listener()
    assert listener is not None
    await listener.start()
    reader = Reader(follow(hub, 29, Filter(), keepalive=60))
    await asyncio.sleep(0.3)
    other = Database(database_url)
    try:
        first = await confirm(other, "before-drop")
        assert await reader.until(1, 5) == [first]
        killed = listener.pid
        admin = await asyncpg.connect(seeded.dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", killed)
        finally:
            await admin.close()
        # Written while the listener may still be reconnecting, and after: none skipped, none repeated.
        more = [await confirm(other, f"after-drop-{i}") for i in range(3)]
        assert await reader.until(4, 10) == [first, *more]
        assert listener.pid not in (None, killed)
        last = await confirm(other, "reconnected")
        assert await reader.until(5, 5) == [first, *more, last]
    finally:
        await other.dispose()
        await reader.close()
        await hub.close()
        await listener.stop()


async def test_a_revoked_token_ends_its_streams_within_seconds(seeded: Database) -> None:
    async with seeded.write() as conn:
        kept = await tokens.create(conn, "kept-reader", ("read",))
        revoked = await tokens.create(conn, "revoked-reader", ("read",))
    verifier = tokens.Verifier(seeded)
    hub = Hub(seeded, verifier)
    staying = Reader(follow(hub, 29, Filter(), keepalive=60, secret=kept))
    going = [Reader(follow(hub, 29, Filter(), keepalive=60, secret=revoked)) for _ in range(3)]
    await asyncio.sleep(0.2)
    async with seeded.write() as conn:
        assert await tokens.revoke(conn, "revoked-reader")
    async with asyncio.timeout(8):
        await asyncio.gather(*(reader.task for reader in going))
    assert not staying.task.done()
    position = await confirm(seeded, "still-served")
    assert await staying.until(1, 5) == [position]
    await staying.close()
    await hub.close()
    await verifier.close()
