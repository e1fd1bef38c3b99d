"""Time travel: views at any (as_of, known_at) equal what a replay of exactly those events gives."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import timetravel
from timeline.api.app import create_app
from timeline.app import maintenance
from timeline.app.errors import Rejected
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain import claims, rules
from timeline.domain.claims import Claim, ClaimEvent
from timeline.domain.events import (
    ClaimMade,
    ClaimRevised,
    CorrectedFields,
    DenialWithdrawn,
    DomainEvent,
    Quantity,
    RecordCorrected,
    StatedDate,
    StatementMade,
)
from timeline.domain.streams import stream_of
from timeline.domain.values import period_start
from timeline.projections import ClaimRecord, TimelineEntry, Views, apply, current
from timeline.service import Recorder
from timeline.store import (
    decoded,
    eventlog,
    migrate,
    projector,
    queries,
    refold,
    schema,
    snaprows,
    snapshots,
    tokens,
    travel,
)
from timeline.store.database import Database
from timeline.store.views import claim_from_row, entry_from_row

from .conftest import SEED, _pg_admin
from .helpers import claim_made, document, source, subject
from .strategies import CLAIMS, SOURCES, SUBJECTS, commands, corrections, dates, ids, made

DECIDE: dict[type, Any] = {
    ClaimMade: rules.decide_make,
    **{
        rules.ClaimRevised: rules.decide_revise,
        rules.ClaimDenied: rules.decide_deny,
        rules.ClaimConfirmed: rules.decide_confirm,
        rules.EvidenceAttached: rules.decide_attach,
        rules.ClaimRetracted: rules.decide_retract,
        RecordCorrected: rules.decide_correct,
        rules.DenialWithdrawn: rules.decide_withdraw_denial,
    },
}
SETUP: list[DomainEvent] = [subject(s) for s in SUBJECTS] + [source(s) for s in SOURCES] + [document("d")]


class MemoryLog:
    """The live path in memory: decide each command against current state, append, fold into views."""

    def __init__(self) -> None:
        self.log: list[timetravel.Logged] = []
        self.views = Views()
        self.claims: dict[str, Claim] = {}

    def record(self, event: DomainEvent, *, decide: bool = True) -> bool:
        if isinstance(event, ClaimEvent) and decide:
            try:
                accepted = DECIDE[type(event)](self.claims.get(event.claim_id), event)
            except Exception:
                return False
        else:
            accepted = [event]
        for e in accepted:
            stream = stream_of(e)
            version = 1 + sum(1 for x in self.log if x.stream_id == stream)
            position = len(self.log) + 1
            self.log.append(
                timetravel.Logged(position=position, stream_id=stream, stream_version=version, event=e)
            )
            if isinstance(e, ClaimEvent):
                self.claims[e.claim_id] = claims.evolve(self.claims.get(e.claim_id), e)
            apply(self.views, position, e)
        return bool(accepted)


def _comparable(v: Views) -> tuple[dict[str, Claim], dict[Any, str], list[TimelineEntry]]:
    """Views with log positions left out (a replay of a subset numbers its positions afresh)."""
    return (
        {cid: r.claim for cid, r in v.claims.items()},
        {k: c for k, c in v.estimates.items() if c != (None, None)},
        [msgspec.structs.replace(e, position=0) for _, e in sorted(v.timeline.items()) if e is not None],
    )


def _effective_dates(log: list[timetravel.Logged]) -> dict[tuple[str, int], dt.date]:
    dates: dict[tuple[str, int], dt.date] = {}
    for e in log:
        if isinstance(e.event, RecordCorrected):
            if e.event.changes.stated_on is not None:
                dates[(e.stream_id, e.event.corrects_version)] = period_start(e.event.changes.stated_on)
        elif isinstance(e.event, ClaimEvent):
            dates.setdefault((e.stream_id, e.stream_version), period_start(e.event.stated_on))
    return dates


@settings(max_examples=300, deadline=None)
@given(
    opening=st.lists(made(), min_size=4, max_size=8),
    batch=st.lists(commands, min_size=1, max_size=3),
    closing=st.lists(corrections, max_size=10),
    as_of=st.dates(dt.date(2022, 1, 1), dt.date(2025, 12, 31)),
)
def test_as_of_equals_recording_only_what_was_said_by_then(
    opening: list[DomainEvent], batch: list[list[DomainEvent]], closing: list[DomainEvent], as_of: dt.date
) -> None:
    full = MemoryLog()
    for event in [*SETUP, *opening, *(e for b in batch for e in b), *closing]:
        full.record(event)
    dates = _effective_dates(full.log)

    # Independently: record again, keeping only events stated by `as_of`, with corrections re-aimed at
    # their target by its entry id (the version numbers differ once events are left out).
    expected = MemoryLog()
    entry_of: dict[tuple[str, int], str] = {}
    for e in full.log:
        event = e.event
        if isinstance(event, ClaimEvent) and not isinstance(event, RecordCorrected):
            entry_of[(e.stream_id, e.stream_version)] = claims.entry_id(event)
        if isinstance(event, StatementMade) and period_start(event.stated_on) > as_of:
            continue  # said after as_of
        if not isinstance(event, ClaimEvent):
            expected.record(event)
            continue
        kept = expected.claims.get(event.claim_id)
        if isinstance(event, DenialWithdrawn) and all(
            d.denial_id != event.denial_id for d in (kept.denials if kept else ())
        ):
            continue  # its denial is not in view
        if isinstance(event, RecordCorrected):
            target = entry_of[(e.stream_id, event.corrects_version)]
            if kept is None:
                continue
            versions = [
                v
                for v, x in enumerate(kept.recorded, 1)
                if not isinstance(x, RecordCorrected) and claims.entry_id(x) == target
            ]
            if not versions:
                continue
            event = msgspec.structs.replace(event, corrects_version=versions[0])
        elif (kept is None and not isinstance(event, ClaimMade)) or dates[
            (e.stream_id, e.stream_version)
        ] > as_of:
            continue
        if expected.record(event):
            continue
        if isinstance(event, RecordCorrected):
            # A correction is checked against the claim as it stands when it is recorded; leaving out what
            # was said after ``as_of`` can make that same correction break a rule in the shorter history
            # (a denial moved onto the claim's own source is refused while the denial's withdrawal, said
            # later, is left out). The log holds it all the same, and a cut folds it: so must the oracle.
            expected.record(event, decide=False)
            continue
        raise AssertionError(f"a kept event was refused: {event!r}")

    assert _comparable(timetravel.views_at(full.log, as_of)) == _comparable(expected.views)


@settings(max_examples=300, deadline=None)
@given(
    opening=st.lists(made(), min_size=4, max_size=8),
    batch=st.lists(commands, min_size=1, max_size=3),
    closing=st.lists(corrections, max_size=10),
    as_of=st.none() | st.dates(dt.date(2022, 1, 1), dt.date(2025, 12, 31)),
)
def test_folding_a_claim_at_a_time_equals_applying_each_event_in_log_order(
    opening: list[DomainEvent],
    batch: list[list[DomainEvent]],
    closing: list[DomainEvent],
    as_of: dt.date | None,
) -> None:
    """Time travel folds each claim's events in one replay; the views must be exactly those of the live
    path's ``apply``, event by event, positions and corrected entries included."""
    full = MemoryLog()
    for event in [*SETUP, *opening, *(e for b in batch for e in b), *closing]:
        full.record(event)
    expected = Views(indexed=True)
    for position, event in timetravel.visible(full.log, as_of):
        apply(expected, position, event)

    folded = timetravel.views_at(full.log, as_of)

    assert folded.claims == expected.claims
    assert folded.timeline == expected.timeline
    assert folded.registrations == expected.registrations
    assert folded.position == expected.position
    # ``apply`` also keeps a None for a key its claims all left (by a correction); no answer shows those.
    assert {k: c for k, c in folded.estimates.items() if c != (None, None)} == {
        k: c for k, c in expected.estimates.items() if c != (None, None)
    }


