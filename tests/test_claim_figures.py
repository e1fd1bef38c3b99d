"""The richer figure on both databases: a projection's horizon, "more than" and "less than", and when a
thing happened (``occurred``) apart from when it was said, through fixtures, the write API, views, exports."""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain.events import ClaimMade, decode_event
from timeline.fixtures import FixtureError, parse, to_events
from timeline.store import tokens
from timeline.store.database import Database

from .conftest import SEED

FOLLOWUP = Path(__file__).resolve().parent.parent / "fixtures" / "invented" / "001_estimates_followup.yaml"
SUBJECT = "dprk-troops-to-russia"
DOC = "000-16630df2654ec508"
NIS_SENT = "nis-about-3000-sent-invented"
NIS_EXPECTED = "nis-about-10000-by-december-invented"


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    seeding = Database(database_url)
    try:
        fixtures = [
            LoadedFixture("seed", SEED.read_bytes()),
            LoadedFixture("followup", FOLLOWUP.read_bytes()),
        ]
        await import_fixtures(seeding, fixtures, recorded_by="test")
        async with seeding.write() as conn:
            secret = await tokens.create(conn, "editor", ("write",))
    finally:
        await seeding.dispose()
    async with AsyncTestClient(app=create_app(Database(database_url))) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        yield c


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def _estimate(client: AsyncTestClient, source: str, **params: str) -> dict[str, Any]:  # type: ignore[type-arg]
    body = (await client.get(f"/subjects/{SUBJECT}/estimates", params=params)).json()
    found: dict[str, Any] = next(
        e for e in body["estimates"] if e["source"]["id"] == source and e["metric"] == "soldiers-sent"
    )
    return found


