"""Read queries over the projection tables and the log, for the API and the CLI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import Registration
from timeline.domain.events import SourceRegistered
from timeline.projections import ClaimRecord, TimelineEntry
from timeline.store.schema import claims, estimates, events, registrations, timeline
from timeline.store.views import claim_from_row, entry_from_row, registration_from_row


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
    result = await conn.execute(
        sa.select(registrations).where(registrations.c.stream_id.in_(sorted(set(stream_ids))))
    )
    return {row["stream_id"]: registration_from_row(row)[1] for row in result.mappings()}


async def registrations_by_kind(conn: AsyncConnection, kind: str) -> list[tuple[int, Registration]]:
    """Every registered subject, source or document (``kind``), by id."""
    result = await conn.execute(
        sa.select(registrations).where(registrations.c.kind == kind).order_by(registrations.c.stream_id)
    )
    return [registration_from_row(row) for row in result.mappings()]


async def estimates_for(conn: AsyncConnection, subject_id: str, metric: str | None) -> list[ClaimRecord]:
    """The claim holding each source's latest estimate on the subject, by metric then source."""
    query = (
        sa.select(claims)
        .join(estimates, estimates.c.claim_id == claims.c.claim_id)
        .where(estimates.c.subject_id == subject_id)
        .order_by(estimates.c.metric, estimates.c.source_id)
    )
    if metric is not None:
        query = query.where(estimates.c.metric == metric)
    result = await conn.execute(query)
    return [claim_from_row(row) for row in result.mappings()]


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
    result = await conn.execute(
        sa.select(claims)
        .where(claims.c.source_id == source_id, claims.c.made_position > after)
        .order_by(claims.c.made_position)
        .limit(limit)
    )
    return [claim_from_row(row) for row in result.mappings()]


async def claim_streams_of_subject(conn: AsyncConnection, subject_id: str) -> list[str]:
    """The streams of every claim that is, or was before a correction moved it, about the subject."""
    result = await conn.execute(sa.select(claims.c.claim_id).where(claims.c.subject_id == subject_id))
    streams = {f"claim-{row[0]}" for row in result}
    # A correction can move a claim between subjects; time travel must see it on its old subject too.
    moved = await conn.execute(
        sa.select(events.c.stream_id, events.c.data).where(events.c.type == "RecordCorrected")
    )
    # Any claim a correction moved is read whole; folding it shows which subject it had at the cut.
    streams.update(stream_id for stream_id, data in moved if '"subject_id"' in data)
    return sorted(streams)


async def registration_streams(conn: AsyncConnection) -> list[str]:
    """The stream ids of every registered subject, source and document."""
    result = await conn.execute(sa.select(registrations.c.stream_id))
    return [row[0] for row in result]


async def claims_among(conn: AsyncConnection, claim_ids: Iterable[str]) -> dict[str, ClaimRecord]:
    """The current state of the given claims, by id (unknown ids are left out)."""
    wanted = sorted(set(claim_ids))
    if not wanted:
        return {}
    result = await conn.execute(sa.select(claims).where(claims.c.claim_id.in_(wanted)))
    return {row["claim_id"]: claim_from_row(row) for row in result.mappings()}


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
