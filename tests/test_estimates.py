"""Estimates that cannot be reordered: per source and metric, the latest asserted figure and, apart, the
latest projection, ranked by a rule that never looks at the order events were recorded or imported in."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings

from timeline.app.errors import Rejected
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain import claims, rules
from timeline.domain.errors import DomainError, InvalidValue
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DomainEvent,
    Modality,
    Quantity,
    StatedDate,
)
from timeline.projections import NO_FIGURE, Views, apply
from timeline.service import Recorder
from timeline.store import queries, refold
from timeline.store.database import Database
from timeline.store.schema import estimates

from .helpers import document, source, subject
from .strategies import interleave, interleavings

OCT_21 = StatedDate(date="2024-10-21", precision="day")
OCTOBER = StatedDate(date="2024-10", precision="month")
OCT_1 = StatedDate(date="2024-10-01", precision="day")
KEY = ("s", "soldiers", "a")


def figure(
    claim_id: str,
    value: int,
    *,
    on: StatedDate = OCT_21,
    modality: Modality = "asserted",
    source_id: str = "a",
    horizon: StatedDate | None = None,
) -> ClaimMade:
    return ClaimMade(
        claim_id=claim_id, subject_id="s", source_id=source_id, statement=f"{value}", modality=modality,
        stated_on=on, document_ids=("d",), metric="soldiers",
        quantity=Quantity(comparator="about", value=value, unit="soldiers", horizon=horizon),
    )  # fmt: skip


def fold(events: list[DomainEvent]) -> Views:
    """The views after applying the events in this order (checked by the rules first)."""
    out = Views()
    states: dict[str, claims.Claim] = {}
    for position, event in enumerate(events, 1):
        assert isinstance(event, ClaimMade | ClaimRevised | ClaimDenied | ClaimRetracted | ClaimConfirmed)
        states[event.claim_id] = claims.evolve(states.get(event.claim_id), event)
        apply(out, position, event)
    return out


def chosen_both_ways(events: list[DomainEvent]) -> tuple[str | None, str | None]:
    """The (asserted, projected) claims chosen under KEY, the same whichever order the events came in."""
    forward, backward = fold(events).estimates[KEY], fold(list(reversed(events))).estimates[KEY]
    assert forward == backward, "the estimate depends on the order the events were recorded in"
    return forward


# The tie rule -----------------------------------------------------------------------------------------------


def test_a_projection_never_displaces_an_assertion_made_the_same_day() -> None:
    sent = figure("sent", 2000)
    expected = figure(
        "expected", 8000, modality="projected", horizon=StatedDate(date="2024", precision="year")
    )
    assert chosen_both_ways([sent, expected]) == ("sent", "expected")


def test_a_later_denial_or_confirmation_of_either_figure_flips_nothing() -> None:
    sent, expected = figure("sent", 2000), figure("expected", 8000, modality="projected")
    denial = ClaimDenied(
        claim_id="sent", denial_id="no", denied_by="b", statement="No.", stated_on=OCT_21, document_ids=("d",)
    )
    confirmation = ClaimConfirmed(
        claim_id="expected", confirmation_id="yes", confirmed_by="b", statement="Yes.",
        stated_on=OCT_21, document_ids=("d",),
    )  # fmt: skip
    assert fold([sent, expected, denial, confirmation]).estimates[KEY] == ("sent", "expected")
    assert fold([expected, sent, confirmation, denial]).estimates[KEY] == ("sent", "expected")


def test_on_the_same_first_day_a_finer_date_wins() -> None:
    # "2024-10" and "2024-10-01" start on the same day; the day is the more precise statement.
    assert chosen_both_ways([figure("month", 1, on=OCTOBER), figure("day", 2, on=OCT_1)]) == ("day", None)
    # A later day beats the month whatever the precision.
    later = figure("later", 2, on=OCT_21)
    assert chosen_both_ways([figure("month", 1, on=OCTOBER), later]) == ("later", None)


def test_on_the_same_date_an_assertion_beats_an_allegation_then_the_last_claim_id_wins() -> None:
    assert chosen_both_ways([figure("z-alleged", 1, modality="alleged"), figure("a-asserted", 2)]) == (
        "a-asserted",
        None,
    )
    assert chosen_both_ways([figure("x", 1), figure("y", 2)]) == ("y", None)


def test_retracting_the_chosen_assertion_falls_back_and_leaves_the_projection() -> None:
    old, new = figure("old", 1000, on=OCT_1), figure("new", 2000)
    projected = figure("projected", 9000, modality="projected")
    retracted = ClaimRetracted(
        claim_id="new", retraction_id="r", statement="Withdrawn.", stated_on=OCT_21, document_ids=("d",)
    )
    assert fold([old, new, projected, retracted]).estimates[KEY] == ("old", "projected")
    assert fold([projected, new, old, retracted]).estimates[KEY] == ("old", "projected")


def test_a_revision_that_makes_an_assertion_a_projection_moves_it_across() -> None:
    sent = figure("sent", 2000)
    projection = ClaimRevised(
        claim_id="sent", revision_id="r", statement="Up to 8,000 by December.", stated_on=OCT_21,
        document_ids=("d",), modality="projected",
        quantity=Quantity(comparator="up_to", upper=8000, unit="soldiers", horizon=OCTOBER),
    )  # fmt: skip
    views_after = fold([figure("earlier", 1000, on=OCT_1), sent, projection])
    assert views_after.estimates[KEY] == ("earlier", "sent")
    assert fold([sent, projection]).estimates[KEY] == (None, "sent")


def test_a_horizon_belongs_to_a_projection_only() -> None:
    with pytest.raises(InvalidValue, match="only a projected figure has a horizon") as caught:
        rules.decide_make(None, figure("sent", 2000, horizon=OCTOBER))
    assert caught.value.field == "quantity.horizon"
    made = figure("expected", 8000, modality="projected", horizon=OCTOBER)
    assert rules.decide_make(None, made) == [made]
    back_to_asserted = ClaimRevised(
        claim_id="expected", revision_id="r", statement="Now a fact.", stated_on=OCT_21, document_ids=("d",),
        modality="asserted",
    )  # fmt: skip
    with pytest.raises(InvalidValue) as caught:
        rules.decide_revise(claims.evolve(None, made), back_to_asserted)
    assert caught.value.field == "modality"


def test_more_than_and_less_than_take_one_bound() -> None:
    from timeline.domain.values import check_quantity

    check_quantity(Quantity(comparator="more_than", lower=1000, unit="soldiers"))
    check_quantity(Quantity(comparator="less_than", upper=500, unit="engineers"))
    with pytest.raises(InvalidValue, match="'more_than' needs 'lower'"):
        check_quantity(Quantity(comparator="more_than", value=1000, unit="soldiers"))


# Any order of recording or importing gives the same estimates -----------------------------------------------

Streams = list[list[Any]]
_DECIDE: dict[type, Any] = {
    ClaimMade: rules.decide_make,
    ClaimRevised: rules.decide_revise,
    ClaimDenied: rules.decide_deny,
    ClaimRetracted: rules.decide_retract,
}


@settings(max_examples=200, deadline=None)
@given(drawn=interleavings())
def test_the_fold_gives_the_same_estimates_in_any_interleaving(
    drawn: tuple[Streams, list[int], list[int]],
) -> None:
    streams, first, second = drawn
    assert _accepted_fold(interleave(streams, first)) == _accepted_fold(interleave(streams, second))


def _accepted_fold(events: list[Any]) -> dict[Any, Any]:
    """Estimates after the events the rules accept, in this order (what the recorder would keep)."""
    out, states = Views(), {}
    for position, event in enumerate(events, 1):
        try:
            _DECIDE[type(event)](states.get(event.claim_id), event)
        except DomainError:
            continue
        states[event.claim_id] = claims.evolve(states.get(event.claim_id), event)
        apply(out, position, event)
    return {k: v for k, v in out.estimates.items() if v != NO_FIGURE}


async def _record(db: Database, events: list[DomainEvent]) -> None:
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="property", label="test")
        for event in events:
            try:
                await recorder.record(event, origin="command")
            except Rejected:
                continue
        await recorder.finish()


def _renamed(event: Any, prefix: str, subject_id: str) -> Any:
    # The same prefix on every claim of an order keeps the claim ids in the same order (the last tie-break).
    changes: dict[str, Any] = {"claim_id": f"{prefix}{event.claim_id}"}
    if isinstance(event, ClaimMade):
        changes["subject_id"] = subject_id
    return msgspec.structs.replace(event, **changes)


async def _estimates(db: Database, subject_id: str, prefix: str) -> list[tuple[str, str | None, str | None]]:
    """(source, asserted claim, projected claim) per source, claim ids without the order's prefix."""
    async with db.read() as conn:
        found = await queries.estimates_for(conn, subject_id, "m1")

    def bare(record: Any) -> str | None:
        return None if record is None else str(record.claim.claim_id).removeprefix(prefix)

    return [(e.headline.claim.source_id, bare(e.asserted), bare(e.projected)) for e in found]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=interleavings())
