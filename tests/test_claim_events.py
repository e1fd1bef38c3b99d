"""Statements, denials and confirmations that say what they address, withdrawn denials and source relations,
as a reader sees them: the claim, the timeline, the exports and time travel, on both databases."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from timeline.api import headlines
from timeline.api.app import create_app
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain import claims
from timeline.domain.events import Quantity, StatedDate
from timeline.fixtures import FixtureError
from timeline.projections import ClaimRecord, TimelineEntry
from timeline.store import activity, projector, tokens
from timeline.store.database import Database

from .conftest import ROOT, SEED
from .helpers import claim_made

FOLLOW_UPS = ROOT / "fixtures" / "invented" / "002_statements_and_relations.yaml"
SUBJECT = "dprk-troops-to-russia"
NIS = "nis-1500-soldiers-sent-for-training"
CNN = "cnn-geolocates-troops-at-sergeevka"
UNNAMED = "unnamed-sources-up-to-12000-troops"
DOC = "000-16630df2654ec508"


@pytest.fixture
async def secret(database_url: str) -> str:
    """The seed and the invented follow-ups imported; an editor's token."""
    seeding = Database(database_url)
    try:
        fixtures = [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, FOLLOW_UPS)]
        await import_fixtures(seeding, fixtures, recorded_by="test")
        async with seeding.write() as conn:
            return await tokens.create(conn, "editor", ("read", "write"))
    finally:
        await seeding.dispose()


@pytest.fixture
async def client(database_url: str, secret: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=create_app(Database(database_url))) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        yield c


