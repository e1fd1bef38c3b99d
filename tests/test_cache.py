"""The read routes' response cache: served while the views stand still, never after they moved, whichever
process moved them; and the clocks that tell where the views stand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.datastructures import MultiDict, State
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api.app import create_app
from timeline.api.cache import ResponseCache, _Entry, respond
from timeline.api.settings import Settings
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import clock, refold, schema, tokens
from timeline.store.database import Database

from .conftest import SEED

SUBJECT = "dprk-troops-to-russia"
NIS = "nis-1500-soldiers-sent-for-training"
DOC = "000-16630df2654ec508"
ESTIMATES = f"/subjects/{SUBJECT}/estimates"

Client = AsyncTestClient  # type: ignore[type-arg]


@pytest.fixture
async def seeded(database_url: str) -> str:
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        async with seeding.write() as conn:
            return await tokens.create(conn, "editor", ("write",))
    finally:
        await seeding.dispose()


@pytest.fixture
async def two_apps(database_url: str, seeded: str) -> AsyncIterator[tuple[Client, Client]]:
    """Two instances of the app on one database, as two server processes would be."""
    async with (
        AsyncTestClient(app=create_app(Database(database_url))) as reader,
        AsyncTestClient(app=create_app(Database(database_url))) as writer,
    ):
        writer.headers["Authorization"] = f"Bearer {seeded}"
        yield reader, writer


async def _cache(client: Client) -> dict[str, int]:
    body = (await client.get("/health")).json()
    return body["response_cache"]  # type: ignore[no-any-return]


def _nis(response: Any) -> dict[str, Any]:
    return next(e for e in response.json()["estimates"] if e["source"]["id"] == "south-korea-nis")


async def test_a_repeated_read_is_answered_from_the_cache(two_apps: tuple[Client, Client]) -> None:
    reader, _ = two_apps
    first = await reader.get(ESTIMATES, params={"metric": "soldiers-sent"})
    before = await _cache(reader)
    again = await reader.get(ESTIMATES, params={"metric": "soldiers-sent"})
    after = await _cache(reader)
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-type"] == "application/json"
    assert after["hits"] == before["hits"] + 1
    assert after["misses"] == before["misses"]
    assert after["entries"] >= 1
    assert after["bytes"] >= len(first.content)


async def test_a_write_through_another_process_is_seen_at_once(two_apps: tuple[Client, Client]) -> None:
    reader, writer = two_apps
    stale = await reader.get(ESTIMATES)
    assert _nis(stale)["quantity"]["value"] == 1500
    await reader.get(ESTIMATES)  # now cached
    revised = await writer.post(
        f"/claims/{NIS}/revisions",
        json={
            "statement": "Now about 3,000.",
            "stated_on": "2024-10-25",
            "document_ids": [DOC],
            "quantity": {"comparator": "about", "value": 3000, "unit": "soldiers"},
        },
    )
    assert revised.status_code == 201, revised.text
    fresh = await reader.get(ESTIMATES)
    assert _nis(fresh)["quantity"]["value"] == 3000
    assert fresh.headers["etag"] != stale.headers["etag"]
    # The old validator no longer matches; the new one does.
    assert (await reader.get(ESTIMATES, headers={"If-None-Match": stale.headers["etag"]})).status_code == 200
    current = await reader.get(ESTIMATES, headers={"If-None-Match": fresh.headers["etag"]})
    assert current.status_code == 304
    assert current.content == b""
    history = (await reader.get(f"/claims/{NIS}/history")).json()
    assert [e["type"] for e in history["events"]][-1] == "ClaimRevised"


async def test_a_burst_of_identical_requests_builds_the_answer_once(db: Database, seeded: str) -> None:
    views_clock = clock.for_database(db)
    cache = ResponseCache(views_clock, 1_000_000)
    request: Any = SimpleNamespace(
        app=SimpleNamespace(state=State({"response_cache": cache})),
        url=SimpleNamespace(path="/slow"),
        query_params=MultiDict(),
        headers={},
    )
    builds = 0

    async def slow(conn: AsyncConnection) -> tuple[dict[str, int], dict[str, str]]:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)  # long enough for every request of the burst to arrive meanwhile
        return {"answer": 42}, {}

    try:
        responses = await asyncio.gather(*(respond(request, db, slow) for _ in range(20)))
    finally:
        await views_clock.close()
    assert builds == 1
    assert {r.content for r in responses} == {b'{"answer":42}'}
    assert (cache.hits, cache.misses) == (19, 1)


async def test_a_rebuild_at_the_same_position_is_not_hidden_by_the_cache(
    two_apps: tuple[Client, Client], db: Database
) -> None:
    """A rebuild (after a projection fix, say) changes rows without moving the log: cached answers built
    before it must not outlive it."""
    reader, _ = two_apps
    async with db.write() as conn:  # a view row lost, as a projection bug would lose it
        await conn.execute(
            sa.delete(schema.estimates).where(schema.estimates.c.source_id == "south-korea-nis")
        )
    broken = await reader.get(ESTIMATES)
    assert "south-korea-nis" not in {e["source"]["id"] for e in broken.json()["estimates"]}
    assert (await reader.get(ESTIMATES)).content == broken.content  # served from the cache
    await refold.rebuild_online(db)
    assert _nis(await reader.get(ESTIMATES))["quantity"]["value"] == 1500


async def test_query_order_does_not_matter_and_parameters_do(two_apps: tuple[Client, Client]) -> None:
    reader, _ = two_apps
    page = f"/subjects/{SUBJECT}/timeline"
    one = await reader.get(f"{page}?limit=2&kind=made")
    before = await _cache(reader)
    two = await reader.get(f"{page}?kind=made&limit=2")
    assert (await _cache(reader))["hits"] == before["hits"] + 1
    assert two.content == one.content
    other = await reader.get(f"{page}?limit=3&kind=made")
    assert len(other.json()["entries"]) == 3
    assert len(two.json()["entries"]) == 2


async def test_a_cached_claim_keeps_its_version_etag_and_answers_304(two_apps: tuple[Client, Client]) -> None:
    reader, _ = two_apps
    first = await reader.get(f"/claims/{NIS}")
    version = first.json()["version"]
    assert first.headers["etag"] == f'"{version}"'
    cached = await reader.get(f"/claims/{NIS}", headers={"If-None-Match": f'"{version}"'})
    assert cached.status_code == 304
    assert cached.headers["etag"] == f'"{version}"'


async def test_errors_are_not_cached(two_apps: tuple[Client, Client]) -> None:
    reader, _ = two_apps
    for _ in range(2):
        response = await reader.get("/subjects/atlantis/estimates")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert (await _cache(reader))["hits"] == 0


async def test_time_travel_answers_are_cached_without_validators(two_apps: tuple[Client, Client]) -> None:
    reader, _ = two_apps
    first = await reader.get(ESTIMATES, params={"known_at": "5"})
    before = await _cache(reader)
    again = await reader.get(ESTIMATES, params={"known_at": "5"})
    assert again.content == first.content
    assert "etag" not in again.headers
    assert (await _cache(reader))["hits"] == before["hits"] + 1


async def test_a_cache_of_zero_bytes_is_off(database_url: str, seeded: str) -> None:
    app = create_app(Database(database_url), Settings(response_cache_bytes=0))
    async with AsyncTestClient(app=app) as client:
        await client.get(ESTIMATES)
        await client.get(ESTIMATES)
        assert (await _cache(client))["hits"] == 0
        assert (await _cache(client))["entries"] == 0


async def test_without_a_clock_reads_still_answer(database_url: str, seeded: str) -> None:
    """A clock that cannot reach the database costs the cache, not the request."""

    class Broken:
        async def now(self) -> clock.Reading:
            raise ConnectionError("clock down")

        async def close(self) -> None:
            pass

    app = create_app(Database(database_url))
    app.state.response_cache = ResponseCache(Broken(), 1_000_000)
    # On the module's own logger: the app's logging configuration replaces the root logger's handlers.
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("timeline.api.cache").addHandler(handler)
    try:
        async with AsyncTestClient(app=app) as client:
            for _ in range(3):
                response = await client.get(ESTIMATES)
                assert response.status_code == 200
                assert _nis(response)["quantity"]["value"] == 1500
    finally:
        logging.getLogger("timeline.api.cache").removeHandler(handler)
    assert [m for m in said if "views clock unavailable" in m] == [said[0]]  # once, not on every request


def test_least_recently_used_entries_go_first() -> None:
    cache = ResponseCache(clock.EngineClock(None), max_bytes=10)  # type: ignore[arg-type]
    cache.put("a", _Entry(1, b"aaaa", {}))
    cache.put("b", _Entry(1, b"bbbb", {}))
    assert cache.get("a", 1) is not None  # a is now the most recently used
    cache.put("c", _Entry(1, b"cccc", {}))
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is not None
    assert cache.get("c", 1) is not None
    assert cache.size == (2, 8)
    assert cache.get("a", 2) is None  # built before the views moved on
    cache.put("huge", _Entry(1, b"x" * 11, {}))
    assert cache.get("huge", 1) is None
    assert cache.size == (2, 8)


async def test_the_clock_sees_every_commit_before_it_was_asked(db: Database, seeded: str) -> None:
    views_clock = clock.for_database(db)
    try:
        position, updated = await views_clock.now()
        assert position == 29
        assert updated is not None
        assert updated.tzinfo is not None
        await import_fixtures(
            db,
            [LoadedFixture("extra.yaml", _extra_fixture())],
            recorded_by="test",
        )
        readings = await asyncio.gather(*(views_clock.now() for _ in range(20)))
        assert {r[0] for r in readings} == {position + 1}
    finally:
        await views_clock.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_concurrent_requests_share_postgres_clock_queries(db: Database, seeded: str) -> None:
    """Only PostgreSQL's clock queries over the network; SQLite's answers inline."""
    views_clock = clock.PostgresClock(db.dsn)
    queries = 0
    query = views_clock._query

    async def counted() -> clock.Reading:
        nonlocal queries
        queries += 1
        return await query()

    views_clock._query = counted  # type: ignore[method-assign]
    try:
        readings = await asyncio.gather(*(views_clock.now() for _ in range(50)))
        assert {r[0] for r in readings} == {29}
        assert queries <= 2
    finally:
        await views_clock.close()


def _extra_fixture() -> bytes:
    return b"""
document:
  id: extra-doc
  title: Another report
  url: https://example.org/extra
  published_on: "2024-10-24"
"""