async def test_recording_in_any_order_gives_the_same_estimates_live_and_rebuilt(
    db: Database, drawn: tuple[Streams, list[int], list[int]]
) -> None:
    streams, first, second = drawn
    run = uuid.uuid4().hex[:8]
    await _record(db, [source(s) for s in ("a", "b", "c")] + [document("d")])
    shown = []
    for order, owners in (("a", first), ("b", second)):
        subject_id, prefix = f"s-{run}-{order}", f"{run}-{order}-"
        await _record(db, [subject(subject_id)])
        # One event a transaction, as separate writers would record them.
        for event in interleave(streams, owners):
            await _record(db, [_renamed(event, prefix, subject_id)])
        shown.append(await _estimates(db, subject_id, prefix))
    assert shown[0] == shown[1]
    expected = _accepted_fold(interleave(streams, first))
    assert shown[0] == [(k[2], *v) for k, v in sorted(expected.items())]
    async with db.read() as conn:
        live = sorted(tuple(r) for r in await conn.execute(sa.select(estimates)))
    await refold.rebuild_online(db, batch=3)
    async with db.read() as conn:
        assert sorted(tuple(r) for r in await conn.execute(sa.select(estimates))) == live


def _fixture(streams: Streams, owners: list[int], subject_id: str, prefix: str) -> bytes:
    """A fixture holding the streams' events as entries, in the order ``owners`` interleaves them."""
    entries: list[dict[str, Any]] = []
    for event in interleave(streams, owners):
        claim_id, on = f"{prefix}{event.claim_id}", event.stated_on.date
        if isinstance(event, ClaimMade):
            entries.append(
                {"type": "claim", "id": claim_id, "subject": subject_id, "source": event.source_id,
                 "statement": event.statement, "modality": event.modality, "stated_on": on,
                 "metric": event.metric, "quantity": _quantity(event.quantity)}
            )  # fmt: skip
        elif isinstance(event, ClaimRevised):
            revised: dict[str, Any] = {"quantity": _quantity(event.quantity)} if event.quantity else {}
            if event.modality is not None:
                revised["modality"] = event.modality
            entries.append(
                {"type": "revision", "id": f"{prefix}{event.revision_id}", "claim": claim_id, "stated_on": on,
                 "statement": event.statement, **revised}
            )  # fmt: skip
        elif isinstance(event, ClaimDenied):
            entries.append(
                {"type": "denial", "id": f"{prefix}{event.denial_id}", "source": event.denied_by,
                 "claims": [claim_id], "statement": event.statement, "stated_on": on}
            )  # fmt: skip
        else:
            entries.append(
                {"type": "retraction", "id": f"{prefix}{event.retraction_id}", "claim": claim_id,
                 "statement": event.statement, "stated_on": on}
            )  # fmt: skip
    fixture = {
        "document": {"id": f"{prefix}doc", "title": "Invented", "published_on": "2024-10-21"},
        "subjects": [{"id": subject_id, "name": subject_id}],
        "sources": [{"id": s, "name": f"Source {s}", "kind": "agency"} for s in ("a", "b", "c")],
        "events": entries,
    }
    return json.dumps(fixture).encode()  # JSON is YAML


