"""Live updates and caching, in process on both databases: the event stream, conditional GETs, CORS and
compression. (tests/test_processes.py runs real server processes.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.api.fanout import Filter, Hub, follow
from timeline.api.settings import Settings
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain.events import ClaimConfirmed, StatedDate, StatementMade
from timeline.service import Recorder
from timeline.store.database import Database

from .conftest import SEED

NIS = "nis-1500-soldiers-sent-for-training"


@pytest.fixture
async def seeded(db: Database) -> AsyncIterator[Database]:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    yield db  # noqa: PT022 - the db fixture disposes it


async def confirm(db: Database, confirmation_id: str, by: str = "france") -> int:
    """Record a confirmation of the seed's NIS claim by `by`; return its position."""
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        [recorded] = await recorder.record(
            ClaimConfirmed(
                claim_id=NIS,
                confirmation_id=confirmation_id,
                confirmed_by=by,
                statement="confirmed",
                stated_on=StatedDate(date="2024-10-25", precision="day"),
                document_ids=("000-16630df2654ec508",),
            ),
            origin="",
        )
        await recorder.finish()
    return recorded.position


class Message(msgspec.Struct, kw_only=True):
    """One Server-Sent Event as a client parses it."""

    id: int | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None


async def messages(chunks: AsyncIterator[bytes]) -> AsyncIterator[Message]:
    """The messages in a stream's bytes (one chunk may hold several)."""
    async for chunk in chunks:
        for block in chunk.decode().split("\n\n")[:-1]:
            message = Message()
            for line in block.split("\n"):
                field, _, value = line.partition(": ")
                if field == "":
                    message.comment = value
                elif field == "id":
                    message.id = int(value)
                elif field in ("event", "data"):
                    setattr(message, field, value)
            yield message


async def test_stream_replays_then_follows_live_commits(seeded: Database) -> None:
    hub = Hub(seeded)
    stream = messages(follow(hub, 27, Filter(), keepalive=0.2))
    replayed = [await anext(stream), await anext(stream)]
    assert [m.id for m in replayed] == [28, 29]
    assert json.loads(str(replayed[0].data))["type"] == "EvidenceAttached"
    idle = await anext(stream)
    assert idle.comment == "keep-alive"
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    position = await confirm(seeded, "live-1")
    live = await asyncio.wait_for(waiting, 5)
    while live.comment == "keep-alive":  # the stream may idle a moment while the commit is gathered
        live = await asyncio.wait_for(anext(stream), 5)
    assert live.id == position == 30
    assert live.event == "ClaimConfirmed"
    await stream.aclose()
    await hub.close()


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (Filter(claim=NIS), [13, 23]),
        (Filter(subject="dprk-russia-military-cooperation"), [3, 16, 20, 21, 22]),
        (Filter(source="cnn"), [8, 18, 27, 29]),
        (Filter(source="kremlin"), [12, 23, 24, 25, 26, 27]),
    ],
)
async def test_stream_filters(seeded: Database, where: Filter, expected: list[int]) -> None:
    hub = Hub(seeded)
    stream = messages(follow(hub, 0, where, keepalive=0.1))
    got = []
    while (message := await anext(stream)).comment is None:
        got.append(message.id)
    await stream.aclose()
    await hub.close()
    assert got == expected


async def test_conditional_get_cors_and_compression(seeded: Database, database_url: str) -> None:
    settings = Settings(cors_origins="https://newsroom.example")
    async with AsyncTestClient(app=create_app(Database(database_url), settings)) as client:
        url = "/subjects/dprk-troops-to-russia/timeline"
        first = await client.get(url)
        tag, modified = first.headers["etag"], first.headers["last-modified"]
        assert tag == 'W/"29"'
        assert (await client.get(url, headers={"If-None-Match": tag})).status_code == 304
        assert (await client.get(url, headers={"If-Modified-Since": modified})).status_code == 304
        estimates = "/subjects/dprk-troops-to-russia/estimates"
        assert (await client.get(estimates, headers={"If-None-Match": tag})).status_code == 304
        await confirm(seeded, "cache-buster")
        changed = await client.get(url, headers={"If-None-Match": tag})
        assert changed.status_code == 200
        assert changed.headers["etag"] == 'W/"30"'

        preflight = await client.options(
            "/claims",
            headers={
                "Origin": "https://newsroom.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, idempotency-key",
            },
        )
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == "https://newsroom.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        # Any other origin may read (public reads), without credentials; writing is for the listed origins.
        other = await client.get(url, headers={"Origin": "https://elsewhere.example"})
        assert other.headers["access-control-allow-origin"] == "*"

        for encoding in ("br", "gzip"):
            compressed = await client.get(
                "/events", params={"limit": 29}, headers={"Accept-Encoding": encoding}
            )
            assert compressed.headers["content-encoding"] == encoding
            assert len(compressed.json()["events"]) == 29  # the client decodes it


