"""Read queries over the projection tables and the log, for the API and the CLI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import Registration
from timeline.domain.events import RecordCorrected, SourceRegistered
from timeline.projections import ClaimRecord, Estimate, TimelineEntry
from timeline.store.database import driver_of
from timeline.store.eventlog import decode_stored
from timeline.store.schema import (
    MOVES_SUBJECT,
    SUBJECT_NAMED,
    claims,
    estimates,
    events,
    registrations,
    timeline,
)
from timeline.store.views import (
    chunked,
    claim_from_row,
    decode_claim,
    entry_from_row,
    registration_from_row,
)
from timeline.timetravel import Logged


async def claim(conn: AsyncConnection, claim_id: str) -> ClaimRecord | None:
    """A claim's current state, or None if it was never made."""
    result = await conn.execute(sa.select(claims).where(claims.c.claim_id == claim_id))
    row = result.mappings().one_or_none()
    return claim_from_row(row) if row else None


async def registration(conn: AsyncConnection, stream_id: str) -> tuple[int, Registration] | None:
    """A subject, source or document definition by its stream id, with the position it was recorded at."""
    result = await conn.execute(sa.select(registrations).where(registrations.c.stream_id == stream_id))
    row = result.mappings().one_or_none()
    return registration_from_row(row) if row else None


async def registrations_among(conn: AsyncConnection, stream_ids: Iterable[str]) -> dict[str, Registration]:
    """The definitions among the given stream ids that are registered, by stream id."""
    found: dict[str, Registration] = {}
    for chunk in chunked(stream_ids):
        result = await conn.execute(sa.select(registrations).where(registrations.c.stream_id.in_(chunk)))
        found.update((row["stream_id"], registration_from_row(row)[1]) for row in result.mappings())
    return found


async def registrations_by_kind(conn: AsyncConnection, kind: str) -> list[tuple[int, Registration]]:
    """Every registered subject, source or document (``kind``), by id."""
    result = await conn.execute(
        sa.select(registrations).where(registrations.c.kind == kind).order_by(registrations.c.stream_id)
    )
    return [registration_from_row(row) for row in result.mappings()]


async def estimates_for(conn: AsyncConnection, subject_id: str, metric: str | None) -> list[Estimate]:
    """Each source's latest asserted figure and latest projection on the subject, by metric then source."""
    asserted, projected = claims.alias("asserted"), claims.alias("projected")
    query = (
        sa.select(asserted.c.state.label("asserted"), projected.c.state.label("projected"))
        .select_from(
            estimates.outerjoin(asserted, asserted.c.claim_id == estimates.c.asserted_claim_id).outerjoin(
                projected, projected.c.claim_id == estimates.c.projected_claim_id
            )
        )
        .where(estimates.c.subject_id == subject_id)
        .order_by(estimates.c.metric, estimates.c.source_id)
    )
    if metric is not None:
        query = query.where(estimates.c.metric == metric)
    result = await conn.execute(query)
    return [
        Estimate(
            asserted=decode_claim(row["asserted"]) if row["asserted"] is not None else None,
            projected=decode_claim(row["projected"]) if row["projected"] is not None else None,
        )
        for row in result.mappings()
    ]


class TimelineFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which entries of a subject's timeline to return."""

    source_id: str | None = None
    kinds: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None


async def timeline_page(
    conn: AsyncConnection,
    subject_id: str,
    *,
    after: tuple[dt.date, int] | None,
    limit: int,
    where: TimelineFilter | None = None,
) -> list[TimelineEntry]:
    """A page of the subject's timeline in date order (then log order), after a (date, position) cursor."""
    query = sa.select(timeline).where(timeline.c.subject_id == subject_id)
    if where is not None:
        if where.source_id is not None:
            query = query.where(timeline.c.source_id == where.source_id)
        if where.kinds:
            query = query.where(timeline.c.kind.in_(where.kinds))
        if where.since is not None:
            query = query.where(timeline.c.occurred_on >= where.since)
        if where.until is not None:
            query = query.where(timeline.c.occurred_on <= where.until)
    if after is not None:
        day, position = after
        query = query.where(
            sa.or_(
                timeline.c.occurred_on > day,
                sa.and_(timeline.c.occurred_on == day, timeline.c.position > position),
            )
        )
    result = await conn.execute(query.order_by(timeline.c.occurred_on, timeline.c.position).limit(limit))
    return [entry_from_row(row) for row in result.mappings()]


async def claims_by_source(
    conn: AsyncConnection, source_id: str, *, after: int, limit: int
) -> list[ClaimRecord]:
    """The claims a source made, in the order they were recorded, after a made-position cursor."""
    result = await conn.execute(source_claims(source_id, after=after, limit=limit))
    return [claim_from_row(row) for row in result.mappings()]