def _quantity(q: Quantity) -> dict[str, Any]:
    written = msgspec.to_builtins(q)
    if q.horizon is not None:
        written["horizon"] = q.horizon.date
    return dict(written)


def _importable(streams: Streams) -> bool:
    """Whether every event of the streams is accepted (an import refuses all of it otherwise)."""
    states: dict[str, claims.Claim] = {}
    for stream in streams:
        for event in stream:
            try:
                _DECIDE[type(event)](states.get(event.claim_id), event)
            except DomainError:
                return False
            states[event.claim_id] = claims.evolve(states.get(event.claim_id), event)
    return True


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=interleavings())
async def test_importing_the_entries_in_any_order_gives_the_same_estimates(
    db: Database, drawn: tuple[Streams, list[int], list[int]]
) -> None:
    streams, first, second = drawn
    assume(_importable(streams))  # a fixture with a refused entry imports nothing, in any order
    run = uuid.uuid4().hex[:8]
    shown = []
    for order, owners in (("a", first), ("b", second)):
        subject_id, prefix = f"s-{run}-{order}", f"{run}-{order}-"
        text = _fixture(streams, owners, subject_id, prefix)
        await import_fixtures(db, [LoadedFixture(f"{order}.yaml", text)], recorded_by="test")
        shown.append(await _estimates(db, subject_id, prefix))
    assert shown[0] == shown[1]
    assert shown[0] == [(k[2], *v) for k, v in sorted(_accepted_fold(interleave(streams, first)).items())]
