"""Views kept up to date as events are appended equal views rebuilt from the log (property test)."""

from __future__ import annotations

import uuid

import msgspec
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.app.errors import Rejected
from timeline.domain.errors import DomainError
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DenialWithdrawn,
    DomainEvent,
    EvidenceAttached,
    Quantity,
    RecordCorrected,
    SourceAmended,
    StatedDate,
    StatementMade,
    SubjectAmended,
    decode_event,
    encode_event,
)
from timeline.domain.values import period_start
from timeline.projections import NO_FIGURE, Views, apply, latest_in
from timeline.ranking import SLOTS, estimate_rank, slot_of
from timeline.service import Recorder
from timeline.store import eventlog, queries, refold, views
from timeline.store.database import Database
from timeline.store.schema import checkpoints, claims, estimates, registrations, timeline

from .helpers import claim_made, document, source, subject
from .strategies import (
    SEVERAL_SUBJECTS,
    SOURCES,
    SUBJECTS,
    amendments,
    commands,
    corrections,
    made,
    made_on_any_subject,
    moving_corrections,
    retractions,
    wide_commands,
)


async def _rows(conn: AsyncConnection) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table in (claims, estimates, timeline, registrations):
        rows = await conn.execute(sa.select(table).order_by(*table.primary_key.columns))
        out[table.name] = [tuple(r) for r in rows]
    # When a checkpoint was written differs between runs; where it points must not.
    rows = await conn.execute(
        sa.select(checkpoints.c.name, checkpoints.c.position).order_by(checkpoints.c.name)
    )
    out[checkpoints.name] = [tuple(r) for r in rows]
    return out


async def _snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    async with db.read() as conn:
        return await _rows(conn)


class _Undo(Exception):
    """Raised to roll a transaction back after looking at what it did."""


async def _rebuilt(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """The views as ``timeline rebuild``'s fold makes them from the log, without keeping them."""
    try:
        async with db.write() as conn:
            await refold.rebuild(conn, batch=7)  # several batches even on a short log
            rebuilt = await _rows(conn)
            raise _Undo
    except _Undo:
        return rebuilt


async def _record(db: Database, batch: list[DomainEvent]) -> None:
    """Record a batch in one transaction, skipping commands the rules refuse (as a client would)."""
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="property", label="test")
        for event in batch:
            try:
                await recorder.record(event, origin="command")
            except Rejected:
                continue
        await recorder.finish()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    opening=st.lists(made(), min_size=3, max_size=8),
    batches=st.lists(
        st.one_of(commands, st.lists(corrections | retractions, max_size=4)), min_size=1, max_size=4
    ),
)
async def test_incremental_views_equal_a_rebuild(
    db: Database, opening: list[DomainEvent], batches: list[list[DomainEvent]]
) -> None:
    # The database keeps what earlier examples recorded: the invariant must hold for any log prefix.
    # Fresh claim ids per example, so each example makes new claims rather than colliding with old ones.
    prefix = uuid.uuid4().hex[:8]
    await _record(db, [subject(s) for s in SUBJECTS] + [source(s) for s in SOURCES] + [document("d")])
    for batch in [opening, *batches]:
        await _record(db, [_prefixed(e, prefix) for e in batch])
    incremental = await _snapshot(db)
    await refold.rebuild_online(db, batch=7)  # what `timeline rebuild` runs, in several batches
    rebuilt = await _snapshot(db)
    assert rebuilt == incremental


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    opening=st.lists(made_on_any_subject(), min_size=3, max_size=8),
    batches=st.lists(
        st.one_of(wide_commands, st.lists(moving_corrections | amendments, max_size=4)), max_size=5
    ),
)
async def test_rebuild_equals_incremental_after_every_commit_with_subjects_moved_and_amended(
    db: Database, opening: list[DomainEvent], batches: list[list[DomainEvent]]
) -> None:
    # Several subjects, claims moved between them by corrections, subjects and sources amended: after every
    # committed batch, the views kept up to date equal the views refolded from the log by the rebuild.
    prefix = uuid.uuid4().hex[:8]
    await _record(db, [subject(s) for s in SEVERAL_SUBJECTS] + [source(s) for s in SOURCES] + [document("d")])
    for batch in [opening, *batches]:
        await _record(db, [_prefixed(e, prefix) for e in batch])
        assert await _rebuilt(db) == await _snapshot(db)


