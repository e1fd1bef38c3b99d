"""Fixture files: errors that say where and what, atomic and idempotent imports, cross-fixture ids."""

from __future__ import annotations

import json
import textwrap

import pytest

from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain import claims
from timeline.fixtures import FixtureError, json_schema, parse
from timeline.store import eventlog, queries
from timeline.store.database import Database

from .conftest import ROOT, SEED
from .helpers import FoldCounter

BASE = """\
document: {id: later-article, title: A later article, published_on: "2024-10-25"}
sources:
  - {id: pentagon, name: US Department of Defense, kind: government, country: US}
events:
"""


def fixture(body: str, name: str = "later.yaml") -> LoadedFixture:
    return LoadedFixture(name, (BASE + textwrap.dedent(body)).encode())


async def seed(db: Database) -> None:
    await import_fixtures(db, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")


async def log_size(db: Database) -> int:
    async with db.read() as conn:
        return len(await eventlog.read_all(conn, limit=10_000))


def test_schema_json_is_committed_and_current() -> None:
    committed = json.loads((ROOT / "fixtures" / "schema.json").read_text())
    assert committed == json_schema(), "fixtures/schema.json is stale: run `make schema`"


def test_type_error_names_the_path_and_line() -> None:
    text = BASE + textwrap.dedent("""\
      - type: claim
        id: c1
        subject: s
        source: pentagon
        statement: s
        metric: soldiers
        quantity: {comparator: exactly, value: lots, unit: soldiers}
    """)
    with pytest.raises(FixtureError) as caught:
        parse(text, "later.yaml")
    err = caught.value
    assert err.path == "events[0].quantity.value"
    assert err.line == 11
    assert "Expected `int | float | null`, got `str`" in err.message
    assert str(err).startswith("later.yaml:11: events[0].quantity.value:")


def test_unknown_key_and_bad_tag_are_reported() -> None:
    with pytest.raises(FixtureError, match=r"events\[0\]: Object contains unknown field `sauce`"):
        parse(BASE + "  - {type: claim, id: c, subject: s, source: p, statement: x, sauce: 1}\n", "f.yaml")
    with pytest.raises(FixtureError, match=r"Invalid value 'rumour'.*events\[0\]\.type|events\[0\]\.type"):
        parse(BASE + "  - {type: rumour, id: c}\n", "f.yaml")


def test_invalid_yaml_gives_the_line() -> None:
    with pytest.raises(FixtureError) as caught:
        parse("document: {id: x\nsources: [\n", "broken.yaml")
    assert caught.value.line is not None
    assert "not valid YAML" in caught.value.message


async def test_seed_imports_once_and_again_adds_nothing(db: Database) -> None:
    await seed(db)
    size = await log_size(db)
    [again] = await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    assert again.appended == 0
    assert again.unchanged > 0
    assert await log_size(db) == size == 29


async def test_a_big_import_folds_each_claim_event_once_and_holds_no_state_after(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules, the views' look ahead and the views each fold every claim event; past the 4,096 folds
    # remembered for a request, an import refolded all of them (three times the work), and what is
    # remembered holds every state alive until forgotten.
    counted = FoldCounter()
    monkeypatch.setattr(claims, "_step", counted)
    text = "".join(
        [
            'document: {id: big, title: A big article, published_on: "2024-10-21"}\nsubjects:\n',
            *(f"  - {{id: subject-{s}, name: Subject {s}}}\n" for s in range(50)),
            "sources:\n",
            *(f"  - {{id: source-{s}, name: Source {s}, kind: agency}}\n" for s in range(50)),
            "events:\n",
            *(
                f"  - {{type: claim, id: c{i}, subject: subject-{i % 50}, source: source-{i % 47}, "
                f"statement: A figure., metric: soldiers, quantity: {{comparator: about, value: {i}, "
                "unit: soldiers}}\n"
                for i in range(5_000)
            ),
        ]
    )
    [result] = await import_fixtures(db, [LoadedFixture("big.yaml", text.encode())], recorded_by="test")
    assert result.appended == 5_000 + 50 + 50 + 1
    assert counted.steps == 5_000
    assert not claims._FOLDED


async def test_error_late_in_a_fixture_imports_nothing(db: Database) -> None:
    await seed(db)
    before = await log_size(db)
    bad = fixture("""\
      - type: claim
        id: pentagon-says-3000
        subject: dprk-troops-to-russia
        source: pentagon
        statement: about 3,000 soldiers
        metric: soldiers-sent
        quantity: {comparator: about, value: 3000, unit: soldiers}
      - type: denial
        id: pentagon-denies-something
        source: pentagon
        statement: no
        claims: [nis-1500-soldiers-sent-for-training, no-such-claim]
    """)
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [bad], recorded_by="test")
    assert caught.value.path == "events[1].claims[1]"
    assert caught.value.line == 16
    assert "unknown claim 'no-such-claim'" in caught.value.message
    assert await log_size(db) == before
    async with db.read() as conn:
        assert await queries.claim(conn, "pentagon-says-3000") is None
        assert await queries.registration(conn, "source-pentagon") is None


async def test_later_fixture_revises_and_denies_earlier_claims(db: Database) -> None:
    await seed(db)
    later = fixture("""\
      - type: revision
        id: nis-revises-to-3000
        claim: nis-1500-soldiers-sent-for-training
        stated_on: "2024-10-25"
        statement: North Korea has now sent about 3,000 soldiers.
        quantity: {comparator: about, value: 3000, unit: soldiers}
      - type: denial
        id: pentagon-cannot-confirm
        source: pentagon
        statement: The Pentagon cannot confirm the video.
        claims: [spravdi-video-recruits-receive-uniforms]
    """)
    [result] = await import_fixtures(db, [later], recorded_by="test")
    assert result.appended == 4  # the document, the source, the revision and the denial
    async with db.read() as conn:
        nis = await queries.claim(conn, "nis-1500-soldiers-sent-for-training")
        video = await queries.claim(conn, "spravdi-video-recruits-receive-uniforms")
        history = await eventlog.read_stream(conn, "claim-nis-1500-soldiers-sent-for-training")
    assert nis is not None
    assert video is not None
    assert nis.claim.quantity is not None
    assert nis.claim.quantity.value == 3000
    assert nis.claim.status == "disputed"
    assert [e.type for e in history] == ["ClaimMade", "ClaimDenied", "ClaimRevised"]
    assert video.claim.disputed_by == ("kremlin", "pentagon")


async def test_conflicting_source_definition_names_both_places(db: Database) -> None:
    await seed(db)
    clash = LoadedFixture(
        "clash.yaml",
        b"document: {id: clash, title: T, published_on: '2024'}\n"
        b"sources:\n  - {id: kremlin, name: Kremlin press office, kind: government, country: RU}\n",
    )
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [clash], recorded_by="test")
    message = str(caught.value)
    assert message.startswith("clash.yaml:3: sources[0]:")
    assert 'name: recorded "The Kremlin", now "Kremlin press office"' in message
    assert f"{SEED} sources[8]" in message