async def _get(client: AsyncTestClient, url: str) -> Any:  # type: ignore[type-arg]
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_confirmation_of_what_happened_leaves_the_figure_disputed(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    claim = await _get(client, f"/claims/{NIS}")
    assert claim["status"] == "contested"  # the Kremlin denied it, a ministry confirmed what happened
    assert claim["figure_status"] == "disputed"  # nobody confirmed the 1,500
    [confirmation] = claim["confirmations"]
    assert confirmation["addresses"] == "proposition"
    estimates = await _get(client, f"/subjects/{SUBJECT}/estimates")
    nis = next(e for e in estimates["estimates"] if e["claim_id"] == NIS)
    assert nis["status"] == "disputed"


async def test_a_confirmation_by_part_of_the_denying_side_is_named_as_such(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    claim = await _get(client, f"/claims/{NIS}")
    # The ministry is part of the Russian government, which the Kremlin (the denier) speaks for.
    assert claim["confirmed_by_denying_side"] is True
    [confirmation] = claim["confirmations"]
    assert [s["id"] for s in confirmation["denying_side"]] == ["kremlin"]
    # Time travel reads the same relations from the log.
    mod = await _get(client, "/sources/russia-mod")
    assert mod["source"]["part_of"] == "russia-government"
    then = await _get(client, f"/claims/{NIS}?as_of=2024-11-02")
    assert then["confirmed_by_denying_side"] is True
    before = await _get(client, f"/claims/{NIS}?as_of=2024-10-31")
    assert before["confirmations"] == []
    assert before["confirmed_by_denying_side"] is False


async def test_a_withdrawn_denial_no_longer_disputes_the_claim(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    claim = await _get(client, f"/claims/{CNN}")
    assert claim["status"] == "standing"
    assert claim["disputed_by"] == []
    [denial] = claim["denials"]
    assert denial["withdrawn_by"] == "kremlin-withdraws-denial-of-cnn"
    assert [w["source"]["id"] for w in claim["withdrawals"]] == ["kremlin"]
    # As it stood before the withdrawal, the claim was disputed.
    before = await _get(client, f"/claims/{CNN}?as_of=2024-11-02")
    assert before["status"] == "disputed"


async def test_a_sources_activity_counts_its_statements_and_withdrawn_denials(
    database_url: str, secret: str
) -> None:
    db = Database(database_url)
    try:
        # What the server's projection leader does, done before the server starts so no wait is needed.
        await projector.catch_up(db, activity)
    finally:
        await db.dispose()
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        client.headers["Authorization"] = f"Bearer {secret}"
        spokesperson = (await _get(client, "/sources/kremlin-spokesperson"))["activity"]
        kremlin = (await _get(client, "/sources/kremlin"))["activity"]
    assert (spokesperson["statements"], spokesperson["denials"], spokesperson["claims_made"]) == (1, 1, 0)
    assert (kremlin["denials_withdrawn"], kremlin["statements"]) == (1, 0)
    assert kremlin["denials"] == 5  # one per claim it denied in fixture 000; the withdrawn one still counts


async def test_a_figure_only_denial_is_said_as_such(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    claim = await _get(client, f"/claims/{UNNAMED}")
    assert {d["source"]["id"]: d["addresses"] for d in claim["denials"]} == {
        "kremlin": "claim",
        "kremlin-spokesperson": "figure",
    }


async def test_timeline_shows_statements_and_headlines_a_reader_understands(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    body = await _get(client, f"/subjects/{SUBJECT}/timeline?limit=100")
    by_headline = {e["headline"]: e for e in body["entries"]}
    assert "National Intelligence Service (South Korea): 1,500 soldiers sent" in by_headline
    assert "Unnamed sources: up to 12,000 soldiers sent" in by_headline
    assert "Unnamed sources say" in by_headline
    statement = by_headline["Unnamed sources say"]
    assert statement["kind"] == "statement"
    assert statement["claim_id"] is None
    assert statement["statement_id"] == "unnamed-sources-troops-moving-west"
    assert "Kremlin spokesperson denies the figure given by Unnamed sources: up to 12,000 soldiers sent" in (
        by_headline
    )
    assert (
        "Ministry of Defence of Russia confirms what National Intelligence Service (South Korea) says "
        "happened (not its figure)"
    ) in by_headline
    assert "The Kremlin withdraws its denial of the claim by CNN" in by_headline
    # One denial of five claims: five headlines a reader tells apart, even a page at a time.
    denials = await _get(client, f"/subjects/{SUBJECT}/timeline?kind=denied&limit=2")
    assert [e["headline"] for e in denials["entries"]] == [
        "The Kremlin denies the claim by National Intelligence Service (South Korea): 1,500 soldiers sent",
        "The Kremlin denies the claim by Unnamed sources: up to 12,000 soldiers sent",
    ]
    only = await _get(client, f"/subjects/{SUBJECT}/timeline?kind=statement")
    assert [e["kind"] for e in only["entries"]] == ["statement", "statement"]
    # Time travel folds the same: before the statements were made, there were none.
    earlier = await _get(client, f"/subjects/{SUBJECT}/timeline?limit=100&as_of=2024-10-29")
    assert [e["statement_id"] for e in earlier["entries"] if e["kind"] == "statement"] == [
        "kremlin-spokesperson-sovereign-matter"
    ]


async def test_exports_carry_the_new_events(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    slides = (await _get(client, f"/subjects/{SUBJECT}/timelinejs"))["events"]
    headlines_seen = {s["text"]["headline"] for s in slides}
    assert "Unnamed sources say" in headlines_seen
    assert "The Kremlin withdraws its denial of the claim by CNN" in headlines_seen
    kremlin = sorted(h for h in headlines_seen if h.startswith("The Kremlin denies"))
    assert len(kremlin) == 5  # one denial of five claims, each slide naming its claim
    response = await client.get(f"/subjects/{SUBJECT}/timeline.csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["kind"] for r in rows} >= {"statement", "denial_withdrawn", "confirmed", "denied"}
    assert {r["addresses"] for r in rows if r["kind"] == "denied"} == {"claim", "figure"}
    jsonld = await _get(client, f"/subjects/{SUBJECT}/claims.jsonld")
    ids = {item["identifier"] for item in jsonld["itemListElement"]}
    assert "unnamed-sources-troops-moving-west" in ids


async def test_write_api_records_each_new_event(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    day = {"stated_on": "2024-11-04", "document_ids": [DOC]}
    said = await client.post(
        f"/subjects/{SUBJECT}/statements",
        json={"source_id": "france", "statement": "France is watching.", "statement_id": "fr-1", **day},
    )
    assert said.status_code == 201, said.text
    again = await client.post(
        f"/subjects/{SUBJECT}/statements",
        json={"source_id": "france", "statement": "France is watching.", "statement_id": "fr-1", **day},
    )
    assert again.status_code == 200
    denied = await client.post(
        f"/claims/{NIS}/denials",
        json={
            "source_id": "france",
            "statement": "Not 1,500.",
            "addresses": "figure",
            "denial_id": "fr-d",
            **day,
        },
    )
    assert denied.status_code == 201, denied.text
    withdrawn = await client.post(
        f"/claims/{NIS}/denial-withdrawals",
        json={"denial_id": "fr-d", "source_id": "france", "statement": "We were wrong.", **day},
    )
    assert withdrawn.status_code == 201, withdrawn.text
    assert "france" not in [s["id"] for s in (await _get(client, f"/claims/{NIS}"))["disputed_by"]]
    related = await client.post(
        "/sources",
        json={
            "source_id": "fr-mfa",
            "name": "French foreign ministry",
            "kind": "government",
            "part_of": "france",
        },
    )
    assert related.status_code == 201, related.text


@pytest.mark.parametrize(
    ("url", "body", "where"),
    [
        # Only the denial's own source withdraws it.
        ("/claims/nis-1500-soldiers-sent-for-training/denial-withdrawals",
         {"denial_id": "kremlin-denies-north-korean-involvement", "source_id": "france"}, "source"),
        ("/claims/nis-1500-soldiers-sent-for-training/denial-withdrawals",
         {"denial_id": "no-such-denial", "source_id": "kremlin"}, "denial"),
        # A claim without a figure has no figure to confirm.
        ("/claims/zelenskyy-warns-of-major-war/confirmations",
         {"source_id": "france", "addresses": "figure"}, "addresses"),
        ("/subjects/no-such-subject/statements", {"source_id": "france"}, "subject"),
        ("/sources", {"source_id": "loop", "name": "Loop", "kind": "agency", "part_of": "loop"}, "part_of"),
        ("/sources", {"source_id": "orphan", "name": "Orphan", "kind": "agency", "speaks_for": "nobody"},
         "speaks_for"),
    ],
)  # fmt: skip
async def test_refusals_say_where_and_what(
    client: AsyncTestClient,  # type: ignore[type-arg]
    url: str,
    body: dict[str, Any],
    where: str,
) -> None:
    if not url.startswith("/sources"):
        body = {"statement": "Words.", "stated_on": "2024-11-04", "document_ids": [DOC], **body}
    response = await client.post(url, json=body)
    assert response.status_code in (404, 409, 422), response.text
    assert where in response.text


def _entry(kind: str, source: str, **more: Any) -> TimelineEntry:
    return TimelineEntry(
        position=1,
        subject_id="s",
        occurred_on=StatedDate(date="2024-10-21", precision="day"),
        kind=kind,
        claim_id="c",
        source_id=source,
        statement="...",
        **more,
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (_entry("made", "nis", quantity=Quantity(comparator="exactly", value=1500, unit="soldiers"),
                metric="soldiers-sent"), "NIS: 1,500 soldiers sent"),
        (_entry("made", "nis", quantity=Quantity(comparator="about", value=3, unit="battalions"),
                metric="units-deployed"), "NIS: about 3 battalions (units deployed)"),
        (_entry("made", "unnamed"), "Unnamed sources say"),
        (_entry("made", "official"), "An unnamed official says"),
        (_entry("statement", "experts"), "Experts say"),
        (_entry("denied", "kremlin", addresses="figure"), "The Kremlin denies the figure"),
        (_entry("denied", "unnamed"), "Unnamed sources deny the claim"),
        (_entry("confirmed", "kremlin", addresses="proposition"),
         "The Kremlin confirms what the claim says happened (not its figure)"),
        (_entry("denial_withdrawn", "unnamed"), "Unnamed sources withdraw their denial"),
        (_entry("retracted", "kremlin"), "The Kremlin retracts its claim"),
    ],
)  # fmt: skip
def test_headline_wording(entry: TimelineEntry, expected: str) -> None:
    names = {"nis": "NIS", "unnamed": "Unnamed sources", "official": "An unnamed official",
             "experts": "Experts", "kremlin": "The Kremlin"}  # fmt: skip
    kinds = {"nis": "agency", "unnamed": "anonymous", "official": "anonymous", "experts": "experts",
             "kremlin": "government"}  # fmt: skip
    assert headlines.headline(entry, names, kinds) == expected


async def test_a_statement_cannot_be_corrected_and_the_refusal_says_so(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    statement = "kremlin-spokesperson-sovereign-matter"  # a statement of the invented follow-ups
    response = await client.post(
        f"/claims/{statement}/corrections",
        json={"corrects_version": 1, "changes": {"statement": "x"}, "reason": "typo"},
    )
    assert response.status_code == 404, response.text
    problem = response.json()
    assert "a statement (StatementMade) cannot be corrected" in problem["detail"]
    assert "record a new statement" in problem["detail"]


async def test_a_fixture_correcting_a_statement_is_refused_by_line(db: Database) -> None:
    await import_fixtures(
        db, [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, FOLLOW_UPS)], recorded_by="test"
    )
    text = (
        'document: {id: fix, title: A fix, published_on: "2024-11-05"}\n'
        "events:\n"
        "  - type: correction\n"
        "    id: fix-statement\n"
        "    claim: kremlin-spokesperson-sovereign-matter\n"
        "    corrects: kremlin-spokesperson-sovereign-matter\n"
        "    changes: {statement: Corrected words.}\n"
        "    reason: A typo.\n"
    )
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [LoadedFixture("fix.yaml", text.encode())], recorded_by="test")
    assert caught.value.path == "events[0].claim"
    assert caught.value.line == 5
    assert "a statement (StatementMade) cannot be corrected" in caught.value.message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (_entry("denied", "kremlin"), "The Kremlin denies the claim by NIS: 1,500 soldiers"),
        (_entry("denied", "kremlin", addresses="figure"),
         "The Kremlin denies the figure given by NIS: 1,500 soldiers"),
        (_entry("confirmed", "kremlin", addresses="proposition"),
         "The Kremlin confirms what NIS says happened (not its figure)"),
        (_entry("denial_withdrawn", "kremlin"),
         "The Kremlin withdraws its denial of the claim by NIS: 1,500 soldiers"),
    ],
)  # fmt: skip
def test_headlines_name_whose_claim(entry: TimelineEntry, expected: str) -> None:
    claim = claims.evolve(None, claim_made("c", "nis", 1500))
    record = ClaimRecord(claim=claim, made_position=1, updated_position=1)
    names = {"nis": "NIS", "kremlin": "The Kremlin"}
    kinds = {"nis": "agency", "kremlin": "government"}
    assert headlines.headline(entry, names, kinds, {"c": record}) == expected


def test_overlapping_imports_leave_the_fold_memo_as_a_request_finds_it() -> None:
    # Imports may overlap (tasks on one loop, a server's import on its own thread) and end in any order: the
    # room the last one asked for goes with it, and only then is what they remembered let go. Otherwise the
    # memo stays large and keeps states alive for good.
    first, second = claims.remembering(9_000), claims.remembering(12_000)
    first.__enter__()
    second.__enter__()
    open_ones = [first, second]
    try:
        claims.evolve(None, claim_made("c", "nis", 1500))
        open_ones.remove(first)
        first.__exit__(None, None, None)  # the first to begin ends first
        assert claims._room.capacity == 12_000
        assert claims._FOLDED
    finally:
        # A failure above must not leave the memo large for the tests after.
        for still_open in reversed(open_ones):
            still_open.__exit__(None, None, None)
    assert claims._room.capacity == 0
    assert not claims._FOLDED


def test_folds_outside_a_write_are_not_remembered() -> None:
    # A rebuild or time travel folds each event once: remembering them would only cost (a third of a
    # rebuild's fold) and keep states alive. Inside a write the second fold of an event is the first's.
    made = claim_made("c", "nis", 1500)
    assert claims.evolve(None, made) is not claims.evolve(None, made)
    assert not claims._FOLDED
    with claims.remembering():
        assert claims.evolve(None, made) is claims.evolve(None, made)
    assert not claims._FOLDED