async def test_rebuild_serves_the_old_views_and_lets_writers_in_until_the_swap(seeded: Database) -> None:
    from timeline.store import queries, refold, views

    seen_during: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        # Called while the new views are folded: a writer gets through, readers see the live views.
        position = await asyncio.wait_for(confirm(seeded, "during-rebuild"), 5)
        async with seeded.read() as conn:
            record = await queries.claim(conn, NIS)
        assert record is not None
        seen_during.append((position, record.claim.version))

    replayed = await refold.rebuild_online(seeded, progress)
    assert seen_during == [(30, 3)]  # written and visible while the rebuild was folding
    assert replayed == 30  # the swap folded the event written meanwhile
    async with seeded.read() as conn:
        record = await queries.claim(conn, NIS)
        assert await views.checkpoint(conn) == 30
    assert record is not None
    assert record.claim.confirmed_by == ("france",)


async def test_cli_rebuild_shows_progress(
    seeded: Database, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from timeline import cli

    monkeypatch.setenv("TIMELINE_PROGRESS", "1")
    assert await asyncio.to_thread(cli.main, ["--database-url", database_url, "rebuild"]) == 0
    captured = capsys.readouterr()
    assert "rebuilt the views from 29 events" in captured.out
    assert "29/29 events" in captured.err
    assert "events/s" in captured.err
    assert "s left" in captured.err


async def test_a_rebuild_that_fails_midway_leaves_the_live_views_serving(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild folds into temporary tables that hide the live ones on its connection; a failure, even
    after they were filled and committed, must not let that connection reach anyone else through the pool."""
    from timeline.store import queries, refold, views

    async with seeded.read() as conn:
        before = await queries.estimates_for(conn, "dprk-troops-to-russia", None)

    async def fail(_: object) -> None:
        raise RuntimeError("stopped at the swap")

    with monkeypatch.context() as patched:
        patched.setattr(refold, "_swap_in_shadows", fail)
        with pytest.raises(RuntimeError, match="stopped at the swap"):
            await refold.rebuild_online(seeded, batch=5)
    for _ in range(6):  # more reads than the pool holds, so every pooled connection is used
        async with seeded.read() as conn:
            assert await queries.estimates_for(conn, "dprk-troops-to-russia", None) == before
            assert await views.checkpoint(conn) == 29
    assert await refold.rebuild_online(seeded, batch=5) == 29
    async with seeded.read() as conn:
        assert await queries.estimates_for(conn, "dprk-troops-to-russia", None) == before


async def test_a_statement_reaches_its_subjects_and_its_speakers_streams(seeded: Database) -> None:
    async with seeded.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        [said] = await recorder.record(
            StatementMade(
                subject_id="dprk-troops-to-russia",
                statement_id="cnn-on-air",
                source_id="cnn",
                statement="CNN said it keeps verifying the footage.",
                stated_on=StatedDate(date="2024-10-25", precision="day"),
                document_ids=("000-16630df2654ec508",),
            ),
            origin="",
        )
        await recorder.finish()
    hub = Hub(seeded)
    for where in (Filter(subject="dprk-troops-to-russia"), Filter(source="cnn")):
        stream = messages(follow(hub, said.position - 1, where, keepalive=0.1))
        message = await anext(stream)
        assert (message.id, message.event) == (said.position, "StatementMade")
        await stream.aclose()
    await hub.close()