async def test_identical_source_in_another_fixture_is_a_noop(db: Database) -> None:
    await seed(db)
    same = LoadedFixture(
        "same.yaml",
        b"document: {id: same, title: T, published_on: '2024-11'}\n"
        b"sources:\n  - {id: kremlin, name: The Kremlin, kind: government, country: RU}\n",
    )
    [result] = await import_fixtures(db, [same], recorded_by="test")
    assert (result.appended, result.unchanged) == (1, 1)  # only the new document


async def test_claim_referring_to_unknown_subject_is_rejected_with_its_path(db: Database) -> None:
    bad = fixture("""\
      - {type: claim, id: c, subject: nowhere, source: pentagon, statement: x}
    """)
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [bad], recorded_by="test")
    assert caught.value.path == "events[0].subject"
    assert "unknown subject 'nowhere'" in caught.value.message
    assert await log_size(db) == 0


async def test_fixture_with_every_later_entry_type(db: Database) -> None:
    await seed(db)
    later = fixture("""\
      - type: confirmation
        id: pentagon-confirms-troops
        claim: nis-1500-soldiers-sent-for-training
        source: pentagon
        statement: The Pentagon confirmed North Korean soldiers are in Russia.
      - type: evidence
        id: satellite-images
        claim: nis-1500-soldiers-sent-for-training
        kind: image
        source: pentagon
        description: Satellite images of a transport ship at Vladivostok.
        url: https://example.org/images
      - type: correction
        id: nis-date-was-october-18
        claim: nis-1500-soldiers-sent-for-training
        corrects: nis-1500-soldiers-sent-for-training
        changes: {stated_on: "2024-10-18"}
        reason: The NIS briefing was on 18 October; the article reported it on the 21st.
      - type: source-amendment
        source: south-korea-nis
        aliases: [NIS]
      - type: subject-amendment
        subject: dprk-troops-to-russia
        description: North Korean soldiers sent to Russia.
    """)
    [result] = await import_fixtures(db, [later], recorded_by="test")
    assert result.appended == 7  # document, source, and the five entries
    async with db.read() as conn:
        nis = await queries.claim(conn, "nis-1500-soldiers-sent-for-training")
        source = await queries.registration(conn, "source-south-korea-nis")
        history = await eventlog.read_stream(conn, "claim-nis-1500-soldiers-sent-for-training")
    assert nis is not None
    assert nis.claim.status == "contested"
    assert nis.claim.stated_on.date == "2024-10-18"
    assert nis.claim.evidence[0].url == "https://example.org/images"
    assert history[0].event.stated_on.date == "2024-10-21"  # type: ignore[union-attr]
    assert history[-1].type == "RecordCorrected"
    assert history[-1].event.corrects_version == 1  # type: ignore[union-attr]
    assert source is not None
    assert source[1].aliases == ("NIS",)  # type: ignore[union-attr]
    [again] = await import_fixtures(db, [later], recorded_by="test")
    assert again.appended == 0


