"""Drafting fixtures from article text: the rules, the seed article, and the review-then-import path."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from litestar.testing import AsyncTestClient

from timeline import drafting
from timeline.api.app import create_app
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.cli import main
from timeline.fixtures import Fixture, FixtureError, parse
from timeline.store import queries, tokens
from timeline.store.database import Database

from .conftest import ROOT, SEED

ARTICLE = ROOT / "fixtures" / "articles" / "000_16630df2654ec508.txt"
MONDAY = dt.date(2024, 10, 21)


@pytest.mark.parametrize(
    ("sentence", "quantity"),
    [
        ("North Korea has sent 1,500 soldiers to Russia.", {"comparator": "exactly", "value": 1500, "unit": "soldiers"}),  # noqa: E501
        ("up to 12,000 North Korean troops could be involved", {"comparator": "up_to", "upper": 12000, "unit": "troops"}),  # noqa: E501
        ("preparing to send as many as 10,000 soldiers", {"comparator": "up_to", "upper": 10000, "unit": "soldiers"}),  # noqa: E501
        ("at least 3,000 troops were seen", {"comparator": "at_least", "lower": 3000, "unit": "troops"}),
        ("more than 200 people fled", {"comparator": "at_least", "lower": 200, "unit": "people"}),
        ("about 5,000 fighters", {"comparator": "about", "value": 5000, "unit": "fighters"}),
        ("between 10,000 and 12,000 soldiers", {"comparator": "between", "lower": 10000, "upper": 12000, "unit": "soldiers"}),  # noqa: E501
        ("ten thousand soldiers arrived", {"comparator": "exactly", "value": 10000, "unit": "soldiers"}),
        ("dozens of engineers", {"comparator": "about", "value": 12, "unit": "engineers"}),
        ("thousands of troops", {"comparator": "at_least", "lower": 1000, "unit": "troops"}),
    ],
)  # fmt: skip
def test_figures_with_their_comparator_and_unit(sentence: str, quantity: dict[str, object]) -> None:
    found = drafting.figure(sentence)
    assert found is not None
    assert found[0] == quantity


def test_years_are_not_figures() -> None:
    assert drafting.figure("The war began in 2022 and goes on.") is None


@pytest.mark.parametrize(
    ("sentence", "date"),
    [
        ("The ministry said on Friday that", "2024-10-18"),
        ("It said yesterday that", "2024-10-20"),
        ("in October the agency found", "2024-10"),
        ("in December officials noted", "2023-12"),
        ("He spoke on March 3, 2024 about", "2024-03-03"),
        ("No date here.", None),
    ],
)
def test_dates_resolved_against_the_articles_date(sentence: str, date: str | None) -> None:
    assert drafting.stated_on(sentence, MONDAY) == date


@pytest.mark.parametrize(
    ("sentence", "modality"),
    [
        ("troops could be involved in the future", "projected"),
        ("a video that allegedly shows recruits", "alleged"),
        ("it might be deploying engineers", "speculative"),
        ("calling it very troubling", "opinion"),
        ("North Korea has sent 1,500 soldiers", "asserted"),
    ],
)
def test_modality_cues(sentence: str, modality: str) -> None:
    assert drafting.modality(sentence) == modality


def _seed_sources() -> list[drafting.KnownSource]:
    fixture = parse(SEED.read_bytes(), "seed").fixture
    return [(s.id, (s.name, *s.aliases), s.kind) for s in fixture.sources]


def test_the_seed_article_drafts_its_attributed_claims() -> None:
    published, text = drafting.article_date(ARTICLE.read_text(), None)
    assert published == MONDAY
    draft = drafting.draft(
        text, published=MONDAY, subject="dprk-troops-to-russia", known_sources=_seed_sources()
    )
    msgspec.convert(draft, Fixture)  # a valid fixture
    events = draft["events"]
    figures = [e for e in events if e["type"] == "claim" and "quantity" in e]

    def key(e: dict[str, Any]) -> tuple[str, str, int]:
        q = e["quantity"]
        return e["source"], q["comparator"], q.get("value") or q.get("upper")

    claims = {key(e): e for e in figures}
    assert claims[("south-korea-nis", "exactly", 1500)]["modality"] == "asserted"
    assert claims[("volodymyr-zelenskyy", "up_to", 10000)]["modality"] == "projected"
    assert any(k[1:] == ("up_to", 12000) and v["modality"] == "projected" for k, v in claims.items())
    denial = next(e for e in events if e["type"] == "denial")
    assert denial["source"] == "kremlin"
    assert "without providing any proof" in denial["statement"]
    assert denial["claims"]
    evidence = {e["source"]: e["kind"] for e in events if e["type"] == "evidence"}
    assert evidence["cnn"] == "geolocation"
    assert "video" in evidence.values()
    for e in events:
        start, end = e["draft"]["span"]
        assert text[start:end] == e["draft"]["sentence"]
        assert e["draft"]["review"] is True


async def test_a_draft_is_refused_until_reviewed_then_imports(db: Database) -> None:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    async with db.read() as conn:
        known_sources, known_claims = await queries.drafting_context(conn)
    published, text = drafting.article_date(ARTICLE.read_text(), None)
    assert published is not None
    draft = drafting.draft(
        text,
        published=published,
        title="Draft of the seed",
        subject="dprk-troops-to-russia",
        known_sources=known_sources,
        known_claims=known_claims,
    )
    document = drafting.to_yaml(draft)
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [LoadedFixture("draft.yaml", document.encode())], recorded_by="test")
    assert caught.value.path == "events[0].draft.review"
    assert "not reviewed yet" in caught.value.message
    reviewed = yaml.safe_load(document)
    for entry in reviewed["events"]:
        entry["draft"]["review"] = False
    [result] = await import_fixtures(
        db, [LoadedFixture("reviewed.yaml", yaml.safe_dump(reviewed).encode())], recorded_by="test"
    )
    assert result.appended > 10


async def test_cli_and_http_drafts(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "draft.yaml"
    code = await asyncio.to_thread(
        main, ["--database-url", database_url, "draft", str(ARTICLE), "--output", str(out)]
    )
    assert code == 0
    assert out.read_text().startswith("# A DRAFT")
    assert yaml.safe_load(out.read_text())["document"]["published_on"] == "2024-10-21"
    undated = tmp_path / "undated.txt"
    undated.write_text("The Kremlin denied it.")
    assert await asyncio.to_thread(main, ["--database-url", database_url, "draft", str(undated)]) == 1
    assert "give --date" in capsys.readouterr().err

    db = Database(database_url)
    try:
        async with db.write() as conn:
            secret = await tokens.create(conn, "drafter", ("write",))
    finally:
        await db.dispose()
    html = (
        "<html><body><nav>Menu</nav><article><p>The Kremlin has denied the reports.</p>"
        "<p>Officials said on Friday that at least 3,000 soldiers had arrived.</p></article></body></html>"
    )
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        response = await client.post(
            "/drafts", content=html, params={"date": "2024-10-21", "title": "Reports"},
            headers={"Authorization": f"Bearer {secret}", "content-type": "text/html"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        draft = yaml.safe_load(response.text)
        [claim] = [e for e in draft["events"] if e["type"] == "claim" and "quantity" in e]
        assert claim["quantity"] == {"comparator": "at_least", "lower": 3000, "unit": "soldiers"}
        assert claim["stated_on"] == "2024-10-18"
        assert "Menu" not in response.text
        bad = await client.post("/drafts", content="No date.", headers={"Authorization": f"Bearer {secret}"})
        assert bad.status_code == 400
    check = Database(database_url)
    try:
        async with check.read() as conn:  # nothing was recorded
            assert await queries.claim(conn, claim["id"]) is None
    finally:
        await check.dispose()


def test_revisions_and_retractions_are_proposed_for_a_sources_earlier_claims() -> None:
    text = (
        "The National Intelligence Service said on Friday that about 3,000 soldiers are now in Russia. "
        "The National Intelligence Service later withdrew its earlier estimate."
    )
    known = [("south-korea-nis", ("National Intelligence Service (South Korea)",), "agency")]
    existing = [("nis-1500", "dprk-troops-to-russia", "south-korea-nis", "soldiers")]
    draft = drafting.draft(
        text, published=MONDAY, subject="dprk-troops-to-russia", known_sources=known, known_claims=existing
    )
    revision, retraction = draft["events"]
    assert revision["type"] == "revision"
    assert revision["claim"] == "nis-1500"
    assert revision["quantity"] == {"comparator": "about", "value": 3000, "unit": "soldiers"}
    assert revision["stated_on"] == "2024-10-18"
    assert retraction["type"] == "retraction"
    assert retraction["claim"] == "nis-1500"
    assert "guess" in retraction["draft"]["notes"]
    assert draft["sources"] == []  # the source was known