async def test_the_followup_keeps_a_same_day_assertion_and_projection_apart(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    nis = await _estimate(client, "south-korea-nis")
    # The seed's 1,500 gave way to the later assertion; the projection the same day did not displace it.
    assert (nis["kind"], nis["claim_id"], nis["asserted"]["claim_id"]) == ("asserted", NIS_SENT, NIS_SENT)
    assert nis["projected"]["claim_id"] == NIS_EXPECTED
    assert nis["projected"]["quantity"] == {
        "comparator": "about", "value": 10000, "unit": "soldiers",
        "horizon": {"date": "2024-12", "precision": "month"},
    }  # fmt: skip
    assert nis["asserted"]["occurred"] == {
        "start": {"date": "2024-W40", "precision": "week"},
        "end": {"date": "2024-W42", "precision": "week"},
        "wording": "early to mid October",
    }
    zelenskyy = await _estimate(client, "volodymyr-zelenskyy")
    assert zelenskyy["asserted"]["quantity"] == {"comparator": "more_than", "lower": 1000, "unit": "soldiers"}
    assert zelenskyy["projected"]["claim_id"] == "zelenskyy-preparing-to-send-10000"
    # A source with a projection only shows it as its figure, as before.
    unnamed = await _estimate(client, "unnamed-sources")
    assert (unnamed["kind"], unnamed["asserted"]) == ("projected", None)
    assert unnamed["claim_id"] == unnamed["projected"]["claim_id"] == "unnamed-sources-up-to-12000-troops"
    # Time travel folds the same way: before the follow-up, the seed's figures.
    then = await _estimate(client, "south-korea-nis", as_of="2024-10-22")
    assert (then["claim_id"], then["projected"]) == ("nis-1500-soldiers-sent-for-training", None)


async def test_timeline_entries_are_dated_by_when_it_happened(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    entries = (await client.get(f"/subjects/{SUBJECT}/timeline", params={"limit": 1000})).json()["entries"]
    sent = next(e for e in entries if e["claim_id"] == NIS_SENT)
    assert sent["occurred_on"] == {"date": "2024-W40", "precision": "week"}
    assert sent["stated_on"] == {"date": "2024-10-23", "precision": "day"}
    # Early October comes before the seed's entries of 21 October.
    assert entries.index(sent) < next(
        i for i, e in enumerate(entries) if e["occurred_on"]["date"] == "2024-10-21"
    )
    expected = next(e for e in entries if e["claim_id"] == NIS_EXPECTED)
    assert (expected["occurred"], expected["stated_on"]) == (None, None)
    claim = (await client.get(f"/claims/{NIS_SENT}")).json()
    assert claim["occurred"]["wording"] == "early to mid October"


async def test_the_write_api_takes_the_new_fields(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = {
        "claim_id": "cnn-over-2000",
        "subject_id": SUBJECT,
        "source_id": "cnn",
        "statement": "Over 2,000 soldiers are expected by the end of November.",
        "stated_on": "2024-10-25",
        "document_ids": [DOC],
        "modality": "projected",
        "metric": "soldiers-sent",
        "quantity": {"comparator": "more_than", "lower": 2000, "unit": "soldiers", "horizon": "2024-11"},
        "occurred": {"start": "2024-10-28", "end": "2024-11", "wording": "from late October into November"},
    }
    created = await client.post("/claims", json=body)
    assert created.status_code == 201, created.text
    cnn = await _estimate(client, "cnn")
    assert cnn["projected"]["quantity"]["horizon"] == {"date": "2024-11", "precision": "month"}
    assert cnn["projected"]["occurred"]["end"] == {"date": "2024-11", "precision": "month"}
    revision = {
        "statement": "Fewer than 3,000 by November.", "stated_on": "2024-10-26", "document_ids": [DOC],
        "quantity": {"comparator": "less_than", "upper": 3000, "unit": "soldiers", "horizon": "2024-11"},
        "occurred": "2024-W44",
    }  # fmt: skip
    assert (await client.post("/claims/cnn-over-2000/revisions", json=revision)).status_code == 201
    correction = {"corrects_version": 1, "changes": {"occurred": "2024-10"}, "reason": "It said October."}
    assert (await client.post("/claims/cnn-over-2000/corrections", json=correction)).status_code == 201
    claim = (await client.get("/claims/cnn-over-2000")).json()
    assert claim["quantity"]["comparator"] == "less_than"
    assert claim["occurred"] == {"start": {"date": "2024-W44", "precision": "week"}}


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"modality": "asserted"}, "quantity.horizon", "only a projected figure has a horizon"),
        (
            {"quantity": {"comparator": "more_than", "value": 5, "unit": "soldiers"}},
            "quantity.lower",
            "needs",
        ),
        ({"occurred": "2024-W60"}, "occurred", "not a calendar date"),
        ({"occurred": {"start": "2024-11", "end": "2024-10"}}, "occurred.end", "before it starts"),
        (
            {"quantity": {"comparator": "up_to", "upper": 5, "unit": "soldiers", "horizon": "soon"}},
            None,
            "date",
        ),
    ],
)
async def test_bad_figures_are_refused_with_where_and_what(
    client: AsyncTestClient,  # type: ignore[type-arg]
    change: dict[str, Any],
    path: str | None,
    message: str,
) -> None:
    body = {
        "subject_id": SUBJECT, "source_id": "cnn", "statement": "Up to 5.", "stated_on": "2024-10-25",
        "document_ids": [DOC], "modality": "projected", "metric": "soldiers-sent",
        "quantity": {"comparator": "up_to", "upper": 5, "unit": "soldiers", "horizon": "2024-12"}, **change,
    }  # fmt: skip
    refused = _problem(await client.post("/claims", json=body), 400 if path is None else 422)
    error = refused["errors"][0] if "errors" in refused else refused
    if path is not None:
        assert error["path"] == path
    assert message in str(refused)


async def test_an_import_refuses_a_horizon_on_an_assertion(db: Database) -> None:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    text = FOLLOWUP.read_text().replace("    modality: projected\n", "")
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [LoadedFixture("followup.yaml", text.encode())], recorded_by="test")
    assert caught.value.path == "events[1].quantity.horizon"
    assert "only a projected figure has a horizon" in caught.value.message