async def test_correction_of_an_unknown_entry_names_it(db: Database) -> None:
    await seed(db)
    bad = fixture("""\
      - type: correction
        id: fix
        claim: nis-1500-soldiers-sent-for-training
        corrects: nis-typo
        changes: {statement: fixed}
        reason: typo
    """)
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [bad], recorded_by="test")
    assert caught.value.path == "events[0].corrects"
    assert caught.value.line == 8
    assert "has no entry 'nis-typo'" in caught.value.message


FOLLOW_UPS = ROOT / "fixtures" / "invented" / "002_statements_and_relations.yaml"


async def test_the_invented_follow_ups_import_once_with_every_new_event(db: Database) -> None:
    await seed(db)
    loaded = LoadedFixture(str(FOLLOW_UPS), FOLLOW_UPS.read_bytes())
    [result] = await import_fixtures(db, [loaded], recorded_by="test")
    assert result.appended == 10  # document, three sources, an amendment and five entries
    async with db.read() as conn:
        types = {e.type for e in await eventlog.read_all(conn, limit=10_000)}
        mod = await queries.registration(conn, "source-russia-mod")
        kremlin = await queries.registration(conn, "source-kremlin")
    assert {"StatementMade", "DenialWithdrawn", "ClaimConfirmed", "ClaimDenied", "SourceAmended"} <= types
    assert mod is not None
    assert mod[1].part_of == "russia-government"  # type: ignore[union-attr]
    assert kremlin is not None
    assert kremlin[1].speaks_for == "russia-government"  # type: ignore[union-attr]
    [again] = await import_fixtures(db, [loaded], recorded_by="test")
    assert again.appended == 0


async def test_a_withdrawal_of_another_sources_denial_names_its_place(db: Database) -> None:
    await seed(db)
    bad = fixture("""\
      - type: denial-withdrawal
        id: pentagon-withdraws
        denial: kremlin-denies-north-korean-involvement
        source: pentagon
        claims: [nis-1500-soldiers-sent-for-training]
        statement: Withdrawn.
    """)
    with pytest.raises(FixtureError) as caught:
        await import_fixtures(db, [bad], recorded_by="test")
    assert caught.value.path == "events[0].source"
    assert caught.value.line == 8
    assert "only its own source withdraws it" in caught.value.message
    assert await log_size(db) == 29  # the seed alone: nothing of the bad fixture