async def _live(db: Database) -> tuple[int, dict[str, ClaimRecord], dict[Any, Any], dict[int, TimelineEntry]]:
    import sqlalchemy as sa

    from timeline.store.schema import claims, estimates, timeline

    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        claim_rows = {
            r["claim_id"]: claim_from_row(r) for r in (await conn.execute(sa.select(claims))).mappings()
        }
        estimate_rows = {
            (r["subject_id"], r["metric"], r["source_id"]): (r["asserted_claim_id"], r["projected_claim_id"])
            for r in (await conn.execute(sa.select(estimates))).mappings()
        }
        entries = {
            r["position"]: entry_from_row(r) for r in (await conn.execute(sa.select(timeline))).mappings()
        }
    return head, claim_rows, estimate_rows, entries


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(commands, min_size=1, max_size=4))
async def test_known_at_equals_the_live_views_as_they_were(
    db: Database, batches: list[list[DomainEvent]]
) -> None:
    """For every position the log passed through, folding the log cut there gives exactly the views the
    live path showed at that moment (corrections recorded later included only after they were recorded)."""
    prefix = uuid.uuid4().hex[:8]
    snapshots = []
    for batch in [SETUP, *batches]:
        async with db.write() as conn:
            recorder = Recorder(conn, recorded_by="property", label="test")
            for event in batch:
                if isinstance(event, ClaimEvent):
                    event = msgspec.structs.replace(event, claim_id=f"{prefix}-{event.claim_id}")  # noqa: PLW2901
                try:
                    await recorder.record(event, origin="command")
                except Rejected:
                    continue
            await recorder.finish()
        snapshots.append(await _live(db))
    for head, claim_rows, estimate_rows, entries in snapshots:
        async with db.read() as conn:
            recorded = await eventlog.read_until(conn, position=head)
        at = timetravel.views_at(
            (
                timetravel.Logged(
                    position=r.position, stream_id=r.stream_id, stream_version=r.stream_version, event=r.event
                )
                for r in recorded
            ),
            None,
        )
        # A view row keeps a claim's current state; the fold of the log has its history besides.
        assert {cid: current(r) for cid, r in at.claims.items()} == claim_rows
        assert {k: v for k, v in at.estimates.items() if v != (None, None)} == estimate_rows
        assert {p: e for p, e in at.timeline.items() if e is not None} == entries


# Over HTTP, on the seed ------------------------------------------------------------------------------

NIS = "nis-1500-soldiers-sent-for-training"
SUBJECT = "dprk-troops-to-russia"


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture("seed.yaml", SEED.read_bytes())], recorded_by="test")
        async with seeding.write() as conn:
            secret = await tokens.create(conn, "auditor-test", ("write",))
    finally:
        await seeding.dispose()
    async with AsyncTestClient(app=create_app(Database(database_url))) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        yield c


