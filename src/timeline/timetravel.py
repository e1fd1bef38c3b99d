"""Views at any moment on both time axes, folded from the log alone (no view tables are trusted).

- Transaction time (``known_at``): only events recorded up to a log position.
- Valid time (``as_of``): only what sources had said by a date. An event counts from the first day of the
  period it was stated in (as corrected, if a correction known at the cut fixed its date); a claim not yet
  made hides everything recorded on it; a correction counts whenever the event it corrects does.

Pure: the caller reads the events; ``views_at`` folds them with the same ``apply`` as the live views.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import cast

import msgspec

from timeline import resumed
from timeline.domain import claims as rules
from timeline.domain.claims import ClaimEvent
from timeline.domain.events import (
    ClaimDenied,
    ClaimMade,
    DenialWithdrawn,
    DomainEvent,
    RecordCorrected,
    StatedDate,
    StatementMade,
)
from timeline.domain.values import period_start
from timeline.projections import (
    ClaimRecord,
    TimelineEntry,
    Views,
    apply,
    current,
    effective_events,
    estimate_key,
    latest_estimates,
    timeline_entry,
)
from timeline.resumed import Folded


class Logged(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event with the two facts time travel needs: its position and its stream version."""

    position: int
    stream_id: str
    stream_version: int
    event: DomainEvent