def test_an_unknown_addresses_value_is_reported_with_its_path() -> None:
    loaded = fixture("""\
      - type: denial
        id: d
        source: pentagon
        claims: [c]
        statement: No.
        addresses: number
    """)
    with pytest.raises(FixtureError) as caught:
        parse(loaded.text, loaded.name)
    assert caught.value.path == "events[0].addresses"
    assert caught.value.line == 10
    assert "'number'" in caught.value.message


def test_anchors_merge_keys_and_tags_read_as_their_plain_spelling() -> None:
    plain = parse(
        BASE
        + textwrap.dedent("""\
          - {type: claim, id: c1, subject: s, source: pentagon, statement: "no", metric: soldiers,
             quantity: {comparator: about, value: 3000, unit: soldiers}}
          - {type: claim, id: c2, subject: s, source: pentagon, statement: "off", metric: soldiers,
             quantity: {comparator: about, value: 3000, unit: soldiers}}
        """),
        "plain.yaml",
    )
    shared = parse(
        BASE
        + textwrap.dedent("""\
          - &first {type: claim, id: c1, subject: s, source: pentagon, statement: no, metric: soldiers,
             quantity: &figure {comparator: about, value: 3_000, unit: soldiers}}
          - <<: *first
            id: !!str c2
            statement: off
            quantity: *figure
        """),
        "shared.yaml",
    )
    assert shared.fixture == plain.fixture


def test_a_mistake_under_an_alias_still_names_its_line() -> None:
    text = BASE + textwrap.dedent("""\
      - &entry {type: claim, id: c1, subject: s, source: pentagon, statement: x, metric: soldiers,
         quantity: {comparator: about, value: lots, unit: soldiers}}
      - *entry
    """)
    with pytest.raises(FixtureError) as caught:
        parse(text, "aliased.yaml")
    assert caught.value.path == "events[0].quantity.value"
    assert caught.value.line == 6
    assert [e.path for e in caught.value.all] == ["events[0].quantity.value", "events[1].quantity.value"]


def test_a_repeated_anchor_or_a_second_document_is_refused_with_its_line() -> None:
    with pytest.raises(FixtureError, match="second occurrence") as caught:
        parse(BASE + "  - &a {type: claim}\n  - &a {type: claim}\n", "twice.yaml")
    assert caught.value.line == 6
    with pytest.raises(FixtureError, match="found another document") as caught:
        parse(BASE + "---\ndocument: {}\n", "two.yaml")
    assert caught.value.line == 5


async def test_the_fixture_set_covers_every_new_event_and_field(db: Database) -> None:
    """The seed and every invented fixture (fixtures/invented/, as the README imports them) record each event
    and field issue #15 added, and import together once."""
    invented = sorted((ROOT / "fixtures" / "invented").glob("*.yaml"))
    loaded = [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, *invented)]
    first = await import_fixtures(db, loaded, recorded_by="test")
    assert [r.appended for r in first] == [29, 5, 10]
    async with db.read() as conn:
        events = [e.event for e in await eventlog.read_all(conn, limit=10_000)]
    seen: set[str] = {type(e).__name__ for e in events}
    for e in events:
        quantity = getattr(e, "quantity", None)
        if quantity is not None:
            seen.add(f"comparator:{quantity.comparator}")
            seen.update(["horizon"] if quantity.horizon is not None else [])
        occurred = getattr(e, "occurred", None)
        if occurred is not None:
            seen.add(f"occurred:{occurred.start.precision}")
            seen.update(["occurred:range"] if occurred.end is not None else [])
        seen.add(f"addresses:{getattr(e, 'addresses', '')}")
        for relation in ("part_of", "speaks_for", "aliases"):
            if getattr(e, relation, None):
                seen.add(relation)
    assert {
        "StatementMade", "DenialWithdrawn", "comparator:more_than", "comparator:less_than", "horizon",
        "occurred:week", "occurred:month", "occurred:range", "addresses:proposition", "addresses:figure",
        "part_of", "speaks_for", "aliases",
    } <= seen  # fmt: skip
    assert [r.appended for r in await import_fixtures(db, loaded, recorded_by="test")] == [0, 0, 0]
