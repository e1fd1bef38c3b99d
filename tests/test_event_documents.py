"""Issue 15 item 4 on both databases: timeline entries name the document each event came from (not its
claim's), and a fixture's source aliases are kept, shown and used to match sources when drafting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.cli import main
from timeline.store.database import Database

from .conftest import ROOT, SEED

FOLLOWUP = ROOT / "tests" / "data" / "followup-2026-12-03.yaml"
SUBJECT = "dprk-troops-to-russia"
NIS = "nis-1500-soldiers-sent-for-training"
SEED_DOC = "000-16630df2654ec508"
LATER_DOC = "invented-followup-2024-11"


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The seed and the invented follow-up (a confirmation, evidence, a revision from a later document)."""
    seeding = Database(database_url)
    try:
        fixtures = [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, FOLLOWUP)]
        await import_fixtures(seeding, fixtures, recorded_by="test")
    finally:
        await seeding.dispose()
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        yield client


async def get(client: AsyncTestClient, path: str) -> Any:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_timeline_entries_name_the_document_of_their_own_event(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    for query in ("", "&as_of=2024-11-30"):  # the views, and time travel
        entries = (await get(client, f"/subjects/{SUBJECT}/timeline?limit=200{query}"))["entries"]
        of_nis = {e["kind"]: e["document_ids"] for e in entries if e["claim_id"] == NIS}
        assert of_nis["made"] == [SEED_DOC], query
        assert of_nis["denied"] == [SEED_DOC], query
        assert of_nis["confirmed"] == [LATER_DOC], query
        assert of_nis["evidence"] == [LATER_DOC], query
        assert of_nis["revised"] == [LATER_DOC], query
    claim = await get(client, f"/claims/{NIS}")
    assert claim["document_ids"] == [SEED_DOC, LATER_DOC]  # the claim gathers every document

    slides = (await get(client, f"/subjects/{SUBJECT}/timelinejs"))["events"]
    confirmed = next(s for s in slides if "confirms" in s["text"]["headline"])
    made = next(s for s in slides if s["text"]["text"].startswith("North Korea has sent 1,500"))
    assert "Reported in: <cite>Invented follow-up: more North Korean troops" in confirmed["text"]["text"]
    assert "Reported in: <cite>A new ally for Russia?" in made["text"]["text"]
    assert "Invented follow-up" not in made["text"]["text"]

    jsonld = await get(client, f"/subjects/{SUBJECT}/claims.jsonld")
    nis = next(c for c in jsonld["itemListElement"] if c["identifier"] == NIS)
    assert nis["firstAppearance"]["identifier"] == SEED_DOC
    assert [a["identifier"] for a in nis["appearance"]] == [SEED_DOC, LATER_DOC]


async def test_a_fixtures_source_aliases_are_kept_shown_and_matched_when_drafting(
    client: AsyncTestClient,  # type: ignore[type-arg]
    database_url: str,
    tmp_path: Path,
) -> None:
    hur = await get(client, "/sources/ukraine-hur")
    assert hur["source"]["aliases"] == ["HUR", "GUR"]
    listed = (await get(client, "/sources?country=UA"))["sources"]
    assert next(s for s in listed if s["source_id"] == "ukraine-hur")["aliases"] == ["HUR", "GUR"]

    article = tmp_path / "article.txt"
    article.write_text("GUR said on Monday that about 4,000 North Korean soldiers had arrived in Kursk.\n")
    out = tmp_path / "draft.yaml"
    argv = ["draft", str(article), "--date", "2024-11-06", "--output", str(out)]
    assert await asyncio.to_thread(main, ["--database-url", database_url, *argv]) == 0
    [claim] = [e for e in yaml.safe_load(out.read_text())["events"] if e["type"] == "claim"]
    assert claim["source"] == "ukraine-hur"
