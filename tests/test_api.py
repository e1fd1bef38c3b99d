"""The HTTP API over the seed data, on both databases."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient, TestClient

from timeline.api import asgi
from timeline.api.app import create_app
from timeline.app import imports
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import tokens
from timeline.store.database import Database

from .conftest import SEED

SUBJECT = "dprk-troops-to-russia"
NIS = "nis-1500-soldiers-sent-for-training"


async def _seeded(database_url: str) -> str:
    """Import the seed; an admin token's secret."""
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        async with seeding.write() as conn:
            return await tokens.create(conn, "importer", ("admin",))
    finally:
        await seeding.dispose()


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    secret = await _seeded(database_url)
    # The test client runs the app on its own event loop, so the app gets an engine of its own.
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        client.headers["Authorization"] = f"Bearer {secret}"
        yield client


def _problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body  # type: ignore[no-any-return]


async def test_estimates_show_each_sources_latest_figure_and_dispute(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/subjects/{SUBJECT}/estimates", params={"metric": "soldiers-sent"})
    assert response.status_code == 200
    body = response.json()
    by_source = {e["source"]["id"]: e for e in body["estimates"]}
    assert set(by_source) == {"south-korea-nis", "unnamed-sources", "volodymyr-zelenskyy"}
    nis = by_source["south-korea-nis"]
    assert nis["quantity"] == {"comparator": "exactly", "unit": "soldiers", "value": 1500}
    assert nis["status"] == "disputed"
    assert nis["disputed_by"] == [{"id": "kremlin", "name": "The Kremlin"}]
    assert nis["modality"] == "asserted"
    assert by_source["unnamed-sources"]["quantity"]["upper"] == 12000
    assert by_source["unnamed-sources"]["modality"] == "projected"
    assert by_source["volodymyr-zelenskyy"]["quantity"]["upper"] == 10000
    assert by_source["volodymyr-zelenskyy"]["modality"] == "projected"


async def test_estimates_filter_by_metric_and_unknown_subject_is_404(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/subjects/{SUBJECT}/estimates", params={"metric": "tanks"})
    assert response.json()["estimates"] == []
    body = _problem(await client.get("/subjects/atlantis/estimates"), 404)
    assert body["detail"] == "no subject 'atlantis' has been recorded"
    assert body["instance"] == "/subjects/atlantis/estimates"


async def test_timeline_pages_through_every_entry_in_order(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    seen: list[dict[str, object]] = []
    url: str | None = f"/subjects/{SUBJECT}/timeline?limit=3"
    pages = 0
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        body = response.json()
        seen.extend(body["entries"])
        url = body["next"]
        pages += 1
    whole = (await client.get(f"/subjects/{SUBJECT}/timeline", params={"limit": 100})).json()
    assert seen == whole["entries"]
    assert pages == 5  # 6 claims, 5 denials and 2 pieces of evidence on this subject, 3 a page
    assert len(seen) == 13
    kinds = [e["kind"] for e in seen]
    assert kinds.count("made") == 6
    assert kinds.count("denied") == 5
    assert kinds.count("evidence") == 2
    positions = [e["position"] for e in seen]
    assert positions == sorted(positions)  # all stated the same day: log order breaks the tie
    denial = next(e for e in seen if e["kind"] == "denied")
    assert denial["source"]["id"] == "kremlin"


async def test_timeline_rejects_a_bad_cursor_and_limit(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = _problem(await client.get(f"/subjects/{SUBJECT}/timeline", params={"cursor": "yesterday"}), 400)
    assert body["errors"] == [
        {"path": "cursor", "message": "expected a cursor from a previous page's 'next' link, got 'yesterday'"}
    ]
    body = _problem(await client.get(f"/subjects/{SUBJECT}/timeline", params={"limit": 0}), 400)
    assert "limit" in str(body["detail"])


async def test_claim_current_state_and_history(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    claim = (await client.get(f"/claims/{NIS}")).json()
    assert claim["status"] == "disputed"
    assert claim["source"] == {"id": "south-korea-nis", "name": "National Intelligence Service (South Korea)"}
    assert claim["denials"][0]["statement"].startswith("The Kremlin denied")
    assert claim["stated_on"] == {"date": "2024-10-21", "precision": "day"}
    assert claim["document_ids"] == ["000-16630df2654ec508"]
    assert claim["version"] == 2
    history = (await client.get(f"/claims/{NIS}/history")).json()
    events = history["events"]
    assert [(e["type"], e["stream_version"]) for e in events] == [("ClaimMade", 1), ("ClaimDenied", 2)]
    assert events[0]["position"] < events[1]["position"]
    assert events[0]["data"]["quantity"]["value"] == 1500
    assert events[0]["metadata"]["origin"].endswith("events[0]")
    assert events[1]["data"]["denied_by"] == "kremlin"
    _problem(await client.get("/claims/nothing-like-it"), 404)
    _problem(await client.get("/claims/nothing-like-it/history"), 404)


async def test_events_page_through_the_whole_log(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    first = (await client.get("/events", params={"limit": 10})).json()
    assert [e["position"] for e in first["events"]] == list(range(1, 11))
    assert first["head_position"] == 29
    assert first["next"] == "/events?after=10&limit=10"
    assert first["events"][0]["type"] == "DocumentRegistered"
    rest = (await client.get("/events", params={"after": 20, "limit": 100})).json()
    assert [e["position"] for e in rest["events"]] == list(range(21, 30))
    assert rest["next"] is None
    _problem(await client.get("/events", params={"after": -1}), 400)


async def test_post_import_is_atomic_idempotent_and_explains_errors(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    fixture = (
        "document: {id: later, title: Later, published_on: '2024-10-25'}\n"
        "events:\n"
        "  - type: revision\n"
        f"    id: nis-update\n    claim: {NIS}\n"
        "    statement: about 3,000 now\n"
        "    quantity: {comparator: about, value: 3000, unit: soldiers}\n"
    )
    created = await client.post("/imports", content=fixture, headers={"content-type": "application/yaml"})
    assert created.status_code == 200, created.text
    assert created.json()["appended"] == 2
    again = await client.post("/imports", content=fixture)
    assert again.json()["appended"] == 0
    estimate = (await client.get(f"/subjects/{SUBJECT}/estimates")).json()["estimates"]
    nis = next(e for e in estimate if e["source"]["id"] == "south-korea-nis")
    assert nis["quantity"]["value"] == 3000
    assert nis["stated_on"]["date"] == "2024-10-25"

    head = (await client.get("/health")).json()["head_position"]
    broken = fixture.replace("id: later,", "id: later2,").replace("value: 3000", "value: many")
    body = _problem(await client.post("/imports", content=broken, params={"name": "update.yaml"}), 422)
    assert body["errors"] == [
        {
            "file": "update.yaml",
            "path": "events[0].quantity.value",
            "line": 7,
            "message": "Expected `int | float | null`, got `str`",
        }
    ]
    assert (await client.get("/health")).json()["head_position"] == head


def _large_fixture(claims: int) -> str:
    lines = [
        "document: {id: large, title: Large, published_on: '2024-10-25'}",
        "subjects: [{id: large-subject, name: Large}]",
        "sources: [{id: large-source, name: Large, kind: agency}]",
        "events:",
    ]
    lines += [
        f"  - {{type: claim, id: c{i}, subject: large-subject, source: large-source, statement: Claim {i}.}}"
        for i in range(claims)
    ]
    return "\n".join(lines) + "\n"


async def test_reads_are_answered_while_a_large_import_is_recorded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The import is held at its first event's rule checks until the read has been answered: a server that
    # recorded on its event loop could not answer it meanwhile (the hold gives up after a while).
    recording, read_answered = threading.Event(), threading.Event()
    waited_in_vain: list[bool] = []

    class Held(imports.Recorder):
        async def record(self, event: Any, **kwargs: Any) -> Any:
            if not recording.is_set():
                recording.set()
                waited_in_vain.append(not read_answered.wait(timeout=20))
            return await super().record(event, **kwargs)

    secret = await _seeded(database_url)
    monkeypatch.setattr(imports, "Recorder", Held)
    # The synchronous client sends each request from its caller's thread: two threads, two requests at once.
    with TestClient(app=create_app(Database(database_url))) as client:
        client.headers["Authorization"] = f"Bearer {secret}"
        with ThreadPoolExecutor(1) as pool:
            importing = pool.submit(client.post, "/imports", content=_large_fixture(3000))
            assert await asyncio.to_thread(recording.wait, 20)
            health = await asyncio.to_thread(client.get, "/health")
            read_answered.set()
            assert health.status_code == 200
            assert health.json()["head_position"] == 29  # the import is not committed yet: all or nothing
            assert not importing.done()
            imported = await asyncio.wrap_future(importing)
        assert waited_in_vain == [False]  # the read was answered while the import was held mid-recording
        assert imported.status_code == 200, imported.text
        assert imported.json()["appended"] == 3003
        assert client.get("/health").json()["head_position"] == 29 + 3003


async def test_health_reports_positions(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = (await client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["head_position"] == body["views_position"] == 29
    assert body["database"] in {"sqlite", "postgresql"}


def test_the_served_app_leaves_its_startup_heap_out_of_garbage_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full collection over the startup heap paused a server for up to 105 ms: its p99 (README, bench).
    monkeypatch.setenv("TIMELINE_DATABASE_URL", f"sqlite:///{tmp_path / 'timeline.db'}")
    gc.unfreeze()
    try:
        asgi.create()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the rest of the test run collects as before
    assert frozen > 10_000
