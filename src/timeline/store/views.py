"""Loading and saving the projection tables.

The folding itself is ``timeline.projections.apply``; this module only moves rows in and out, so the live
path (``project``) and the fold of the log (``store.refold``: catch-up and rebuild) share every decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import Amendment, Claim, ClaimEvent, Registration, evolve, is_claim_event
from timeline.domain.events import (
    DomainEvent,
    RecordCorrected,
)
from timeline.domain.streams import claim_stream, stream_of
from timeline.domain.streams import parse as parse_stream
from timeline.projections import (
    NO_FIGURE,
    Chosen,
    ClaimRecord,
    EstimateKey,
    TimelineEntry,
    Views,
    apply,
    current,
    estimate_key,
    occurred_on,
    with_history,
)
from timeline.ranking import SLOTS, rank_can_drop, slot_of
from timeline.store import driver, projector, statements
from timeline.store.eventlog import RecordedEvent, read_until
from timeline.store.readahead import CHOSEN as _CHOSEN
from timeline.store.readahead import ReadAhead
from timeline.store.schema import checkpoints, registrations

CHECKPOINT = statements.VIEWS_CHECKPOINT
_encoder = msgspec.json.Encoder()
_claim_decoder = msgspec.json.Decoder(ClaimRecord)
_entry_decoder = msgspec.json.Decoder(TimelineEntry)
_registration_decoder: msgspec.json.Decoder[Registration] = msgspec.json.Decoder(Registration)


def claim_from_row(row: sa.RowMapping) -> ClaimRecord:
    """Turn a ``claims`` row back into the folded record."""
    return decode_claim(row["state"])


def decode_claim(state: str | bytes) -> ClaimRecord:
    """A claim record from its stored state."""
    return _claim_decoder.decode(state)


def entry_from_row(row: sa.RowMapping) -> TimelineEntry:
    """Turn a ``timeline`` row back into its entry."""
    return _entry_decoder.decode(row["entry"])


def registration_from_row(row: sa.RowMapping) -> tuple[int, Registration]:
    """Turn a ``registrations`` row back into (position, definition)."""
    return row["position"], _registration_decoder.decode(row["definition"])


async def load_for(
    conn: AsyncConnection,
    new_events: Sequence[DomainEvent],
    *,
    before: Mapping[str, Claim | None] | None = None,
    until: int | None = None,
    ahead: ReadAhead | None = None,
) -> Views:
    """Load every row the given events can change: their claims and those claims' estimate neighbours
    (under every key the claims pass through), and the definitions being amended; a claim being corrected
    also gets its history, its events up to position ``until`` (the log's, before these events).

    ``before``, the writer's own fold of each claim the events touch (None: not made yet), lets every claim
    row come in one query; the rows read are checked against it, and a wrong guess costs another query.
    ``ahead``, rows the writer read with its streams, spares asking for them again.
    """
    views = Views()
    amended = [stream_of(e) for e in new_events if not is_claim_event(e) and isinstance(e, Amendment)]
    for chunk in chunked(set(amended)):
        result = await conn.execute(sa.select(registrations).where(registrations.c.stream_id.in_(chunk)))
        for row in result.mappings():
            views.registrations[row["stream_id"]] = registration_from_row(row)
    claim_events = [e for e in new_events if is_claim_event(e)]
    if not claim_events:
        return views
    corrected = {e.claim_id for e in claim_events if type(e) is RecordCorrected}
    if corrected:
        assert until is not None, "a correction is folded with the claim's history, read up to ``until``"
    ids = {e.claim_id for e in claim_events}
    if before is not None and ids <= before.keys():
        guessed = {cid: state for cid, state in before.items() if cid in ids and state is not None}
        try:
            full, light = _keys_touched(guessed, claim_events)
        except ValueError:  # the guess cannot even be folded (a claim event before its ClaimMade)
            pass
        else:
            await _load_claims(conn, views, ids, full, light, ahead)
            # A row keeps no history: the guess is compared as its row would be.
            rows = {cid: r.claim for cid, r in views.claims.items() if cid in ids}
            if rows == {cid: msgspec.structs.replace(c, recorded=()) for cid, c in guessed.items()}:
                # The rows are the writer's states: fold on from those very objects, so the views' fold
                # of each event is the one the writer made already (``claims.evolve``).
                for cid, claim in guessed.items():
                    views.claims[cid] = msgspec.structs.replace(views.claims[cid], claim=claim)
                await _load_histories(conn, views, corrected, until)
                return views
            views = Views(registrations=views.registrations)  # the guess was wrong: read them again
    await _load_claims(conn, views, ids, set(), set(), ahead)
    await _load_histories(conn, views, corrected, until)  # folding a correction ahead needs them
    states = {cid: r.claim for cid, r in views.claims.items()}
    # What is chosen under these claims' keys: a key needs all its claims only if one chosen there can drop.
    known = {k for c in states.values() if (k := estimate_key(c)) is not None}
    await _load_claims(conn, views, set(), set(), known, ahead)
    full, light = _keys_touched(states, claim_events, views.estimates)
    await _load_claims(conn, views, set(), full, light - known, ahead)
    return views


async def _load_histories(
    conn: AsyncConnection, views: Views, claim_ids: set[str], until: int | None
) -> None:
    """Put in place of the rows of these claims their records folded from the log, history included (the
    log's word stands over a row's)."""
    if not claim_ids or until is None:
        return
    logged: dict[str, list[tuple[int, ClaimEvent]]] = {}
    for chunk in chunked(claim_stream(c) for c in claim_ids):
        for r in await read_until(conn, position=until, streams=chunk):
            assert isinstance(r.event, ClaimEvent)
            logged.setdefault(r.event.claim_id, []).append((r.position, r.event))
    for claim_id, pairs in logged.items():
        views.claims[claim_id] = with_history(pairs)


def _keys_touched(
    states: dict[str, Claim],
    claim_events: Sequence[ClaimEvent],
    chosen: Mapping[EstimateKey, Chosen] | None = None,
) -> tuple[set[EstimateKey], set[EstimateKey]]:
    """The estimate keys whose claims must all be loaded (full) and those needing only the claims chosen
    there (light), given the claims' states before the events and, where known, what is chosen under
    their keys (``chosen``; None: nothing is known, and any claim may be chosen)."""
    # Fold the batch ahead to learn every key it touches, corrections included. A claim entering or rising
    # in a key competes only with those chosen there; one that may be chosen there and can drop (an earlier
    # date, a retraction, a move) leaves every claim under it to compete. It may be chosen if it was at the
    # start, or it changed earlier in the batch, or every claim there competed (then all are loaded).
    states = dict(states)
    light: set[EstimateKey | None] = {estimate_key(c) for c in states.values()}
    full: set[EstimateKey | None] = set()
    changed: set[str] = set()
    for event in claim_events:
        claim_id = event.claim_id
        earlier = states.get(claim_id)
        before = estimate_key(earlier) if earlier is not None else None
        states[claim_id] = now = evolve(earlier, event)
        after = estimate_key(now)
        light.add(after)
        if before is not None and (rank_can_drop(earlier, now) or before != after):
            held = chosen.get(before) if chosen is not None else None
            (full if held is None or claim_id in held or claim_id in changed else light).add(before)
        else:
            light.add(before)
        changed.add(claim_id)
    full.discard(None)
    light -= full
    light.discard(None)
    return {k for k in full if k is not None}, {k for k in light if k is not None}


# Ids or keys a statement: both drivers refuse a statement of more than 32,767 parameters (a key takes three),
# which one import of a big fixture reaches.
_CHUNK = 1000


_Item = TypeVar("_Item", str, int, EstimateKey)


def chunked(items: Iterable[_Item]) -> list[list[_Item]]:
    """The distinct items, sorted, a thousand to a list: what one statement can take as parameters."""
    ordered = sorted(set(items))
    return [ordered[start : start + _CHUNK] for start in range(0, len(ordered), _CHUNK)]


async def _load_claims(
    conn: AsyncConnection,
    views: Views,
    ids: set[str],
    full: set[EstimateKey],
    light: set[EstimateKey],
    ahead: ReadAhead | None = None,
) -> None:
    """Read the claims by id, every claim under the ``full`` keys and the chosen claim under the ``light``
    keys (recording which one is chosen), in one query (none for what ``ahead`` holds)."""
    # No estimate row under a key means no live figure under it: a new one simply wins.
    views.estimates.update(dict.fromkeys(light, NO_FIGURE))
    rows: list[tuple[int, str, ClaimRecord | str]] = []
    if ahead is not None:
        rows, ids, light = ahead.take(ids, light)
    if ids or full or light:
        rows.extend(await driver.claims_for(conn, sorted(ids), sorted(full), sorted(light)))
    for part, claim_id, state in rows:
        record = views.claims.get(claim_id)
        if record is None:
            record = state if isinstance(state, ClaimRecord) else _claim_decoder.decode(state)
            views.claims[claim_id] = record
        if part == _CHOSEN and (key := estimate_key(record.claim)) is not None:
            # The row was written from this very state, so the claim's slot is the one it fills.
            chosen = list(views.estimates.get(key, NO_FIGURE))
            chosen[SLOTS.index(slot_of(record.claim))] = record.claim.claim_id
            views.estimates[key] = (chosen[0], chosen[1])


def changes_of(views: Views, changes: driver.Changes | None = None) -> driver.Changes:
    """The rows ``apply`` changed, and the position the views now reflect, as rows to write."""
    changes = changes if changes is not None else driver.Changes()
    for r in (current(views.claims[c]) for c in sorted(views.changed_claims)):
        claim = r.claim
        changes.claims.append(
            (
                claim.claim_id,
                claim.subject_id,
                claim.source_id,
                claim.metric,
                claim.status,
                claim.version,
                r.made_position,
                r.updated_position,
                _encoder.encode(r).decode(),
            )
        )
    for key in sorted(views.changed_estimates):
        chosen = views.estimates[key]
        if chosen == NO_FIGURE:
            changes.unchosen.append(key)
        else:
            changes.chosen.append((*key, *chosen))
    for stream in sorted(views.changed_registrations):
        position, definition = views.registrations[stream]
        changes.defined.append(
            (stream, parse_stream(stream)[0], position, _encoder.encode(definition).decode())
        )
    for position, e in sorted(views.timeline.items()):
        if e is None:
            changes.unlisted.append(position)
        else:
            changes.listed.append(
                (e.position, e.subject_id, occurred_on(e), e.source_id, e.kind, _encoder.encode(e).decode())
            )
    changes.checkpoint = (CHECKPOINT, views.position)
    return changes


async def save(conn: AsyncConnection, views: Views, changes: driver.Changes | None = None) -> None:
    """Write back the rows ``apply`` changed and the position the views now reflect (with ``changes``, the
    events being appended, in the same statement where the database allows)."""
    await driver.write(conn, changes_of(views, changes))


async def project(
    conn: AsyncConnection,
    recorded: Sequence[RecordedEvent],
    *,
    before: Mapping[str, Claim | None] | None = None,
    changes: driver.Changes | None = None,
    ahead: ReadAhead | None = None,
) -> None:
    """Bring the views up to date with events appended in this transaction (``before``, ``ahead``: see
    ``load_for``; ``changes``: the rows of those events, when they are not written yet, to write with the
    views')."""
    logged = [(r.position, r.event) for r in recorded]
    await project_logged(conn, logged, before=before, changes=changes, ahead=ahead)


async def project_logged(
    conn: AsyncConnection,
    logged: Sequence[tuple[int, DomainEvent]],
    *,
    before: Mapping[str, Claim | None] | None = None,
    changes: driver.Changes | None = None,
    ahead: ReadAhead | None = None,
) -> Views | None:
    """``project`` for (position, event) pairs: what the write path and the fold share. Returns the views
    folded (None for no events)."""
    if not logged:
        if changes:
            await driver.write(conn, changes)
        return None
    events = [e for _, e in logged]
    views = await load_for(conn, events, before=before, until=logged[0][0] - 1, ahead=ahead)
    for position, event in logged:
        apply(views, position, event)
    await save(conn, views, changes)
    return views


async def checkpoint(conn: AsyncConnection) -> int:
    """The log position the views reflect."""
    return await projector.checkpoint(conn, CHECKPOINT)


async def freshness(conn: AsyncConnection) -> tuple[int, dt.datetime | None]:
    """The position the views reflect and when they last changed (for ETag and Last-Modified)."""
    result = await conn.execute(
        sa.select(checkpoints.c.position, checkpoints.c.updated_at).where(checkpoints.c.name == CHECKPOINT)
    )
    row = result.first()
    if row is None:
        return 0, None
    updated = row[1]
    return int(row[0]), updated.replace(tzinfo=dt.UTC) if updated and updated.tzinfo is None else updated