async def test_what_the_system_showed_before_a_correction(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    before = (await client.get("/audit/head")).json()["position"]
    fixed = await client.post(
        f"/claims/{NIS}/corrections",
        json={
            "corrects_version": 1,
            "changes": {"quantity": {"comparator": "about", "value": 1600, "unit": "soldiers"}},
            "reason": "the briefing said about 1,600",
        },
    )
    assert fixed.status_code == 201, fixed.text
    now = (await client.get(f"/claims/{NIS}")).json()
    assert now["quantity"]["value"] == 1600
    then = (await client.get(f"/claims/{NIS}", params={"known_at": before})).json()
    assert then["quantity"]["value"] == 1500
    assert then["known_at_position"] == before
    assert then["corrections"] == []
    also_now = (
        await client.get(f"/claims/{NIS}", params={"known_at": fixed.json()["events"][0]["position"]})
    ).json()
    assert also_now["quantity"]["value"] == 1600
    estimates_then = (await client.get(f"/subjects/{SUBJECT}/estimates", params={"known_at": before})).json()
    nis = next(e for e in estimates_then["estimates"] if e["source"]["id"] == "south-korea-nis")
    assert nis["quantity"]["value"] == 1500
    # known_at as a time: before the seed was recorded nothing was known.
    empty = await client.get(f"/claims/{NIS}", params={"known_at": "2000-01-01T00:00:00Z"})
    assert empty.status_code == 404
    assert "had been recorded" in empty.json()["detail"]

    history = (await client.get(f"/claims/{NIS}/history")).json()["events"]
    assert history[0]["corrected_by"][0]["reason"] == "the briefing said about 1,600"
    assert history[0]["documents"] == [
        {
            "id": "000-16630df2654ec508",
            "title": "A new ally for Russia? Why Pyongyang is sending soldiers to Ukraine",
        }
    ]
    assert history[0]["metadata"]["origin"] == "seed.yaml events[0]"
    denial_changes = {c["field"]: (c["before"], c["after"]) for c in history[1]["changes"]}
    assert denial_changes["status"] == ("standing", "disputed")
    assert denial_changes["disputed_by"] == ([], ["kremlin"])
    correction_changes = {c["field"]: (c["before"], c["after"]) for c in history[2]["changes"]}
    assert correction_changes["quantity"][1]["value"] == 1600


async def test_as_of_valid_time(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    revised = await client.post(
        f"/claims/{NIS}/revisions",
        json={
            "statement": "About 3,000 now.",
            "stated_on": "2024-11",
            "document_ids": ["000-16630df2654ec508"],
            "quantity": {"comparator": "about", "value": 3000, "unit": "soldiers"},
        },
    )
    assert revised.status_code == 201
    url = f"/subjects/{SUBJECT}/estimates"
    october = (await client.get(url, params={"as_of": "2024-10"})).json()
    assert {
        e["source"]["id"]: e["quantity"].get("value", e["quantity"].get("upper"))
        for e in october["estimates"]
    } == {
        "south-korea-nis": 1500,
        "unnamed-sources": 12000,
        "volodymyr-zelenskyy": 10000,
    }
    assert october["as_of"] == "2024-10"
    november = (await client.get(url, params={"as_of": "2024-11-30"})).json()
    assert (
        next(e for e in november["estimates"] if e["source"]["id"] == "south-korea-nis")["quantity"]["value"]
        == 3000
    )
    assert (await client.get(url, params={"as_of": "2024-10-20"})).json()["estimates"] == []
    assert (await client.get(f"/claims/{NIS}", params={"as_of": "2024-10-20"})).status_code == 404
    timeline = (
        await client.get(f"/subjects/{SUBJECT}/timeline", params={"as_of": "2024-10", "limit": 100})
    ).json()
    assert "revised" not in {e["kind"] for e in timeline["entries"]}
    assert len(timeline["entries"]) == 13
    both = (await client.get(f"/claims/{NIS}", params={"as_of": "2024-11", "known_at": 29})).json()
    assert both["quantity"]["value"] == 1500  # the revision was not yet recorded at position 29
    assert (await client.get(url, params={"as_of": "2024-13"})).status_code == 400
    assert (await client.get(url, params={"known_at": "yesterday"})).status_code == 400


async def test_a_claim_moved_to_another_subject_is_on_each_while_it_was(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """Time travel on a subject also finds the claims a correction moved off it or onto it, and names a
    source that only a correction brought in."""
    other = "dprk-russia-military-cooperation"
    before = (await client.get("/audit/head")).json()["position"]
    for changes in ({"subject_id": other}, {"source_id": "cnn"}):
        fixed = await client.post(
            f"/claims/{NIS}/corrections",
            json={"corrects_version": 1, "changes": changes, "reason": "recorded under the wrong subject"},
        )
        assert fixed.status_code == 201, fixed.text
    moved = fixed.json()["events"][0]["position"] - 1

    async def figures(subject: str, known_at: int) -> dict[str, tuple[str, object]]:
        body = (await client.get(f"/subjects/{subject}/estimates", params={"known_at": known_at})).json()
        return {e["claim_id"]: (e["source"]["name"], e["quantity"].get("value")) for e in body["estimates"]}

    assert (await figures(SUBJECT, before))[NIS] == ("National Intelligence Service (South Korea)", 1500)
    assert NIS not in await figures(SUBJECT, moved)
    assert NIS not in await figures(other, before)
    assert (await figures(other, moved))[NIS] == ("National Intelligence Service (South Korea)", 1500)
    assert (await figures(other, moved + 1))[NIS] == ("CNN", 1500)
    # Valid time keeps the move: the correction counts whenever the claim it corrects does.
    now = (await client.get(f"/subjects/{other}/estimates", params={"as_of": "2024-10"})).json()
    assert [e["source"]["id"] for e in now["estimates"] if e["claim_id"] == NIS] == ["cnn"]
    entries = (
        await client.get(f"/subjects/{SUBJECT}/timeline", params={"known_at": before, "limit": 100})
    ).json()["entries"]
    assert NIS in {e["claim_id"] for e in entries}
    entries = (
        await client.get(f"/subjects/{SUBJECT}/timeline", params={"as_of": "2024-10", "limit": 100})
    ).json()["entries"]
    assert NIS not in {e["claim_id"] for e in entries}


async def test_a_correction_that_moves_a_date_before_as_of_brings_the_event_in(
    client: AsyncTestClient,
) -> None:  # type: ignore[type-arg]
    """An event stated after ``as_of`` counts once a correction known at the cut dates it before, and only
    then: the stored date alone does not decide."""
    revised = await client.post(
        f"/claims/{NIS}/revisions",
        json={
            "statement": "About 3,000 now.",
            "stated_on": "2024-12",
            "document_ids": ["000-16630df2654ec508"],
            "quantity": {"comparator": "about", "value": 3000, "unit": "soldiers"},
        },
    )
    assert revised.status_code == 201, revised.text
    fixed = await client.post(
        f"/claims/{NIS}/corrections",
        json={"corrects_version": 3, "changes": {"stated_on": "2024-10-25"}, "reason": "said in October"},
    )
    assert fixed.status_code == 201, fixed.text
    corrected_at = fixed.json()["events"][0]["position"]

    async def nis(**params: object) -> object:
        body = (await client.get(f"/subjects/{SUBJECT}/estimates", params=params)).json()
        return next(e for e in body["estimates"] if e["claim_id"] == NIS)["quantity"]["value"]

    assert await nis(as_of="2024-10") == 3000
    assert await nis(as_of="2024-10", known_at=corrected_at - 1) == 1500
    assert await nis(as_of="2024-12", known_at=corrected_at - 1) == 3000
    claim = (await client.get(f"/claims/{NIS}", params={"as_of": "2024-10"})).json()
    assert claim["quantity"]["value"] == 3000


async def test_rebuild_is_unaffected_by_time_travel(db: Database) -> None:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    before = await _live(db)
    async with db.write() as conn:
        await refold.rebuild(conn)
    assert await _live(db) == before


# A subject read from the log alone -------------------------------------------------------------------

MOVED_TO = "s2"
subject_moves = st.builds(
    lambda c, r, v, s: RecordCorrected(
        claim_id=c,
        correction_id=f"m{r}",
        corrects_version=v,
        changes=CorrectedFields(subject_id=s),
        reason="x",
    ),
    st.sampled_from(CLAIMS),
    ids,
    st.integers(1, 3),
    st.sampled_from([*SUBJECTS, MOVED_TO]),
)
on_second_subject = made().map(lambda m: msgspec.structs.replace(m, subject_id=MOVED_TO))
travels = st.tuples(commands, st.lists(st.one_of(subject_moves, on_second_subject), max_size=5)).flatmap(
    lambda both: st.permutations(both[0] + both[1])
)


def _on(views: Views, subject_id: str) -> tuple[dict[str, ClaimRecord], dict[Any, Any], dict[int, Any]]:
    """What a subject's answers show: its claims (their state: time travel keeps no history), its
    estimates and its timeline."""
    return (
        {cid: current(r) for cid, r in views.claims.items() if r.claim.subject_id == subject_id},
        {k: v for k, v in views.estimates.items() if k[0] == subject_id and v != (None, None)},
        {p: e for p, e in views.timeline.items() if e is not None and e.subject_id == subject_id},
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=travels, as_of=st.none() | dates)
async def test_a_subject_read_from_the_log_equals_the_fold_of_the_whole_log_at_every_position(
    db: Database, events: list[DomainEvent], as_of: StatedDate | None
) -> None:
    """Time travel reads only a subject's claims (found through the log's own index, moves included) and
    the sources they name; at every position and valid time that equals folding the entire log."""
    await _record(db, events)
    valid_until = None if as_of is None else timetravel.period_end(as_of.date)
    async with db.read() as conn:
        log = await _whole_log(conn)
        for position in range(len(log) + 1):
            whole = timetravel.views_at([e for e in log if e.position <= position], valid_until)
            for subject_id in [*SUBJECTS, MOVED_TO]:
                read = await travel.subject_views(conn, subject_id, position, valid_until)
                assert _on(read, subject_id) == _on(whole, subject_id)
                named = {r.claim.source_id for r in _on(read, subject_id)[0].values()}
                assert {s: read.registrations[f"source-{s}"] for s in named} == {
                    s: whole.registrations[f"source-{s}"] for s in named
                }


async def _record(db: Database, events: list[DomainEvent]) -> None:
    prefix = uuid.uuid4().hex[:8]
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="property", label="test")
        for event in [*SETUP, subject(MOVED_TO), *events]:
            if isinstance(event, ClaimEvent):
                event = msgspec.structs.replace(event, claim_id=f"{prefix}-{event.claim_id}")  # noqa: PLW2901
            try:
                await recorder.record(event, origin="command")
            except Rejected:
                continue
        await recorder.finish()


async def _whole_log(conn: AsyncConnection) -> list[timetravel.Logged]:
    head = await eventlog.head_position(conn)
    return [
        timetravel.Logged(
            position=r.position, stream_id=r.stream_id, stream_version=r.stream_version, event=r.event
        )
        for r in await eventlog.read_until(conn, position=head)
    ]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=travels, as_of=st.none() | dates, every=st.integers(1, 4), batch=st.integers(1, 6))
async def test_time_travel_from_snapshots_equals_folding_the_log_at_every_position(
    db: Database, events: list[DomainEvent], as_of: StatedDate | None, every: int, batch: int
) -> None:
    """With snapshots kept by the projector as it follows the log, every subject at every position and
    valid time shows what it shows without them, which is what folding the entire log shows. Cut first
    from the head back (so the snapshot after each cut is decoded already, and bounds which tails are
    read: ``decoded.following``), then forward."""
    await _record(db, events)
    await projector.catch_up(db, snapshots.Taker(db, every=every), size=batch)
    valid_until = None if as_of is None else timetravel.period_end(as_of.date)
    async with db.read() as conn:
        log = await _whole_log(conn)
        for position in [*reversed(range(len(log) + 1)), *range(len(log) + 1)]:
            whole = timetravel.views_at([e for e in log if e.position <= position], valid_until)
            for subject_id in [*SUBJECTS, MOVED_TO]:
                with_snapshots = await travel.subject_views(conn, subject_id, position, valid_until)
                without = await travel.subject_views(
                    conn, subject_id, position, valid_until, from_snapshots=False
                )
                assert _on(with_snapshots, subject_id) == _on(without, subject_id) == _on(whole, subject_id)
    async with db.write() as conn:  # the next example starts without them
        await conn.execute(sa.delete(schema.time_travel_snapshots))


_TakeWhole = Callable[[AsyncConnection, str, int], Awaitable[snapshots.Snapshot]]


def _counting_whole_takes(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[str, int]], _TakeWhole]:
    """The (subject, position) of every snapshot taken whole from now on, and the unpatched whole take."""
    taken: list[tuple[str, int]] = []
    take_whole = travel._take_whole

    async def counted(conn: AsyncConnection, subject_id: str, position: int) -> snapshots.Snapshot:
        taken.append((subject_id, position))
        return await take_whole(conn, subject_id, position)

    monkeypatch.setattr(travel, "_take_whole", counted)
    return taken, take_whole


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=travels, every=st.integers(1, 4))
async def test_a_snapshot_taken_from_the_one_before_holds_what_one_folded_from_the_whole_log_does(
    db: Database, events: list[DomainEvent], every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subject's snapshot is taken from its previous one, folding again only the claims with events since
    (revised, corrected, moved away or here, or new) and carrying the rest over as stored; taken every
    ``every`` positions, each reads back as a snapshot folded from the whole log. Only each subject's first
    is folded whole."""
    whole_takes, take_whole = _counting_whole_takes(monkeypatch)
    async with db.read() as conn:
        start = await eventlog.head_position(conn)
    await _record(db, events)
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
    subjects = [*SUBJECTS, MOVED_TO]
    try:
        for position in range(start + 1, head + 1, every):
            for subject_id in subjects:
                await _take_and_compare(db, subject_id, position, take_whole)
        assert sorted(s for s, _ in whole_takes) == (sorted(subjects) if head > start else [])
    finally:
        async with db.write() as conn:  # the next example starts without them
            await conn.execute(sa.delete(schema.time_travel_snapshots))


async def _take_and_compare(
    db: Database,
    subject_id: str,
    position: int,
    take_whole: _TakeWhole,
) -> None:
    """Take and keep the subject's snapshot at ``position``; it reads back, as cuts read it, as one folded
    from the whole log, and so does the part that tells the next take (and cuts) which streams moved on."""
    async with db.read() as conn:
        taken = await travel.take(conn, subject_id, position)
        whole = await take_whole(conn, subject_id, position)
    async with db.write() as conn:
        await snapshots.keep(conn, subject_id, taken)
    async with db.read() as conn:
        stored = await decoded.latest(conn, subject_id, position)
        assert stored is not None
        assert stored.position == position
        earlier = await decoded.earlier(conn, subject_id, stored)
        s = schema.time_travel_snapshots
        versions = (
            await conn.execute(
                sa.select(s.c.versions).where(s.c.subject_id == subject_id, s.c.position == position)
            )
        ).scalar_one()
    assert (stored.claims, stored.sources, earlier) == (whole.claims, whole.sources, whole.earlier)
    assert msgspec.json.decode(versions) == {c: kept.version for c, kept in whole.claims.items()}


async def _estimates_via_snapshot(db: Database, change: Callable[[dict[str, Any]], None]) -> tuple[Any, Any]:
    """The seed subject's estimates at the head, folded from the log, and again after a snapshot at the
    head was kept and then changed in the table by ``change`` (a dict of the row's columns)."""
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        expected = _on(await travel.subject_views(conn, SUBJECT, head, None), SUBJECT)
        snapshot = await travel.take(conn, SUBJECT, head)
    async with db.write() as conn:
        await snapshots.keep(conn, SUBJECT, snapshot)
        s = schema.time_travel_snapshots
        row = dict((await conn.execute(sa.select(s).where(s.c.subject_id == SUBJECT))).mappings().one())
        change(row)
        await conn.execute(sa.update(s).where(s.c.subject_id == SUBJECT).values(row))
    async with db.read() as conn:
        return expected, _on(await travel.subject_views(conn, SUBJECT, head, None), SUBJECT)


def _shown_since_january(row: dict[str, Any]) -> bytes:
    """An ``earlier`` part saying each of the row's claims stood as it does now from 2024-01-01 on."""
    claims = msgspec.json.decode(row["state"])["claims"]
    return msgspec.json.encode(
        {c: [{"until": "2024-01-01", "record": kept["record"], "entries": {}}] for c, kept in claims.items()}
    )


def _reseal(subject_id: str, row: dict[str, Any]) -> None:
    """Give an edited row the hashes and digest of what it now holds (as anyone who can write it can)."""
    stored = {name: bytes(row[name]) for name in snapshots.PARTS}
    row.update(snapshots.seal(subject_id, row["position"], row["chain_hash"], stored))


def _retract_every_claim(row: dict[str, Any]) -> None:
    row["state"] = re.sub(rb'"status":"\w+"', b'"status":"retracted"', bytes(row["state"]))


async def test_an_edited_snapshot_changes_no_answer(db: Database) -> None:
    """A snapshot whose state was edited (here: every claim in it shown retracted) no longer matches its
    digest: time travel folds from the log instead, and the estimates stay what the log says."""
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    expected, answered = await _estimates_via_snapshot(db, _retract_every_claim)
    assert expected[1]  # the subject has estimates, which the edit would have hidden
    assert answered == expected


def _drop_a_version(row: dict[str, Any]) -> None:
    """The row's versions part without one of its claims, resealed: well hashed, but not a snapshot."""
    versions = msgspec.json.decode(row["versions"])
    versions.pop(sorted(versions)[0])
    row["versions"] = msgspec.json.encode(versions)
    _reseal(SUBJECT, row)


def _cut_the_state_short(row: dict[str, Any]) -> None:
    """The row's state cut short, resealed: its hashes hold but it is no JSON."""
    row["state"] = bytes(row["state"])[:100]
    _reseal(SUBJECT, row)


@pytest.mark.parametrize(
    "change",
    [_retract_every_claim, _drop_a_version, _cut_the_state_short],
    ids=["edited", "versions short of a claim", "state cut short"],
)
async def test_a_snapshot_is_taken_whole_where_the_previous_one_fails_its_checks(
    db: Database, change: Callable[[dict[str, Any]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A previous snapshot edited (its hashes then fail) or rewritten malformed (resealed) is neither
    carried from nor a reason to fail: cuts answer as the log does, and the next snapshot is folded from
    the log, as one folded whole."""
    whole_takes, take_whole = _counting_whole_takes(monkeypatch)
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    expected, answered = await _estimates_via_snapshot(db, change)
    assert answered == expected  # cuts fold from the log too
    async with db.read() as conn:
        first = await eventlog.head_position(conn)
    async with db.write() as conn:  # a later position to take the next snapshot at
        recorder = Recorder(conn, recorded_by="test", label="test")
        await recorder.record(source("later"), origin="command")
        await recorder.finish()
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
    assert head > first
    whole_takes.clear()
    await _take_and_compare(db, SUBJECT, head, take_whole)
    assert whole_takes == [(SUBJECT, head)]


@pytest.mark.parametrize("part", snapshots.PARTS)
async def test_a_snapshot_part_edited_alone_changes_no_answer(db: Database, part: str) -> None:
    """Each stored part is checked against its hash as it is read (the claims by every cut, what they showed
    earlier by ``as_of`` cuts, the stream versions by a cut from the snapshot before): one edited, its hash
    and the digest left as they were, is not used, and every cut answers as the log does."""
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    await projector.catch_up(db, snapshots.Taker(db, every=3), size=4)
    s = schema.time_travel_snapshots
    async with db.write() as conn:
        rows = [
            dict(r)
            for r in (
                await conn.execute(sa.select(s).where(s.c.subject_id == SUBJECT).order_by(s.c.position))
            )
            .mappings()
            .all()
        ]
        assert len(rows) > 2
        for before, original in itertools.pairwise(rows):
            row = dict(original)
            if part == "state":
                _retract_every_claim(row)
            elif part == "earlier":
                # Every claim shown from January: the seed's are all stated in October.
                row["earlier"] = _shown_since_january(row)
            else:
                # Every stream as in the snapshot before: trusted, a cut from that one would read no tail.
                row["versions"] = before["versions"]
            keys = (s.c.subject_id == SUBJECT, s.c.position == row["position"])
            await conn.execute(sa.update(s).where(*keys).values(row))
        head = await eventlog.head_position(conn)
    async with db.read() as conn:
        for position in range(rows[1]["position"], head + 1):
            for valid_until in (None, timetravel.period_end("2024-09"), timetravel.period_end("2024-10")):
                read = await travel.subject_views(conn, SUBJECT, position, valid_until)
                folded = await travel.subject_views(
                    conn, SUBJECT, position, valid_until, from_snapshots=False
                )
                assert _on(read, SUBJECT) == _on(folded, SUBJECT), (position, valid_until)


async def test_a_snapshot_of_another_log_changes_no_answer(db: Database) -> None:
    """A snapshot folded from a different log (its chain hash is not this log's at its position), even
    with a digest consistent with what it holds, is not used."""

    def elsewhere(row: dict[str, Any]) -> None:
        _retract_every_claim(row)
        row["chain_hash"] = "0" * 64
        _reseal(SUBJECT, row)

    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    expected, answered = await _estimates_via_snapshot(db, elsewhere)
    assert answered == expected


async def test_a_snapshot_that_matches_the_log_is_used(db: Database) -> None:
    """The control for the two above: the same edit with the digest recomputed over this log's chain hash
    is trusted (the digest guards against edits and other logs, it is no signature; see store.snapshots)."""

    def consistent(row: dict[str, Any]) -> None:
        _retract_every_claim(row)
        _reseal(SUBJECT, row)

    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    expected, answered = await _estimates_via_snapshot(db, consistent)
    assert expected[1]
    assert not answered[1]


async def test_an_as_of_cut_takes_claims_from_a_snapshot_as_they_stood_then(db: Database) -> None:
    """Before the latest date a claim's events were stated on, an ``as_of`` cut takes that claim as it stood
    at the cut from the snapshot (no stream is read): shown here by an edit of what the snapshot keeps for
    earlier valid times, digest recomputed, which the answer then shows; the answer from the log differs."""
    on = SUBJECTS[0]
    first = claim_made("c1", SOURCES[0], 100, subject_id=on)
    revised = ClaimRevised(
        claim_id="c1",
        revision_id="r1",
        statement="A later figure.",
        stated_on=StatedDate(date="2031-05", precision="month"),
        document_ids=("d",),
        quantity=Quantity(comparator="exactly", value=200, unit="soldiers"),
    )
    await _record(db, [first, revised])
    valid_until = timetravel.period_end("2031-04")
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        expected = _on(await travel.subject_views(conn, on, head, valid_until, from_snapshots=False), on)
        snapshot = await travel.take(conn, on, head)
    assert [r.claim.statement for r in expected[0].values()] == [first.statement]
    async with db.write() as conn:
        await snapshots.keep(conn, on, snapshot)
        s = schema.time_travel_snapshots
        row = dict((await conn.execute(sa.select(s).where(s.c.subject_id == on))).mappings().one())
        row["earlier"] = bytes(row["earlier"]).replace(first.statement.encode(), b"edited")
        _reseal(on, row)
        await conn.execute(sa.update(s).where(s.c.subject_id == on).values(row))
    async with db.read() as conn:
        answered = _on(await travel.subject_views(conn, on, head, valid_until), on)
        at_head = _on(await travel.subject_views(conn, on, head, None), on)
    assert [r.claim.statement for r in answered[0].values()] == ["edited"]
    assert [r.claim.statement for r in at_head[0].values()] == [revised.statement]


async def test_the_projector_keeps_snapshots_that_time_travel_starts_from(db: Database) -> None:
    """Following the log, the projector snapshots a subject after every ``every`` of its events; a cut
    after one starts from one of the latest and answers as a fold of the log does."""
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    await projector.catch_up(db, snapshots.Taker(db, every=3), size=4)
    async with db.read() as conn:
        s = schema.time_travel_snapshots
        kept = await conn.execute(sa.select(s.c.position).where(s.c.subject_id == SUBJECT))
        positions = sorted(kept.scalars())
        assert len(positions) > 1
        for position in range(positions[0], await eventlog.head_position(conn) + 1):
            used = await decoded.latest(conn, SUBJECT, position)
            assert used is not None
            # The latest at or before the cut, decoded already or not (store.decoded.latest).
            assert used.position == max(p for p in positions if p <= position)
            read = await travel.subject_views(conn, SUBJECT, position, None)
            folded = await travel.subject_views(conn, SUBJECT, position, None, from_snapshots=False)
            assert _on(read, SUBJECT) == _on(folded, SUBJECT)


async def test_snapshots_of_a_subject_share_the_claims_that_did_not_change_between_them(db: Database) -> None:
    """Two snapshots of a subject decoded in one process hold one copy of each claim unchanged between them
    (what lets the cache keep every snapshot of a hot subject), and a cut from either answers as the log."""
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    await projector.catch_up(db, snapshots.Taker(db, every=3), size=4)
    async with db.read() as conn:
        s = schema.time_travel_snapshots
        positions = sorted(
            (await conn.execute(sa.select(s.c.position).where(s.c.subject_id == SUBJECT))).scalars()
        )
        earlier = await decoded.latest(conn, SUBJECT, positions[-2])
        later = await decoded.latest(conn, SUBJECT, positions[-1])
        assert earlier is not None
        assert later is not None
        common = earlier.claims.keys() & later.claims.keys()
        same = {c for c in common if earlier.claims[c].version == later.claims[c].version}
        assert same
        assert same != set(later.claims)
        assert all(earlier.claims[c] is later.claims[c] for c in same)
        assert all(earlier.claims[c] is not later.claims[c] for c in set(later.claims) - same)
        for position in positions[-2:]:
            read = await travel.subject_views(conn, SUBJECT, position, None)
            folded = await travel.subject_views(conn, SUBJECT, position, None, from_snapshots=False)
            assert _on(read, SUBJECT) == _on(folded, SUBJECT)
    # Evicted, they let go of every claim they held, and the bytes counted come back to nothing.
    while decoded._decoded:
        decoded._evict()
    assert decoded._pool == {}
    assert decoded._held == 0


def _revised(claim_id: str, value: int) -> ClaimRevised:
    return ClaimRevised(
        claim_id=claim_id,
        revision_id=f"r{value}",
        statement=f"Now {value}.",
        stated_on=StatedDate(date="2031-06", precision="month"),
        document_ids=("d",),
        quantity=Quantity(comparator="exactly", value=value, unit="soldiers"),
    )


async def _kept_snapshot(db: Database, on: str, claims: int) -> tuple[int, snapshots.Snapshot]:
    """Record ``claims`` claims on ``on``, then take and keep its snapshot at the head (and say where)."""
    await _record(db, [claim_made(f"a{i}", SOURCES[i % 3], 100 + i, subject_id=on) for i in range(claims)])
    async with db.read() as conn:
        at = await eventlog.head_position(conn)
        snapshot = await travel.take(conn, on, at)
    async with db.write() as conn:
        await snapshots.keep(conn, on, snapshot)
    return at, snapshot


async def _revise(db: Database, claim_ids: Iterable[str], first_value: int) -> None:
    """Revise each claim's figure, to ``first_value`` and on, in one transaction."""
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="property", label="test")
        for i, claim_id in enumerate(claim_ids):
            await recorder.record(_revised(claim_id, first_value + i), origin="command")
        await recorder.finish()


async def test_cuts_from_a_snapshot_read_what_came_after_it_as_the_log_grows(db: Database) -> None:
    """The events after a snapshot are read once a process and kept with it (``decoded.after``): cuts
    before, at and after what was read, interleaved as a server's would be, and cuts after more events
    were recorded, each answer as a fold of the log alone does."""
    on = SUBJECTS[0]
    snapshot_at, snapshot = await _kept_snapshot(db, on, 6)
    ids = list(snapshot.claims)

    async def both(position: int, valid_until: dt.date | None = None) -> None:
        async with db.read() as conn:
            read = await travel.subject_views(conn, on, position, valid_until)
            folded = await travel.subject_views(conn, on, position, valid_until, from_snapshots=False)
        assert _on(read, on) == _on(folded, on)

    heads = []
    for round_ in range(3):
        # Revisions on the snapshot's streams and a claim made after it, then cuts anywhere since.
        async with db.write() as conn:
            recorder = Recorder(conn, recorded_by="property", label="test")
            await recorder.record(_revised(ids[round_], 500 + round_), origin="command")
            await recorder.record(claim_made(f"b{round_}", SOURCES[0], 7, subject_id=on), origin="command")
            await recorder.finish()
        async with db.read() as conn:
            heads.append(await eventlog.head_position(conn))
        cuts = [heads[-1], snapshot_at + 1, *heads, snapshot_at]
        for position in cuts:
            await both(position)
        await both(heads[-1], timetravel.period_end("2031-05"))
    # A cut past the head (which the API refuses) keeps nothing it did not read: what is recorded next is
    # seen by the cuts after it.
    await both(heads[-1] + 3)
    # Concurrent cuts from the same snapshot, several of them past what was read (each extending it while
    # the others wait on the database), others before it.
    await _revise(db, ids[3:6], 900)
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
    cuts = (head, head - 2, heads[0], head - 1, snapshot_at + 2, heads[-1] + 1)
    await asyncio.gather(*(both(position) for position in cuts))


async def test_cuts_that_extend_a_snapshots_tail_at_once_each_see_every_event(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cuts past what was read after a snapshot, in flight together: the first to ask the log is made
    to wait until the other has extended the kept events, and still answers as the log does (each reads
    from where the kept events stood when it started, not from where another cut has moved them)."""
    on = SUBJECTS[0]
    _, snapshot = await _kept_snapshot(db, on, 4)
    await _revise(db, snapshot.claims, 600)
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        expected = {
            p: _on(await travel.subject_views(conn, on, p, None, from_snapshots=False), on)
            for p in (head, head - 1)
        }
    read_after = queries.logged_after
    waited = asyncio.Event()

    async def first_waits(conn: AsyncConnection, versions: dict[str, int], *, position: int) -> Any:
        if not waited.is_set():
            waited.set()
            await asyncio.sleep(0.2)
        return await read_after(conn, versions, position=position)

    monkeypatch.setattr(queries, "logged_after", first_waits)

    async def cut(position: int) -> Any:
        async with db.read() as conn:
            return _on(await travel.subject_views(conn, on, position, None), on)

    answered = await asyncio.gather(cut(head - 1), cut(head))
    assert answered == [expected[head - 1], expected[head]]


async def test_cuts_decoding_one_snapshot_at_once_keep_one_copy(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cuts that find the same snapshot undecoded at once (each reading it while the others do: here each
    read is made slow) leave one decoded copy in the cache: evicted, it lets go of every claim and every
    byte counted."""
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        snapshot = await travel.take(conn, SUBJECT, head)
    async with db.write() as conn:
        await snapshots.keep(conn, SUBJECT, snapshot)
    while decoded._decoded:
        decoded._evict()
    read_part = snaprows.part

    async def slow_part(*args: Any) -> bytes | None:
        await asyncio.sleep(0.05)
        return await read_part(*args)

    monkeypatch.setattr(snaprows, "part", slow_part)

    async def cut() -> snapshots.Snapshot | None:
        async with db.read() as conn:
            return await decoded.latest(conn, SUBJECT, head)

    found = await asyncio.gather(*(cut() for _ in range(4)))
    assert len(decoded._decoded) == 1
    assert all(f is found[0] for f in found)
    decoded._evict()
    assert decoded._pool == {}
    assert decoded._held == 0


async def _copy_of(url: str, tmp_path: Path) -> str:
    """A copy of a database (closed), byte for byte: a file copy, or a PostgreSQL database from it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        source = Path(str(parsed.database))
        for suffix in ("", "-wal"):
            if os.path.exists(f"{source}{suffix}"):  # noqa: ASYNC240 (a test's setup, nothing waits)
                shutil.copy(f"{source}{suffix}", tmp_path / f"copy.db{suffix}")
        return f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"
    name = f"{parsed.database}_copy"
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{parsed.database}"')
    return parsed.set(database=name).render_as_string(hide_password=False)


async def test_events_kept_after_a_snapshot_are_not_used_on_a_log_that_went_another_way(
    database_url: str, tmp_path: Path
) -> None:
    """Two copies of a database that went different ways after a snapshot (an earlier backup restored, say)
    share it byte for byte, digest and cache key alike; the events one process read after it on one copy are
    not what a cut on the other is given."""
    on = SUBJECTS[0]
    first = Database(database_url)
    _, snapshot = await _kept_snapshot(first, on, 3)
    claim_id = next(iter(snapshot.claims))
    await first.dispose()
    copy_url = await _copy_of(database_url, tmp_path)
    second = Database(copy_url)
    try:
        answers = []
        for db, value in ((first, 501), (second, 777)):
            await _revise(db, [claim_id], value)
            async with db.read() as conn:
                head = await eventlog.head_position(conn)
                read = await travel.subject_views(conn, on, head, None)
                folded = await travel.subject_views(conn, on, head, None, from_snapshots=False)
            assert _on(read, on) == _on(folded, on)
            answers.append(read.claims[claim_id].claim.quantity)
        assert answers[0] != answers[1]
    finally:
        await first.dispose()
        await second.dispose()
        if not copy_url.startswith("sqlite"):
            await _pg_admin(f'DROP DATABASE IF EXISTS "{make_url(copy_url).database}" WITH (FORCE)')


async def test_a_snapshot_is_not_given_another_snapshots_claims_at_the_same_versions(db: Database) -> None:
    """Decoded claims are shared only when stored in the same bytes: a row whose claims differ at the same
    stream versions (here edited, digest recomputed: no signature, see store.snapshots) shows its own, even
    after a snapshot with the log's claims at those versions was decoded."""
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        snapshot = await travel.take(conn, SUBJECT, head)
    async with db.write() as conn:
        await snapshots.keep(conn, SUBJECT, snapshot)
    async with db.read() as conn:
        genuine = await decoded.latest(conn, SUBJECT, head)
    assert genuine is not None
    assert any(f.record.claim.status != "retracted" for f in genuine.claims.values())
    async with db.write() as conn:
        s = schema.time_travel_snapshots
        row = dict((await conn.execute(sa.select(s).where(s.c.subject_id == SUBJECT))).mappings().one())
        _retract_every_claim(row)
        _reseal(SUBJECT, row)
        await conn.execute(sa.update(s).where(s.c.subject_id == SUBJECT).values(row))
    async with db.read() as conn:
        edited = await decoded.latest(conn, SUBJECT, head)
    assert edited is not None
    assert edited.claims.keys() == genuine.claims.keys()
    assert all(f.record.claim.status == "retracted" for f in edited.claims.values())
    assert any(f.record.claim.status != "retracted" for f in genuine.claims.values())


async def test_time_travel_ignores_the_claims_view(
    client: AsyncTestClient,  # type: ignore[type-arg]
    database_url: str,
) -> None:
    """Deleting a row of the claims view used to change a known_at answer; time travel reads the log."""
    url = f"/subjects/{SUBJECT}/estimates"
    before = (await client.get(url, params={"known_at": 29})).json()
    assert any(e["claim_id"] == NIS for e in before["estimates"])
    db = Database(database_url)
    try:
        async with db.write() as conn:
            await conn.execute(sa.delete(schema.claims).where(schema.claims.c.claim_id == NIS))
    finally:
        await db.dispose()
    # The same cut asked in other words (a time, not a position), so no cached answer is reused.
    now = dt.datetime.now(dt.UTC).isoformat()
    assert (await client.get(url, params={"known_at": now})).json() == before


# Keeping few snapshots --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.integers(1, 60), min_size=1, max_size=80))
def test_a_subject_keeps_few_snapshots_and_one_near_every_cut(gaps: list[int]) -> None:
    """Pruned as each is kept, a subject's snapshots stay about ``KEEP`` + 2 log2(span / spacing), and a
    cut ``d`` positions behind the newest starts from one at most ``d`` behind it (or as near as any was
    taken)."""
    taken = list(itertools.accumulate(gaps))
    kept: list[int] = []
    for count, newest in enumerate(taken, 1):
        kept = sorted(snapshots.retained([*kept, newest]))
        assert kept[0] == taken[0]
        assert kept[-snapshots.KEEP :] == taken[max(0, count - snapshots.KEEP) : count]
        spacing = min(gaps[1:count] or [1])
        assert len(kept) <= snapshots.KEEP + 2 * math.log2(max(2, (newest - taken[0]) / spacing)) + 2
        for cut in range(taken[0], newest + 1):
            start = max(at for at in kept if at <= cut)
            before = max(at for at in taken[:count] if at <= cut)
            after = min([at for at in taken[:count] if at > cut] or [newest])
            assert cut - start <= max(newest - cut, after - before)


async def _snapshot_positions(db: Database) -> set[tuple[str, int]]:
    async with db.read() as conn:
        s = schema.time_travel_snapshots
        return {
            (r.subject_id, r.position) for r in await conn.execute(sa.select(s.c.subject_id, s.c.position))
        }


def _busy_subject(claims: int = 40) -> list[DomainEvent]:
    """Claims on one subject stated over 2023-2025, a third of them corrected and a few moved away."""
    said: list[DomainEvent] = []
    for i in range(claims):
        stated = StatedDate(date=f"{2023 + i % 3}-{1 + i * 5 % 12:02}", precision="month")
        said.append(
            msgspec.structs.replace(
                claim_made(f"k{i}", SOURCES[i % 3], 100 * i, subject_id=SUBJECTS[0]), stated_on=stated
            )
        )
        if i >= 2 and i % 3 == 0:
            changes = (
                CorrectedFields(subject_id=MOVED_TO)
                if i % 10 == 0
                else CorrectedFields(stated_on=StatedDate(date=f"{2022 + i % 4}", precision="year"))
            )
            said.append(
                RecordCorrected(
                    claim_id=f"k{i - 2}",
                    correction_id=f"r{i}",
                    corrects_version=1,
                    changes=changes,
                    reason="x",
                )
            )
    return said


@pytest.mark.parametrize("as_of", [None, "2024-10"])
async def test_after_many_snapshots_a_subject_keeps_few_and_every_cut_answers_as_the_log(
    db: Database, as_of: str | None
) -> None:
    """A snapshot after each of a subject's events: the table keeps a few of them, and at every position
    time travel still shows what folding the whole log shows."""
    await _record(db, _busy_subject())
    await projector.catch_up(db, snapshots.Taker(db, every=1), size=1)
    valid_until = None if as_of is None else timetravel.period_end(as_of)
    async with db.read() as conn:
        log = await _whole_log(conn)
        streams = set(await queries.claim_streams_of_subject(conn, SUBJECTS[0], len(log)))
        taken = len({e.position for e in log if e.stream_id in streams})
        kept = [at for subject_id, at in await _snapshot_positions(db) if subject_id == SUBJECTS[0]]
        assert taken > 3 * len(kept)
        assert len(kept) <= snapshots.KEEP + 2 * math.log2(len(log)) + 2
        for position in range(len(log) + 1):
            whole = timetravel.views_at([e for e in log if e.position <= position], valid_until)
            for subject_id in (SUBJECTS[0], MOVED_TO):
                read = await travel.subject_views(conn, subject_id, position, valid_until)
                assert _on(read, subject_id) == _on(whole, subject_id)


async def _ran_on(db: Database, said: list[DomainEvent] | None = None) -> list[tuple[str, int]]:
    # The snapshots a taker that runs on without a stop takes (batches of 3, every 7 events), and the taker
    # projection reset, so the tests' takers count the same log again.
    await _record(db, said or _busy_subject())
    await projector.catch_up(db, snapshots.Taker(db, every=7), size=3)
    ran_on = await _snapshot_positions(db)
    async with db.write() as conn:
        await projector.reset(conn, snapshots.Taker(db, every=7))
    return ran_on


async def _restarted_after_each(
    db: Database,
    step: int,
    between: Callable[[], Awaitable[None]] | None = None,
    said: list[DomainEvent] | None = None,
) -> None:
    # The snapshots a taker that ran on takes, and after every ``step`` batches (of 3, every 7 events) those
    # a taker stopped there and another started (after ``between``) take; asserts they are the same.
    ran_on = await _ran_on(db, said)
    async with db.read() as conn:
        batches = await eventlog.head_position(conn) // 3
    for stop in range(1, batches, step):  # batches before the restart
        first = snapshots.Taker(db, every=7)
        async with db.write() as conn:
            await projector.reset(conn, first)
        for _ in range(stop):
            await projector.run_batch(db, first, size=3)
        if between is not None:
            await between()
        await projector.catch_up(db, snapshots.Taker(db, every=7), size=3)
        assert await _snapshot_positions(db) == ran_on, stop


async def test_a_restarted_taker_snapshots_where_one_that_ran_on_does(db: Database) -> None:
    """The count since a subject's last snapshot is written with each batch and read back by a new process,
    so a restart neither puts a snapshot off nor takes one early."""
    await _restarted_after_each(db, 2)


async def test_counts_filled_by_the_migration_snapshot_where_a_taker_that_ran_on_does(db: Database) -> None:
    """A log a taker processed before the counts were kept (migration 0018) gets them from the log up to
    the taker's checkpoint: the taker after the upgrade snapshots where one that ran on does."""

    async def upgraded() -> None:
        await migrate.downgrade(db, "0017_projection_failure")
        await migrate.upgrade(db)

    # Ten more claims moved onto MOVED_TO, whose snapshots then come due on the corrections alone.
    moved = [
        RecordCorrected(
            claim_id=f"k{i}",
            correction_id=f"m{i}",
            corrects_version=1,
            changes=CorrectedFields(subject_id=MOVED_TO),
            reason="x",
        )
        for i in (0, 2, 3, 5, 6, 8, 9, 11, 12, 14)
    ]
    await _restarted_after_each(db, 1, upgraded, _busy_subject() + moved)


async def test_a_taker_that_leads_again_reads_what_another_committed_meanwhile(db: Database) -> None:
    """Two processes taking turns at the lead (two batches each) snapshot where one that ran alone does: one
    that leads again starts from the counts the other committed, not from what it remembered."""
    ran_on = await _ran_on(db)
    takers = (snapshots.Taker(db, every=7), snapshots.Taker(db, every=7))
    turn = 0
    while await projector.run_batch(db, takers[turn // 2 % 2], size=3):
        turn += 1
    assert await _snapshot_positions(db) == ran_on


@pytest.mark.parametrize("goes_on", ["the same taker", "a new taker"])
async def test_snapshots_due_when_taking_one_failed_are_taken_after_the_next_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch, goes_on: str
) -> None:
    """A snapshot whose folding failed (after its batch committed) is taken after the next batch, by the
    same process or by the next to lead: the same snapshots as a taker that never failed."""
    ran_on = await _ran_on(db)
    taker = snapshots.Taker(db, every=7)
    real = travel.take
    failed: list[int] = []

    async def failing_once(conn: AsyncConnection, subject_id: str, position: int) -> snapshots.Snapshot:
        if not failed:
            failed.append(position)
            raise OSError("no space left on device")
        return await real(conn, subject_id, position)

    monkeypatch.setattr(travel, "take", failing_once)

    async def until_it_fails() -> None:
        while await projector.run_batch(db, taker, size=3):
            pass

    with pytest.raises(OSError, match="no space left"):
        await until_it_fails()
    assert failed[0] not in {at for _, at in await _snapshot_positions(db)}
    if goes_on == "a new taker":
        taker = snapshots.Taker(db, every=7)
    await projector.catch_up(db, taker, size=3)
    assert await _snapshot_positions(db) == ran_on


async def _apply_without_taking(db: Database, taker: snapshots.Taker, size: int) -> None:
    # A batch as ``projector.run_batch`` applies it, without the snapshots taken after its commit: what a
    # process that stopped between the two leaves behind.
    async with db.serial() as conn:
        after = await projector.checkpoint(conn, taker.name, lock=True)
        batch = await eventlog.read_all(conn, after=after, limit=size)
        await taker.apply(conn, batch)
        await projector.save_checkpoint(conn, taker.name, batch[-1].position)


async def test_a_snapshot_due_when_the_taker_stopped_is_taken_by_the_next(db: Database) -> None:
    """A snapshot that came due in a committed batch, in a process that stopped before storing it, is
    taken by the next process at the position it came due at: the same snapshots as one that ran on."""
    ran_on = await _ran_on(db)
    first = snapshots.Taker(db, every=7)
    while not first.due:
        await _apply_without_taking(db, first, 3)
    assert set(await _snapshot_positions(db)) < set(ran_on)
    await projector.catch_up(db, snapshots.Taker(db, every=7), size=3)
    assert await _snapshot_positions(db) == ran_on


async def test_rebuild_takes_the_snapshots_afresh(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a change of the fold's format every snapshot is ignored; a rebuild takes them again."""
    monkeypatch.setattr(snapshots, "EVERY", 5)
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    await projector.catch_up(db, snapshots.Taker(db))
    expected = await _snapshot_positions(db)
    async with db.write() as conn:
        head = await eventlog.head_position(conn)
        await conn.execute(sa.update(schema.time_travel_snapshots).values(format=snapshots.FORMAT - 1))
    async with db.read() as conn:
        assert await decoded.latest(conn, SUBJECT, head) is None
    await maintenance.rebuild_all(db)
    assert await _snapshot_positions(db) == expected
    async with db.read() as conn:
        assert await decoded.latest(conn, SUBJECT, head) is not None
        read = await travel.subject_views(conn, SUBJECT, head, None)
        folded = await travel.subject_views(conn, SUBJECT, head, None, from_snapshots=False)
        assert _on(read, SUBJECT) == _on(folded, SUBJECT)