def period_end(text: str) -> dt.date:
    """The last day of a date written as YYYY, YYYY-MM or YYYY-MM-DD ("as of 2024-10" means its end)."""
    if len(text) == 4:
        return dt.date(int(text), 12, 31)
    if len(text) == 7:
        year, month = int(text[:4]), int(text[5:7])
        dt.date(year, month, 1)  # raises ValueError for a month that does not exist
        following = dt.date(year + month // 12, month % 12 + 1, 1)
        return following - dt.timedelta(days=1)
    return dt.date.fromisoformat(text)


def _stated(event: ClaimEvent) -> StatedDate | None:
    return None if isinstance(event, RecordCorrected) else event.stated_on


def _said_after(event: DomainEvent, valid_until: dt.date) -> bool:
    return isinstance(event, StatementMade) and period_start(event.stated_on) > valid_until


def _kept(
    event: ClaimEvent,
    versions: dict[int, int],
    stated: StatedDate,
    valid_until: dt.date,
    denials: set[tuple[str, str]],
) -> bool:
    if not versions and not isinstance(event, ClaimMade):
        return False  # the claim itself was not made yet
    if isinstance(event, DenialWithdrawn) and (event.claim_id, event.denial_id) not in denials:
        return False  # its denial is not (yet) in view
    return period_start(stated) <= valid_until


def visible(events: Sequence[Logged], valid_until: dt.date | None) -> Iterator[tuple[int, DomainEvent]]:
    """The events a valid-time cut keeps, in log order, with corrections renumbered to the kept versions."""
    if valid_until is None:
        for e in events:
            yield e.position, e.event
        return
    # First pass: the date each claim event is known to have been stated on, corrections applied.
    stated: dict[tuple[str, int], StatedDate] = {}
    for e in events:
        if isinstance(e.event, RecordCorrected) and e.event.changes.stated_on is not None:
            stated[(e.stream_id, e.event.corrects_version)] = e.event.changes.stated_on
        elif isinstance(e.event, ClaimEvent) and (date := _stated(e.event)) is not None:
            stated.setdefault((e.stream_id, e.stream_version), date)
    kept: dict[str, dict[int, int]] = {}  # stream -> original version -> version among kept events
    denials: set[tuple[str, str]] = set()  # (claim, denial) kept: a withdrawal is kept only with its denial
    # A statement is on the timeline from the date it was made.
    for e in (x for x in events if not _said_after(x.event, valid_until)):
        event = e.event
        if not isinstance(event, ClaimEvent):
            yield e.position, event
            continue
        versions = kept.setdefault(e.stream_id, {})
        if isinstance(event, RecordCorrected):
            target = versions.get(event.corrects_version)
            if target is None:
                continue
            event = msgspec.structs.replace(event, corrects_version=target)
        elif not _kept(event, versions, stated[(e.stream_id, e.stream_version)], valid_until, denials):
            continue
        if isinstance(event, ClaimDenied):
            denials.add((event.claim_id, event.denial_id))
        versions[e.stream_version] = len(versions) + 1
        yield e.position, event


def folded_claims(events: Sequence[Logged], views: Views) -> dict[str, Folded]:
    """What a snapshot keeps of each claim in ``views``, folded from ``events`` with no valid-time cut."""
    versions: dict[str, int] = {}
    stated: dict[tuple[str, int], dt.date] = {}
    for e in events:
        if not isinstance(e.event, ClaimEvent):
            continue
        versions[e.event.claim_id] = e.stream_version
        if isinstance(e.event, RecordCorrected):
            if e.event.changes.stated_on is not None:
                target = (e.event.claim_id, e.event.corrects_version)
                stated[target] = max(stated[target], period_start(e.event.changes.stated_on))
        elif (date := _stated(e.event)) is not None:
            stated[(e.event.claim_id, e.stream_version)] = period_start(date)
    latest: dict[str, dt.date] = {}
    for (claim_id, _), day in stated.items():
        latest[claim_id] = max(day, latest.get(claim_id, day))
    return {
        claim_id: Folded(
            record=current(record),
            entries={at: views.timeline[at] for at in record.positions},
            version=versions[claim_id],
            latest=latest.get(claim_id),
        )
        for claim_id, record in views.claims.items()
    }


class Earlier(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A kept claim as valid-time cuts from ``until`` up to the next one show it (before its ``latest``):
    its state and entries then, or None while it was not yet made."""

    until: dt.date
    record: ClaimRecord | None = None
    entries: dict[int, TimelineEntry | None] = {}


def earlier_states(events: Sequence[Logged], kept: Mapping[str, Folded]) -> dict[str, list[Earlier]]:
    """What each kept claim shows at every valid time before its ``latest``, folded from its ``events``.

    Valid time can precede recorded time, so a snapshot by log position holds events of any date. Which of
    a claim's events a cut keeps changes only at the dates its events were stated on (as corrected), so a
    claim has at most one state per such date: kept here, an ``as_of`` cut reads none of its stream."""
    streams: dict[str, list[Logged]] = {}
    for e in events:
        if isinstance(e.event, ClaimEvent) and e.event.claim_id in kept:
            streams.setdefault(e.event.claim_id, []).append(e)
    found: dict[str, list[Earlier]] = {}
    for claim_id, logged in streams.items():
        latest = kept[claim_id].latest
        days: set[dt.date] = set()
        for e in logged:
            if isinstance(e.event, RecordCorrected):
                if e.event.changes.stated_on is not None:
                    days.add(period_start(e.event.changes.stated_on))
            elif isinstance(e.event, ClaimEvent) and (date := _stated(e.event)) is not None:
                days.add(period_start(date))
        states: list[Earlier] = []
        shown: tuple[int, ...] | None = None
        for day in sorted(d for d in days if latest is not None and d < latest):
            folded = _claim_as_of(logged, day)
            record = folded.claims.get(claim_id)
            if (record.positions if record else ()) == shown:
                continue  # the same events as the cut before
            shown = record.positions if record else ()
            if record is None:
                states.append(Earlier(until=day))
                continue
            entries = {at: folded.timeline[at] for at in record.positions}
            states.append(Earlier(until=day, record=current(record), entries=entries))
        if states:
            found[claim_id] = states
    return found


def _claim_as_of(logged: Sequence[Logged], valid_until: dt.date) -> Views:
    """One claim's events folded as ``views_at`` folds them at a valid time, its estimates left unranked: a
    claim's earlier states keep its record and entries only (ranking was a fifth of computing them)."""
    views = Views(indexed=True)
    streams: dict[str, list[tuple[int, DomainEvent]]] = {}
    for position, event in visible(logged, valid_until):
        streams.setdefault(cast(ClaimEvent, event).claim_id, []).append((position, event))
    _replay(views, streams, {})
    return views


def as_of(kept: Folded, earlier: Sequence[Earlier], valid_until: dt.date | None) -> Folded | None:
    """A kept claim as a cut at ``valid_until`` shows it (None: not yet made), from its snapshot alone."""
    if valid_until is None or kept.latest is None or kept.latest <= valid_until:
        return kept
    chosen = None
    for state in earlier:  # a handful, in date order
        if state.until > valid_until:
            break
        chosen = state
    if chosen is None or chosen.record is None:
        return None
    return Folded(record=chosen.record, entries=chosen.entries, version=kept.version, latest=chosen.until)


def views_at(
    events: Iterable[Logged],
    valid_until: dt.date | None,
    kept: Mapping[str, Folded | None] | None = None,
    base: resumed.Base | None = None,
) -> Views:
    """Every view as the given events (already cut at a log position) show it as of ``valid_until``.

    The same views as ``apply`` on each event in turn (tests hold them equal), folded a claim at a time:
    with every event of a claim at hand, its state is one replay and its estimate key is ranked once,
    not once per event (which was most of the cost on a subject of 10,000 events).

    ``kept`` claims (from a snapshot, ``as_of`` this valid time; None for one not yet made then) start
    from their kept state, and ``events`` hold only what came after it on their streams, with no
    correction (a correction can change any earlier event of its claim) nor, at a valid time, a withdrawal
    of a denial (kept only with its denial) among them: such a claim is refolded from its whole stream.

    ``base`` is what a cut from the snapshot of the ``kept`` claims starts from (``resumed.base``): the views
    start as a copy of its views, and only the claims the cut changes are folded and their estimate keys
    ranked again (``timeline.resumed``), rather than every claim of the subject on every cut.
    """
    kept = kept or {}
    views = Views(indexed=True)
    streams: dict[str, list[tuple[int, DomainEvent]]] = {}  # each claim's (position, event) pairs
    later, rest = _after_kept(views, events, valid_until, kept)
    touched: resumed.Touched = {}
    if base is None:
        back = [claim_id for claim_id, start in kept.items() if start]
    else:
        back = resumed.from_base(views, base, kept, later, touched)
    for pair in visible(rest, valid_until):
        position, event = pair
        if isinstance(event, ClaimEvent):
            streams.setdefault(event.claim_id, []).append(pair)
        else:
            apply(views, position, event)
        views.position = max(views.position, position)
    for claim_id in back:
        resumed.resume(views, cast(Folded, kept[claim_id]), later.get(claim_id, []))
        resumed.touch(touched, views.claims[claim_id].claim)
    _replay(views, streams, touched)
    if base is None:
        for key, members in views.by_key.items():
            views.estimates[key] = latest_estimates(views.claims[claim_id] for claim_id in members)
    else:
        resumed.rank(views, base, touched)
    return views


def _after_kept(
    views: Views, events: Iterable[Logged], valid_until: dt.date | None, kept: Mapping[str, Folded | None]
) -> tuple[dict[str, list[tuple[int, ClaimEvent]]], list[Logged]]:
    """The events on kept claims' streams that a cut shows (by claim), and every other event."""
    later: dict[str, list[tuple[int, ClaimEvent]]] = {}
    rest: list[Logged] = []
    for e in events:
        if not (isinstance(e.event, ClaimEvent) and e.event.claim_id in kept):
            rest.append(e)
            continue
        if kept[e.event.claim_id] is None:
            continue  # its ClaimMade is stated after the cut, so nothing on its stream shows
        # Its ClaimMade is kept, so this one is only to be cut by its own date.
        date = _stated(e.event)
        if valid_until is None or date is None or period_start(date) <= valid_until:
            later.setdefault(e.event.claim_id, []).append((e.position, e.event))
            views.position = max(views.position, e.position)
    return later, rest


def _replay(
    views: Views, streams: Mapping[str, list[tuple[int, DomainEvent]]], touched: resumed.Touched
) -> None:
    """Each claim folded from its own (position, event) pairs: its record, estimate key and entries."""
    for claim_id, pairs in streams.items():
        claim = rules.replay([cast(ClaimEvent, event) for _, event in pairs])
        positions = tuple(position for position, _ in pairs)
        views.claims[claim_id] = ClaimRecord(
            claim=claim, made_position=positions[0], updated_position=positions[-1], positions=positions
        )
        if (key := estimate_key(claim)) is not None:
            views.by_key.setdefault(key, set()).add(claim_id)
        resumed.touch(touched, claim)
        # The entries ``apply`` leaves: each event's, from the claim as it ends (only a correction changes
        # what an entry shows of its claim, and a correction redoes every entry of the claim).
        fixed = {c.corrects_version for c in claim.corrections}
        for version, (at, effective) in enumerate(zip(positions, effective_events(claim), strict=True), 1):
            views.timeline[at] = timeline_entry(at, effective, claim, corrected=version in fixed)