def _prefixed(event: DomainEvent, prefix: str) -> DomainEvent:
    if isinstance(event, SubjectAmended | SourceAmended):
        return event
    if isinstance(event, StatementMade):
        return msgspec.structs.replace(event, statement_id=f"{prefix}-{event.statement_id}")
    return msgspec.structs.replace(event, claim_id=f"{prefix}-{event.claim_id}")  # type: ignore[type-var,call-arg]


@settings(max_examples=60, deadline=None)
@given(batch=commands)
def test_replay_of_stored_bytes_is_deterministic_and_estimates_are_the_latest(
    batch: list[DomainEvent],
) -> None:
    """Folding the events as decoded from their stored JSON gives the views folded from the originals,
    and each estimate is the source's most recently stated, unretracted figure (pure, no database)."""
    from timeline.domain import claims, rules

    # Keep only events the rules accept, as the recorder would.
    states: dict[str, claims.Claim | None] = {}
    valid: list[DomainEvent] = []
    said: list[StatementMade] = []
    for event in batch:
        if isinstance(event, StatementMade):
            try:
                spoken = rules.decide_statement(subject(event.subject_id), tuple(said), event)
            except DomainError:
                continue
            said.extend(e for e in spoken if isinstance(e, StatementMade))
            valid.extend(spoken)
            continue
        current = states.get(event.claim_id)  # type: ignore[union-attr]
        decide = {
            ClaimMade: rules.decide_make,
            ClaimRevised: rules.decide_revise,
            ClaimDenied: rules.decide_deny,
            ClaimRetracted: rules.decide_retract,
            ClaimConfirmed: rules.decide_confirm,
            EvidenceAttached: rules.decide_attach,
            RecordCorrected: rules.decide_correct,
            DenialWithdrawn: rules.decide_withdraw_denial,
        }[type(event)]
        try:
            accepted = decide(current, event)  # type: ignore[arg-type]
        except DomainError:  # refused by a rule, as the recorder would; anything else is a bug
            continue
        for e in accepted:
            states[e.claim_id] = claims.evolve(current, e)  # type: ignore[union-attr,arg-type]
            valid.append(e)
    whole, replayed = Views(), Views()
    for position, e in enumerate(valid, 1):
        apply(whole, position, e)
        apply(replayed, position, decode_event(encode_event(e)))
    assert replayed == whole
    for key, chosen in whole.estimates.items():
        pool = [
            r for r in whole.claims.values() if (r.claim.subject_id, r.claim.metric, r.claim.source_id) == key
        ]
        for slot, held in zip(SLOTS, chosen, strict=True):
            best = latest_in(pool, slot)
            assert held == (best.claim.claim_id if best else None)
            if best is None:
                continue
            assert slot_of(best.claim) == slot, "a projection displaced an assertion, or the reverse"
            later = [
                r
                for r in pool
                if r.claim.status != "retracted"
                and r.claim.quantity is not None
                and slot_of(r.claim) == slot
                and period_start(r.claim.stated_on) > period_start(best.claim.stated_on)
            ]
            assert later == [], "a more recently stated figure was passed over"
            assert estimate_rank(best.claim) == max(
                estimate_rank(r.claim)
                for r in pool
                if r.claim.status != "retracted" and r.claim.quantity is not None and slot_of(r.claim) == slot
            )


async def test_rebuild_of_the_seed_matches_and_reports_count(db: Database) -> None:
    from timeline.app.imports import LoadedFixture, import_fixtures

    from .conftest import SEED

    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    before = await _snapshot(db)
    async with db.write() as conn:
        replayed = await refold.rebuild(conn)
        head = await eventlog.head_position(conn)
    assert replayed == head == 29
    assert await _snapshot(db) == before