def source_claims(source_id: str, *, after: int, limit: int) -> sa.Select[Any]:
    """The query of ``claims_by_source`` (its plan is checked against the index that serves it)."""
    return (
        sa.select(claims)
        .where(claims.c.source_id == source_id, claims.c.made_position > after)
        .order_by(claims.c.made_position)
        .limit(limit)
    )


class _Subjects(msgspec.Struct, frozen=True):
    """The subject a correction moves its claim to (no other field is decoded)."""

    subject_id: str | None = None
    changes: _Subjects | None = None


_subjects_decoder = msgspec.json.Decoder(_Subjects)


def claims_made_on(dialect: str, subject_id: str) -> sa.TextClause:
    """Where and in which stream each claim about a subject was made, from the log (through its expression
    index; a bound on the position is left to the caller, as it could lead a planner to scan by position)."""
    return sa.text(
        "SELECT position, stream_id FROM events "
        f"WHERE type = 'ClaimMade' AND {SUBJECT_NAMED[dialect]} = :subject"
    ).bindparams(subject=subject_id)


async def claim_streams_of_subject(
    conn: AsyncConnection, subject_id: str, position: int, since: int = 0
) -> list[str]:
    """The streams of every claim that was about the subject at some moment up to ``position``: made about
    it, or moved onto it by a correction. Read from the log alone, so no view table changes what is found.
    A claim made after ``position`` is left out: the rest of its stream comes after its ClaimMade. With
    ``since``, so is one made up to it (time travel knows those from a snapshot), but not one moved."""
    made = claims_made_on(conn.dialect.name, subject_id)
    if since:
        # A range of the subject's index (subject, position): only the rows between ``since`` and the cut.
        made = sa.text(f"{made.text} AND position > :since AND position <= :until").bindparams(
            subject=subject_id, since=since, until=position
        )
    result = await conn.execute(made)
    streams = {stream_id for at, stream_id in result if at <= position}
    # Corrections that name a subject are rare: all of them are read through their partial index (a bound
    # on the position in SQL would lead SQLite to scan the log by position instead) and decoded.
    moved = await conn.execute(
        sa.select(events.c.position, events.c.stream_id, events.c.data).where(MOVES_SUBJECT)
    )
    for at, stream_id, data in moved:
        named = _subjects_decoder.decode(data)
        if at <= position and named.changes is not None and named.changes.subject_id == subject_id:
            streams.add(stream_id)
    return sorted(streams)


async def subjects_of_claims(conn: AsyncConnection, stream_ids: Iterable[str]) -> dict[str, str]:
    """The subject each claim stream was made about (from its ClaimMade in the log), by stream id."""
    found: dict[str, str] = {}
    for chunk in chunked(stream_ids):
        result = await conn.execute(
            sa.select(events.c.stream_id, events.c.data).where(
                events.c.stream_id.in_(chunk), events.c.stream_version == 1
            )
        )
        for stream_id, data in result:
            if (subject_id := _subjects_decoder.decode(data).subject_id) is not None:
                found[stream_id] = subject_id
    return found


async def logged_until(
    conn: AsyncConnection, stream_ids: Iterable[str], *, position: int, valid_until: dt.date | None = None
) -> list[Logged]:
    """The events of the given streams up to and including ``position``, in log order, with only what
    time travel folds (no metadata, ids or hashes to decode). With ``valid_until``, events stated after
    it are left out, unless a correction known at ``position`` may have moved their date: time travel
    to that valid time would skip them anyway (``timetravel.visible``)."""
    wanted = sorted(set(stream_ids))
    if valid_until is None:
        return await _logged(conn, wanted, position, "all")
    # Corrections have no date of their own (valid_from is null), so every one known at the cut is read.
    found = await _logged(conn, wanted, position, "stated", valid_until)
    redated = {
        e.stream_id
        for e in found
        if isinstance(e.event, RecordCorrected) and e.event.changes.stated_on is not None
    }
    if redated:
        found.extend(await _logged(conn, sorted(redated), position, "later", valid_until))
        found.sort(key=lambda e: e.position)
    return found


# Time travel on a subject of 10,000 events reads them all: these go to the driver directly, as SQLAlchemy's
# statement compilation (a parameter per stream on SQLite) and per-row processing cost more than the reading.
_LOGGED = (
    "SELECT position, stream_id, stream_version, type, schema_version, data FROM events "
    "WHERE {streams} AND position <= {at}"
)
_STATED = {
    "all": "",
    "stated": " AND (valid_from IS NULL OR valid_from <= {until})",
    "later": " AND valid_from > {until}",
}


