"""Exports on both databases: TimelineJS3 JSON, schema.org JSON-LD and CSV, checked against the JSON views."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import tokens
from timeline.store.database import Database

from .conftest import SEED

SUBJECT = "dprk-troops-to-russia"
NIS = "nis-1500-soldiers-sent-for-training"
DOC = "000-16630df2654ec508"
# The fields TimelineJS3 reads on a slide (website/docs/json-format), and on its dates, text and media.
SLIDE_FIELDS = {
    "start_date",
    "end_date",
    "text",
    "media",
    "group",
    "display_date",
    "background",
    "unique_id",
    "autolink",
}
DATE_FIELDS = {"year", "month", "day", "hour", "minute", "second", "millisecond", "display_date", "format"}
MEDIA_FIELDS = {"url", "caption", "credit", "thumbnail", "alt", "title", "link"}


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
        async with seeding.write() as conn:
            secret = await tokens.create(conn, "exporter", ("write",))
    finally:
        await seeding.dispose()
    async with AsyncTestClient(app=create_app(Database(database_url))) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        yield c


async def _every_kind(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    day = {"stated_on": "2024-11", "document_ids": [DOC]}
    for path, body in [
        ("revisions", {"statement": "About <b>3,000</b> & more", **day,
                       "quantity": {"comparator": "about", "value": 3000, "unit": "soldiers"}}),
        ("confirmations", {"source_id": "france", "statement": "Confirmed.", **day}),
        ("evidence", {"kind": "image", "source_id": "cnn", "description": "Satellite image.", **day,
                      "url": "https://example.org/sat.png"}),
        ("corrections", {"corrects_version": 1, "changes": {"statement": "Fixed."}, "reason": "typo"}),
    ]:  # fmt: skip
        assert (await client.post(f"/claims/{NIS}/{path}", json=body)).status_code == 201
    assert (
        await client.post(f"/claims/{NIS}/retractions", json={"statement": "Withdrawn.", **day})
    ).status_code == 201


async def test_timelinejs_slides_follow_the_format(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    await _every_kind(client)
    response = await client.get(f"/subjects/{SUBJECT}/timelinejs")
    assert response.status_code == 200
    doc = response.json()
    assert doc["title"]["text"]["headline"] == "North Korean troops sent to Russia"
    slides = doc["events"]
    timeline = (await client.get(f"/subjects/{SUBJECT}/timeline", params={"limit": 1000})).json()["entries"]
    assert [s["unique_id"] for s in slides] == [f"event-{e['position']}" for e in timeline]
    for slide in slides:
        assert set(slide) <= SLIDE_FIELDS
        assert set(slide["start_date"]) <= DATE_FIELDS
        assert isinstance(slide["start_date"]["year"], int)
        assert set(slide["text"]) == {"headline", "text"}
        assert set(slide.get("media", {})) <= MEDIA_FIELDS
    headlines = {s["text"]["headline"] for s in slides}
    for verb in ("says", "revises its figure", "denies", "confirms", "retracts", "produced evidence"):
        assert any(verb in h for h in headlines), verb
    revised = next(s for s in slides if "revises" in s["text"]["headline"])
    assert revised["start_date"] == {"year": 2024, "month": 11}  # month precision: no day
    assert revised["text"]["text"].startswith("About &lt;b&gt;3,000&lt;/b&gt; &amp; more <p>Reported in: ")
    assert (
        revised["text"]["headline"]
        == "National Intelligence Service (South Korea) revises its figure: about 3,000 soldiers sent"
    )
    media = [s["media"] for s in slides if "media" in s]
    assert media == [{"url": "https://example.org/sat.png", "caption": "Satellite image.", "credit": "CNN"}]
    made = next(s for s in slides if s["unique_id"] == "event-13")
    assert "corrected" in made["text"]["text"]
    # Deep links survive new events: the ids of earlier slides do not change.
    denial = {"source_id": "france", "statement": "No.", "stated_on": "2024-12", "document_ids": [DOC]}
    assert (await client.post(f"/claims/{NIS}/denials", json=denial)).status_code == 201
    later = (await client.get(f"/subjects/{SUBJECT}/timelinejs")).json()["events"]
    assert [s["unique_id"] for s in later][: len(slides)] == [s["unique_id"] for s in slides]
    before = (await client.get(f"/subjects/{SUBJECT}/timelinejs", params={"as_of": "2024-10"})).json()[
        "events"
    ]
    assert len(before) == 13


async def test_csv_parses_back_to_the_json_views(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/subjects/{SUBJECT}/estimates.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert b"\r\n" in response.content
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    estimates = (await client.get(f"/subjects/{SUBJECT}/estimates")).json()["estimates"]
    assert [(r["source_id"], r["status"], r["claim_id"], r["statement"]) for r in rows] == [
        (e["source"]["id"], e["status"], e["claim_id"], e["statement"]) for e in estimates
    ]
    nis = next(r for r in rows if r["source_id"] == "south-korea-nis")
    assert (nis["comparator"], nis["value"], nis["unit"], nis["disputed_by"]) == (
        "exactly",
        "1500",
        "soldiers",
        "kremlin",
    )
    timeline_rows = list(
        csv.DictReader(io.StringIO((await client.get(f"/subjects/{SUBJECT}/timeline.csv")).text))
    )
    entries = (await client.get(f"/subjects/{SUBJECT}/timeline", params={"limit": 1000})).json()["entries"]
    assert [(int(r["position"]), r["kind"], r["statement"]) for r in timeline_rows] == [
        (e["position"], e["kind"], e["statement"]) for e in entries
    ]
    assert (await client.get("/subjects/atlantis/timeline.csv")).status_code == 404


async def test_jsonld_claims(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/subjects/{SUBJECT}/claims.jsonld")
    assert response.headers["content-type"].startswith("application/ld+json")
    doc = response.json()
    assert doc["@context"] == "https://schema.org"
    claims = {c["identifier"]: c for c in doc["itemListElement"]}
    assert len(claims) == 6
    nis = claims[NIS]
    assert nis["@type"] == "Claim"
    assert nis["author"] == {"@type": "Organization", "name": "National Intelligence Service (South Korea)"}
    assert nis["datePublished"] == "2024-10-21"
    assert nis["firstAppearance"]["headline"].startswith("A new ally for Russia?")
    assert nis["firstAppearance"]["author"] == {"@type": "Person", "name": "Tural Heybatov"}
    assert claims["zelenskyy-preparing-to-send-10000"]["author"]["@type"] == "Person"