async def test_a_rebuild_whose_reads_split_a_claims_stream_folds_the_claim_whole(db: Database) -> None:
    # The rebuild reads the log stream by stream, a few events a read: a claim whose events span several
    # reads (down to one event a read) must be folded once, whole, and its estimate ranked on that state.
    await _record(db, [subject("s"), source("a"), source("b"), document("d")])
    await _record(db, [claim_made("long", "a", 100), claim_made("other", "b", 7)])
    for day, value in enumerate((200, 300, 400, 500), start=2):
        revised = ClaimRevised(
            claim_id="long",
            revision_id=f"r{value}",
            quantity=Quantity(comparator="exactly", value=value, unit="soldiers"),
            statement=f"Now {value}.",
            stated_on=StatedDate(date=f"2024-11-0{day}", precision="day"),
            document_ids=("d",),
        )
        await _record(db, [revised])
    await _record(db, [claim_made("later", "a", 50)])
    before = await _snapshot(db)
    assert len(before["timeline"]) == 7
    for batch in (1, 2, 3, 100):
        async with db.write() as conn:
            await conn.execute(sa.delete(claims))
            await conn.execute(sa.delete(estimates))
            await conn.execute(sa.delete(timeline))
        assert await _snapshot(db) != before
        assert await refold.rebuild_online(db, batch=batch) == 11
        assert await _snapshot(db) == before, batch


async def test_a_rebuild_repairs_rows_lost_changed_or_left_over(db: Database) -> None:
    # The rebuild writes only the rows that differ from the log's fold: each kind of damage must be found.
    from timeline.app.imports import LoadedFixture, import_fixtures

    from .conftest import SEED

    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    before = await _snapshot(db)
    async with db.write() as conn:
        first = await conn.execute(sa.select(sa.func.min(timeline.c.position)))
        await conn.execute(sa.delete(timeline).where(timeline.c.position == first.scalar_one()))
        await conn.execute(sa.update(claims).values(status="retracted", state="{}"))
        await conn.execute(sa.delete(estimates))
        await conn.execute(
            sa.insert(estimates).values(
                subject_id="s", metric="m", source_id="nobody", asserted_claim_id="gone"
            )
        )
        await conn.execute(sa.update(registrations).values(kind="subject", position=0))
    assert await _snapshot(db) != before
    assert await refold.rebuild_online(db, batch=7) == 29
    assert await _snapshot(db) == before


async def test_retracting_the_chosen_estimate_falls_back_to_the_sources_previous_figure(db: Database) -> None:
    from timeline.domain.events import ClaimMade, ClaimRetracted, Quantity, StatedDate
    from timeline.store import queries

    def figure(claim_id: str, value: int, day: str) -> ClaimMade:
        return ClaimMade(
            claim_id=claim_id, subject_id="s1", source_id="a", statement="said", modality="asserted",
            stated_on=StatedDate(date=day, precision="day"), document_ids=("d",), metric="m1",
            quantity=Quantity(comparator="exactly", value=value, unit="soldiers"),
        )  # fmt: skip

    await _record(db, [subject("s1"), source("a"), document("d")])
    await _record(db, [figure("old", 1000, "2024-10-01")])
    await _record(db, [figure("new", 2000, "2024-10-20")])
    async with db.read() as conn:
        assert [e.headline.claim.claim_id for e in await queries.estimates_for(conn, "s1", "m1")] == ["new"]
    on = StatedDate(date="2024-10-21", precision="day")
    withdrawn = ClaimRetracted(
        claim_id="new", retraction_id="r", statement="no", stated_on=on, document_ids=("d",)
    )
    await _record(db, [withdrawn])
    async with db.read() as conn:
        assert [e.headline.claim.claim_id for e in await queries.estimates_for(conn, "s1", "m1")] == ["old"]


