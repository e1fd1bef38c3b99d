"""The read model: what every read of the API and the command line computes, from the views or the log.

Each query takes the read transaction it runs in, so a caller (the response cache) can read the views'
position in the same snapshot; ``read`` runs one in a transaction of its own. Results are records of the
views and the names of the sources they mention; shaping them into response bodies is the caller's job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.app.errors import NotFound
from timeline.domain.claims import Registration, registration_id
from timeline.domain.errors import InvalidValue
from timeline.domain.events import DocumentRegistered, SourceRegistered, SubjectRegistered
from timeline.domain.streams import claim_stream, source_stream, subject_stream
from timeline.projections import ClaimRecord, Estimate, TimelineEntry, Views, occurred_on
from timeline.store import activity, eventlog, projector, queries, travel, views
from timeline.store.database import Database
from timeline.store.queries import TimelineFilter

T = TypeVar("T")


async def read(db: Database, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run one query in a read transaction of its own (one snapshot)."""
    async with db.read() as conn:
        return await query(conn)


async def lookup(db: Database, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run a query of one statement, outside any transaction where the database allows (one round trip)."""
    async with db.lookup() as conn:
        return await query(conn)


class When(msgspec.Struct, frozen=True, kw_only=True):
    """A moment asked for on both time axes, before it is placed on the log: a valid-time date (``as_of``
    as written, and the last day it means) and a transaction time, as a log position or a time."""

    as_of: str | None = None
    valid_until: dt.date | None = None
    known_position: int | None = None
    known_moment: dt.datetime | None = None


class Cut(msgspec.Struct, frozen=True, kw_only=True):
    """A moment on both time axes; views at a cut are folded from the log, not read from view tables."""

    as_of: str | None
    valid_until: dt.date | None
    known_position: int

    def describe(self) -> str:
        """The moment in words, for a message saying what was not recorded by then."""
        parts = [f"as of {self.as_of}"] if self.as_of else []
        return " and ".join([*parts, f"known at position {self.known_position}"])


async def place(conn: AsyncConnection, when: When | None) -> Cut | None:
    """The cut a moment names in this snapshot of the log (None: now, from the views)."""
    if when is None:
        return None
    head = await eventlog.head_position(conn)
    position = head
    if when.known_position is not None:
        if when.known_position > head:
            # Not silently the head: a position not yet reached names no state anyone was shown.
            raise InvalidValue(
                f"the log ends at position {head}; got {when.known_position}", field="known_at"
            )
        position = when.known_position
    elif when.known_moment is not None:
        position = await eventlog.position_at(conn, when.known_moment)
    return Cut(as_of=when.as_of, valid_until=when.valid_until, known_position=position)


class Names(dict[str, str]):
    """Display names of sources by id; a source not registered (at the moment asked) shows its id.

    ``kinds`` and ``relations`` (the sources each is part of or speaks for) hold what is known of the same
    sources, for headlines and for telling a confirmation from the denier's own side."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.kinds: dict[str, str] = {}
        self.relations: dict[str, tuple[str, ...]] = {}

    def __missing__(self, key: str) -> str:
        return key

    def learn(self, definition: SourceRegistered) -> None:
        """Note a source's name, kind and relations."""
        self[definition.source_id] = definition.name
        self.kinds[definition.source_id] = definition.kind
        self.relations[definition.source_id] = tuple(
            s for s in (definition.part_of, definition.speaks_for) if s is not None
        )


async def source_names(conn: AsyncConnection, ids: Iterable[str]) -> Names:
    """The registered names of the given sources."""
    wanted = set(ids)
    found = await queries.registrations_among(conn, (source_stream(i) for i in wanted))
    names = Names()
    for ident in wanted:
        definition = found.get(source_stream(ident))
        if isinstance(definition, SourceRegistered):
            names.learn(definition)
        else:
            names[ident] = ident
    return names


def _names_at(folded: Views) -> Names:
    """Source names as registered (and amended) in views folded at a cut."""
    names = Names()
    for _, reg in folded.registrations.values():
        if isinstance(reg, SourceRegistered):
            names.learn(reg)
    return names


def sources_of(records: Iterable[ClaimRecord]) -> set[str]:
    """Every source a set of claims names: makers, deniers, confirmers and producers of evidence."""
    ids: set[str] = set()
    for r in records:
        c = r.claim
        ids.add(c.source_id)
        ids.update(d.denied_by for d in c.denials)
        ids.update(x.confirmed_by for x in c.confirmations)
        ids.update(e.produced_by for e in c.evidence)
        ids.update(w.withdrawn_by for w in c.withdrawals)
    return ids


async def subject_name(conn: AsyncConnection, subject_id: str) -> str:
    """A subject's registered name; ``NotFound`` if it was never registered."""
    found = await queries.registration(conn, subject_stream(subject_id))
    if found is None or not isinstance(found[1], SubjectRegistered):
        raise NotFound("subject", subject_id)
    return found[1].name


class Estimates(msgspec.Struct, frozen=True, kw_only=True):
    """Each source's latest asserted figure and latest projection on a subject (by metric, then source)."""

    subject_name: str
    estimates: list[Estimate]
    names: Names
    cut: Cut | None


async def estimates(
    conn: AsyncConnection, subject_id: str, metric: str | None, when: When | None
) -> Estimates:
    """The estimates of a subject (optionally one metric), now or at a moment."""
    name = await subject_name(conn, subject_id)  # in the same snapshot as the view it names
    cut = await place(conn, when)
    if cut is None:
        found = await queries.estimates_for(conn, subject_id, metric)
        names = await source_names(
            conn, sources_of(r for e in found for r in (e.asserted, e.projected) if r is not None)
        )
    else:
        folded = await travel.subject_views(conn, subject_id, cut.known_position, cut.valid_until)
        found = [
            Estimate(
                asserted=folded.claims[asserted] if asserted else None,
                projected=folded.claims[projected] if projected else None,
            )
            for key, (asserted, projected) in sorted(folded.estimates.items())
            if (asserted or projected) and key[0] == subject_id and metric in (None, key[1])
        ]
        names = _names_at(folded)
    return Estimates(subject_name=name, estimates=found, names=names, cut=cut)


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """Entries of a subject's timeline, the names of their sources and the claims they belong to."""

    subject_name: str
    entries: list[TimelineEntry]
    names: Names
    claims: dict[str, ClaimRecord]
    cut: Cut | None


async def timeline(
    conn: AsyncConnection,
    subject_id: str,
    where: TimelineFilter,
    after: tuple[dt.date, int] | None,
    limit: int,
    when: When | None,
) -> Timeline:
    """Up to ``limit`` entries of a subject's timeline after ``after`` (date, position), now or at a
    moment, in the order they were stated (log order breaks ties)."""
    name = await subject_name(conn, subject_id)  # in the same snapshot as the view it names
    cut = await place(conn, when)
    if cut is None:
        entries = await queries.timeline_page(conn, subject_id, after=after, limit=limit, where=where)
        records = await queries.claims_among(conn, (e.claim_id for e in entries if e.claim_id is not None))
        # The claims' own sources too: a denial's headline names whose claim it denies.
        speakers = [e.source_id for e in entries] + [r.claim.source_id for r in records.values()]
        names = await source_names(conn, speakers)
    else:
        folded = await travel.subject_views(conn, subject_id, cut.known_position, cut.valid_until)
        entries = _timeline_at(folded, subject_id, where, after)[:limit]
        names = _names_at(folded)
        records = folded.claims
    return Timeline(subject_name=name, entries=entries, names=names, claims=records, cut=cut)


def _timeline_at(
    folded: Views, subject_id: str, where: TimelineFilter, after: tuple[dt.date, int] | None
) -> list[TimelineEntry]:
    entries = sorted(
        (
            e
            for e in folded.timeline.values()
            if e is not None
            and e.subject_id == subject_id
            and (where.source_id is None or e.source_id == where.source_id)
            and (not where.kinds or e.kind in where.kinds)
            and (where.since is None or occurred_on(e) >= where.since)
            and (where.until is None or occurred_on(e) <= where.until)
        ),
        key=lambda e: (occurred_on(e), e.position),
    )
    return [e for e in entries if after is None or (occurred_on(e), e.position) > after]


class ClaimAt(msgspec.Struct, frozen=True, kw_only=True):
    """A claim as it stands (or stood at a cut), with the names of the sources it mentions."""

    record: ClaimRecord
    names: Names
    cut: Cut | None


async def claim(conn: AsyncConnection, claim_id: str, when: When | None) -> ClaimAt:
    """A claim now, or as it stood at a moment (folded from the log); ``NotFound`` if not made by then."""
    cut = await place(conn, when)
    if cut is None:
        found = await queries.claim(conn, claim_id)
        if found is None:
            raise NotFound("claim", claim_id)
    else:
        folded = await travel.stream_views(conn, claim_stream(claim_id), cut.known_position, cut.valid_until)
        found = folded.claims.get(claim_id)
        if found is None:
            raise NotFound("claim", claim_id, when=cut.describe())
    names = await source_names(conn, sources_of([found]))
    return ClaimAt(record=found, names=names, cut=cut)


async def registered(conn: AsyncConnection, kind: str) -> dict[str, Registration]:
    """Every registered subject, source or document (``kind``), by its id."""
    return {registration_id(r): r for _, r in await queries.registrations_by_kind(conn, kind)}


def page(ids: list[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    """A page of ids after ``cursor`` (the last id of the previous page), and the next cursor."""
    start = [i for i in ids if cursor is None or i > cursor]
    chosen = start[:limit]
    return chosen, (chosen[-1] if len(start) > limit else None)


class SourceDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A source, a page of the claims it made (in the order recorded), and its activity counts."""

    source: Registration
    claims: list[ClaimRecord]
    next_cursor: int | None
    activity: dict[str, int] | None


async def source_detail(conn: AsyncConnection, source_id: str, after: int, limit: int) -> SourceDetail:
    """A source and up to ``limit`` of its claims made after log position ``after``."""
    found = await queries.registration(conn, source_stream(source_id))
    if found is None:
        raise NotFound("source", source_id)
    records = await queries.claims_by_source(conn, source_id, after=after, limit=limit + 1)
    counts = await activity.of(conn, source_id)
    chosen = records[:limit]
    return SourceDetail(
        source=found[1],
        claims=chosen,
        next_cursor=chosen[-1].made_position if len(records) > limit else None,
        activity=counts,
    )


async def documents(conn: AsyncConnection) -> dict[str, DocumentRegistered]:
    """Every registered document, by id."""
    found = await queries.registrations_by_kind(conn, "document")
    return {d.document_id: d for _, d in found if isinstance(d, DocumentRegistered)}


async def sources_among(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, SourceRegistered]:
    """The current definitions of the given sources that are registered, by id."""
    found = await queries.registrations_among(conn, (source_stream(i) for i in set(ids)))
    return {r.source_id: r for r in found.values() if isinstance(r, SourceRegistered)}


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """The log's head, the position each projection has reached and when it last moved, and when the
    event an asynchronous projection waits for was recorded (how a stall is told)."""

    head_position: int
    views_position: int
    projections: dict[str, int]
    standing: dict[str, tuple[int, dt.datetime | None]]
    waiting_since: dict[str, dt.datetime | None]
    # The failures the projections' leaders recorded (whichever process leads them).
    failures: dict[str, str]
    signed_position: int
    unsigned: tuple[int, int] | None


async def health(conn: AsyncConnection) -> Health:
    """Where the log and every projection stand (the views first)."""
    found = await projector.standing_with_head(conn, activity.name)
    seen = {name: position for name, (position, _) in found.projections.items()}
    projections = {name: seen.get(name, 0) for name in (views.CHECKPOINT, activity.name)}
    return Health(
        head_position=found.head,
        views_position=projections[views.CHECKPOINT],
        projections=projections,
        standing=found.projections,
        waiting_since={activity.name: found.waiting_since},
        failures=found.failures,
        signed_position=found.signed,
        unsigned=(found.signed + 1, found.head) if found.head > found.signed else None,
    )


async def head_position(conn: AsyncConnection) -> int:
    """The log's last position (0 when empty)."""
    return await eventlog.head_position(conn)


async def drafting_context(
    conn: AsyncConnection,
) -> tuple[list[tuple[str, tuple[str, ...], str]], list[tuple[str, str, str, str]]]:
    """What drafting a fixture needs to know: the sources (id, names, kind) and the claims with figures."""
    return await queries.drafting_context(conn)