async def _logged(
    conn: AsyncConnection,
    stream_ids: list[str],
    position: int,
    stated: Literal["all", "stated", "later"],
    valid_until: dt.date | None = None,
) -> list[Logged]:
    if not stream_ids:
        return []
    driver = await driver_of(conn)
    until = () if stated == "all" else (valid_until,)
    rows: list[Any] = []
    if conn.dialect.name == "postgresql":
        # One array parameter: with a parameter per stream, each length of the list is a statement to plan.
        query = (_LOGGED + _STATED[stated]).format(streams="stream_id = ANY($1::text[])", at="$2", until="$3")
        rows = await driver.fetch(query, stream_ids, position, *until)
    else:
        for chunk in chunked(stream_ids):  # SQLite takes at most 32,766 parameters in a statement
            marks = ", ".join("?" * len(chunk))
            query = (_LOGGED + _STATED[stated]).format(streams=f"stream_id IN ({marks})", at="?", until="?")
            rows.extend(await driver.execute_fetchall(query, (*chunk, position, *map(str, until))))
    found = [
        Logged(position=p, stream_id=s, stream_version=v, event=decode_stored(p, d, t, n))
        for p, s, v, t, n, d in rows
    ]
    found.sort(key=lambda e: e.position)
    return found


# What came after a snapshot on each of its streams: one range per stream of the (stream_id, stream_version)
# key, however far back the snapshot is, instead of a scan of the log between the snapshot and the cut.
_AFTER = {
    # A lateral subquery kept apart (OFFSET 0): a join the planner may turn into a scan of the whole log.
    "postgresql": "SELECT e.position, e.stream_id, e.stream_version, e.type, e.schema_version, e.data "
    "FROM unnest($1::text[], $2::int[]) AS w(s, v) CROSS JOIN LATERAL ("
    "SELECT position, stream_id, stream_version, type, schema_version, data FROM events "
    "WHERE stream_id = w.s AND stream_version > w.v AND position <= $3 OFFSET 0) AS e",
    # One JSON parameter (stream -> version): a statement of one text, prepared once, where a VALUES list
    # of a pair of parameters per stream was a new statement to compile for every length.
    "sqlite": "SELECT e.position, e.stream_id, e.stream_version, e.type, e.schema_version, e.data "
    "FROM json_each(?) AS w JOIN events AS e ON e.stream_id = w.key AND e.stream_version > w.value "
    "WHERE e.position <= ?",
}


async def logged_after(conn: AsyncConnection, versions: dict[str, int], *, position: int) -> list[Logged]:
    """The events of the given streams after the given version of each, up to ``position``, in log order."""
    if not versions:
        return []
    driver = await driver_of(conn)
    rows: list[Any] = []
    if conn.dialect.name == "postgresql":
        streams = sorted(versions)
        rows = await driver.fetch(_AFTER["postgresql"], streams, [versions[s] for s in streams], position)
    else:
        rows = list(
            await driver.execute_fetchall(_AFTER["sqlite"], (msgspec.json.encode(versions), position))
        )
    found = [
        Logged(position=p, stream_id=s, stream_version=v, event=decode_stored(p, d, t, n))
        for p, s, v, t, n, d in rows
    ]
    found.sort(key=lambda e: e.position)
    return found


async def claims_among(conn: AsyncConnection, claim_ids: Iterable[str]) -> dict[str, ClaimRecord]:
    """The current state of the given claims, by id (unknown ids are left out)."""
    found: dict[str, ClaimRecord] = {}
    for chunk in chunked(claim_ids):
        result = await conn.execute(sa.select(claims).where(claims.c.claim_id.in_(chunk)))
        found.update((row["claim_id"], claim_from_row(row)) for row in result.mappings())
    return found


async def drafting_context(
    conn: AsyncConnection,
) -> tuple[list[tuple[str, tuple[str, ...], str]], list[tuple[str, str, str, str]]]:
    """What drafting needs to know: sources (id, names and aliases, kind) and claims with figures
    (claim id, subject, source, metric)."""
    sources: list[tuple[str, tuple[str, ...], str]] = []
    for _, reg in await registrations_by_kind(conn, "source"):
        if isinstance(reg, SourceRegistered):
            sources.append((reg.source_id, (reg.name, *reg.aliases), reg.kind))
    result = await conn.execute(
        sa.select(claims.c.claim_id, claims.c.subject_id, claims.c.source_id, claims.c.metric).where(
            claims.c.metric.is_not(None), claims.c.status != "retracted"
        )
    )
    return sources, [(r[0], r[1], r[2], r[3]) for r in result]


async def subject_with_most_figures(conn: AsyncConnection) -> str | None:
    """The subject with the most claims that state a figure (ties: the first by id); None before any."""
    figures = sa.func.count().label("figures")
    row = (
        await conn.execute(
            sa.select(claims.c.subject_id, figures)
            .where(claims.c.metric.is_not(None))
            .group_by(claims.c.subject_id)
            .order_by(figures.desc(), claims.c.subject_id)
            .limit(1)
        )
    ).first()
    return None if row is None else str(row.subject_id)