def test_a_fixture_names_a_bad_week() -> None:
    text = textwrap.dedent("""\
        document: {id: d, title: t, published_on: "2024-10-21"}
        events:
          - type: claim
            id: c
            subject: s
            source: a
            statement: s
            occurred: {start: "2024-W99"}
    """)
    with pytest.raises(FixtureError) as caught:
        list(to_events(parse(text, "week.yaml")))
    assert caught.value.path == "events[0].occurred.start"
    assert caught.value.line == 8


def test_events_written_before_the_new_fields_decode_unchanged() -> None:
    stored = (
        b'{"type":"ClaimMade","claim_id":"c","subject_id":"s","source_id":"a","statement":"s",'
        b'"modality":"asserted","stated_on":{"date":"2024-10-21","precision":"day"},"document_ids":["d"],'
        b'"metric":"m","quantity":{"comparator":"exactly","unit":"soldiers","value":5}}'
    )
    event = decode_event(stored)
    assert isinstance(event, ClaimMade)
    assert event.occurred is None
    assert event.quantity is not None
    assert event.quantity.horizon is None


# Exports ---------------------------------------------------------------------------------------------------


async def test_timelinejs_dates_a_range_and_says_the_horizon(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    slides = (await client.get(f"/subjects/{SUBJECT}/timelinejs")).json()["events"]
    by_headline = {s["text"]["headline"]: s for s in slides}
    sent = next(s for h, s in by_headline.items() if "about 3,000 soldiers" in h)
    assert sent["start_date"] == {"year": 2024, "month": 9, "day": 30}  # Monday of ISO week 40
    assert sent["end_date"] == {"year": 2024, "month": 10, "day": 20}  # Sunday of ISO week 42
    assert sent["display_date"] == "early to mid October"
    assert "said 23 October 2024" in sent["text"]["text"]
    # A headline names the metric, and a projection when its figure is expected.
    assert any(h.endswith(": about 10,000 soldiers sent by December 2024") for h in by_headline)
    assert any(h.endswith(": more than 1,000 soldiers sent") for h in by_headline)
    assert any(h.endswith(": less than 500 engineers sent") for h in by_headline)


async def test_csv_has_a_row_per_figure_with_horizon_and_occurred(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    text = (await client.get(f"/subjects/{SUBJECT}/estimates.csv")).text
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["source_id"] == "south-korea-nis"]
    assert [(r["kind"], r["claim_id"], r["horizon"]) for r in rows] == [
        ("asserted", NIS_SENT, ""),
        ("projected", NIS_EXPECTED, "2024-12"),
    ]
    assert (rows[0]["occurred_start"], rows[0]["occurred_end"], rows[0]["occurred_wording"]) == (
        "2024-W40",
        "2024-W42",
        "early to mid October",
    )
    timeline = list(csv.DictReader(io.StringIO((await client.get(f"/subjects/{SUBJECT}/timeline.csv")).text)))
    sent = next(r for r in timeline if r["claim_id"] == NIS_SENT)
    assert (sent["occurred_on"], sent["stated_on"], sent["occurred_wording"]) == (
        "2024-W40",
        "2024-10-23",
        "early to mid October",
    )


async def test_jsonld_gives_the_period_and_the_figure(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    items = (await client.get(f"/subjects/{SUBJECT}/claims.jsonld")).json()["itemListElement"]
    claims = {c["identifier"]: c for c in items}
    sent = claims[NIS_SENT]
    assert sent["temporalCoverage"] == "2024-09-30/2024-10-20"
    assert sent["datePublished"] == "2024-10-23"
    assert claims[NIS_EXPECTED]["mentions"] == {
        "@type": "QuantitativeValue", "unitText": "soldiers", "value": 10000,
        "description": "about 10,000 soldiers by December 2024",
    }  # fmt: skip
    assert claims["zelenskyy-more-than-1000-in-kursk-invented"]["mentions"]["minValue"] == 1000