async def test_a_wrong_guess_of_the_claims_loads_the_same_rows(db: Database) -> None:
    # load_for reads every claim row in one query when the writer's fold is right; when it is not (a claim
    # guessed absent, or under another key), it must still load every row the fold needs.
    await _record(db, [subject("s"), source("a"), source("b"), document("d")])
    await _record(db, [claim_made(f"g{i}", "a", i) for i in range(3)] + [claim_made("h", "b", 5)])
    retract = ClaimRetracted(
        claim_id="g2",
        retraction_id="r",
        statement="Withdrawn.",
        stated_on=StatedDate(date="2024-05-01", precision="day"),
        document_ids=("d",),
    )
    batch = [retract, claim_made("n", "b", 6)]  # every claim under one key, the chosen one under another
    async with db.read() as conn:
        right = await views.load_for(conn, batch)
        state = right.claims["g2"].claim
        guessed = await views.load_for(conn, batch, before={"g2": state, "n": None})
        elsewhere = msgspec.structs.replace(state, subject_id="elsewhere")
        mistaken = await views.load_for(conn, batch, before={"g2": elsewhere, "n": None})
        absent = await views.load_for(conn, batch, before={"g2": None, "n": None})
    assert set(right.claims) == {"g0", "g1", "g2", "h"}
    assert right.estimates[("s", "soldiers", "b")] == ("h", None)
    assert guessed.claims == mistaken.claims == absent.claims == right.claims
    folded = []
    for loaded in (right, guessed, mistaken, absent):
        for position, event in enumerate(batch, 100):
            apply(loaded, position, event)
        folded.append({key: loaded.estimates[key] for key in loaded.changed_estimates})
    # Whether a key's chosen claims were read or all its claims, the fold chooses the same figures.
    assert folded[0] == {("s", "soldiers", "a"): ("g1", None), ("s", "soldiers", "b"): ("n", None)}
    assert folded[1:] == [folded[0]] * 3


async def test_views_read_and_delete_more_rows_than_a_statement_takes_parameters(db: Database) -> None:
    # One import of a big fixture touches tens of thousands of claims at once; both drivers refuse a
    # statement of more than 32,767 parameters, so the views read and delete them a thousand at a time.
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        await recorder.record_all(
            [
                subject(),
                source("a"),
                source("b"),
                document(),
                claim_made("c1", "a", 1),
                claim_made("c2", "b", 2),
            ],
            origin="",
        )
        await recorder.finish()
    known = {("s", "soldiers", "a"), ("s", "soldiers", "b")}
    ids = {f"missing-{i}" for i in range(40_000)} | {"c1", "c2"}
    full = {("s", "soldiers", f"other-{i}") for i in range(12_000)} | {("s", "soldiers", "a")}
    light = {("s", "soldiers", f"more-{i}") for i in range(12_000)} | {("s", "soldiers", "b")}
    async with db.write() as conn:
        # So do the reads a whole subject's export makes.
        assert set(await queries.claims_among(conn, ids)) == {"c1", "c2"}
        registered = await queries.registrations_among(conn, {f"source-{i}" for i in ids} | {"source-a"})
        assert set(registered) == {"source-a"}
        loaded = Views()
        await views._load_claims(conn, loaded, ids, full, light)
        assert set(loaded.claims) == {"c1", "c2"}
        # The chosen claim, found past 12,000 keys.
        assert loaded.estimates[("s", "soldiers", "b")] == ("c2", None)
        assert sum(1 for chosen in loaded.estimates.values() if chosen == NO_FIGURE) == 12_000
        # Saving deletes every estimate gone and every timeline entry gone, however many.
        loaded.estimates.update(dict.fromkeys(known | full | light, NO_FIGURE))
        loaded.changed_estimates.update(known | full | light)
        loaded.timeline.update(dict.fromkeys(range(1, 40_001)))
        loaded.position = await views.checkpoint(conn)
        await views.save(conn, loaded)
        assert (await conn.execute(sa.select(sa.func.count()).select_from(estimates))).scalar_one() == 0
        assert (await conn.execute(sa.select(sa.func.count()).select_from(timeline))).scalar_one() == 0
