"""Read routes: estimates, timelines, claims, the log, and lists of subjects, sources and documents."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from timeline.api import present
from timeline.api.auth import requires
from timeline.api.common import MAX_LIMIT, Db, problems
from timeline.api.problems import BadRequest, NotFound
from timeline.api.schemas import (
    ClaimOut,
    DocumentsOut,
    EstimatesOut,
    EventsOut,
    HealthOut,
    HistoryOut,
    SourceDetailOut,
    SourcesOut,
    SubjectsOut,
    TimelineOut,
)
from timeline.domain.events import SourceRegistered, SubjectRegistered
from timeline.projections import occurred_on
from timeline.store import eventlog, queries, views
from timeline.store.database import Database
from timeline.store.queries import TimelineFilter

READ = [requires("read")]
TIMELINE_KINDS = ("made", "revised", "denied", "confirmed", "retracted", "evidence")

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Items per page")]
Cursor = Annotated[str | None, QueryParameter(description="The 'next' cursor of the previous page")]


async def _subject_name(db: Database, subject_id: str) -> str:
    async with db.read() as conn:
        found = await queries.registration(conn, f"subject-{subject_id}")
    if found is None or not isinstance(found[1], SubjectRegistered):
        raise NotFound("subject", subject_id)
    return found[1].name


@get("/health", operation_id="getHealth", tags=["service"], responses=problems())
async def health(db: Db) -> HealthOut:
    """Whether the database answers, and the positions of the log and of the views."""
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        seen = await views.checkpoint(conn)
    return HealthOut(status="ok", database=db.dialect, head_position=head, views_position=seen)


@get(
    "/subjects/{subject_id:str}/estimates",
    operation_id="getEstimates",
    tags=["subjects"],
    guards=READ,
    responses=problems(400, 401, 403, 404),
)
async def estimates(
    db: Db,
    subject_id: FromPath[str],
    metric: Annotated[str | None, QueryParameter(description="Only this metric, e.g. soldiers-sent")] = None,
) -> EstimatesOut:
    """The latest estimate of each source on a subject, with its status and who disputes or confirms it."""
    name = await _subject_name(db, subject_id)
    async with db.read() as conn:
        records = await queries.estimates_for(conn, subject_id, metric)
        sources = await present.source_names(conn, present.sources_of(records))
    return EstimatesOut(
        subject_id=subject_id,
        subject_name=name,
        metric=metric,
        estimates=[present.estimate_out(r, sources) for r in records],
    )


def _parse_cursor(cursor: str) -> tuple[dt.date, int]:
    day, _, position = cursor.partition("~")
    try:
        return dt.date.fromisoformat(day), int(position)
    except ValueError:
        raise BadRequest(
            "cursor", f"expected a cursor from a previous page's 'next' link, got {cursor!r}"
        ) from None


def _parse_kinds(kind: str | None) -> tuple[str, ...]:
    if not kind:
        return ()
    kinds = tuple(k.strip() for k in kind.split(",") if k.strip())
    unknown = [k for k in kinds if k not in TIMELINE_KINDS]
    if unknown:
        raise BadRequest("kind", f"expected some of {', '.join(TIMELINE_KINDS)}; got {', '.join(unknown)}")
    return kinds


@get(
    "/subjects/{subject_id:str}/timeline",
    operation_id="getTimeline",
    tags=["subjects"],
    guards=READ,
    responses=problems(400, 401, 403, 404),
)
async def subject_timeline(
    db: Db,
    request: Request[Any, Any, Any],
    subject_id: FromPath[str],
    limit: Limit = 50,
    cursor: Cursor = None,
    source: Annotated[str | None, QueryParameter(description="Only entries by this source")] = None,
    kind: Annotated[
        str | None,
        QueryParameter(description="Only these kinds, comma-separated: " + ", ".join(TIMELINE_KINDS)),
    ] = None,
    since: Annotated[dt.date | None, QueryParameter(description="Stated on or after this date")] = None,
    until: Annotated[dt.date | None, QueryParameter(description="Stated on or before this date")] = None,
) -> TimelineOut:
    """The subject's claims, revisions, denials, confirmations, evidence and retractions, in the order they
    were stated (log order breaks ties), a page at a time."""
    if since is not None and until is not None and since > until:
        raise BadRequest("since", f"since ({since}) is after until ({until})")
    name = await _subject_name(db, subject_id)
    where = TimelineFilter(source_id=source, kinds=_parse_kinds(kind), since=since, until=until)
    after = _parse_cursor(cursor) if cursor else None
    async with db.read() as conn:
        entries = await queries.timeline_page(conn, subject_id, after=after, limit=limit + 1, where=where)
        sources = await present.source_names(conn, (e.source_id for e in entries))
    page = entries[:limit]
    next_link = None
    if len(entries) > limit:
        last = page[-1]
        params = dict(request.query_params)
        params.update(limit=str(limit), cursor=f"{occurred_on(last).isoformat()}~{last.position}")
        next_link = f"{request.url.path}?{urlencode(params)}"
    return TimelineOut(
        subject_id=subject_id,
        subject_name=name,
        entries=[present.entry_out(e, sources) for e in page],
        next=next_link,
    )


def etag(version: int) -> str:
    """The ETag of a stream at a version: clients send it back in If-Match to write against it."""
    return f'"{version}"'


@get(
    "/claims/{claim_id:str}",
    operation_id="getClaim",
    tags=["claims"],
    guards=READ,
    responses=problems(401, 403, 404),
)
async def claim(db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str]) -> Response[ClaimOut]:
    """A claim's current figure, wording and status, and who disputes or confirms it. The ETag is its
    version; send it in If-Match when writing to the claim, or in If-None-Match to revalidate a cache."""
    async with db.read() as conn:
        record = await queries.claim(conn, claim_id)
        if record is None:
            raise NotFound("claim", claim_id)
        sources = await present.source_names(conn, present.sources_of([record]))
    tag = etag(record.claim.version)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == tag:
        return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers=headers)  # type: ignore[arg-type]
    return Response(present.claim_out(record, sources), headers=headers)


@get(
    "/claims/{claim_id:str}/history",
    operation_id="getClaimHistory",
    tags=["claims"],
    guards=READ,
    responses=problems(401, 403, 404),
)
async def claim_history(db: Db, claim_id: FromPath[str]) -> HistoryOut:
    """Every event of a claim in order, with stream versions and log positions, as first recorded."""
    async with db.read() as conn:
        recorded = await eventlog.read_stream(conn, f"claim-{claim_id}")
    if not recorded:
        raise NotFound("claim", claim_id)
    return HistoryOut(claim_id=claim_id, events=[present.event_out(e) for e in recorded])


@get("/events", operation_id="getEvents", tags=["log"], guards=READ, responses=problems(400, 401, 403))
async def events(
    db: Db,
    after: Annotated[int, QueryParameter(ge=0, description="Return events after this position")] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="At most this many")] = 100,
) -> EventsOut:
    """The global log in order, after a position."""
    async with db.read() as conn:
        recorded = await eventlog.read_all(conn, after=after, limit=limit)
        head = await eventlog.head_position(conn)
    last = recorded[-1].position if recorded else after
    return EventsOut(
        events=[present.event_out(e) for e in recorded],
        head_position=head,
        next=f"/events?after={last}&limit={limit}" if last < head else None,
    )


def _page(ids: list[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    """A page of ids after ``cursor`` (the last id of the previous page), and the next cursor."""
    start = [i for i in ids if cursor is None or i > cursor]
    page = start[:limit]
    return page, (page[-1] if len(start) > limit else None)


@get(
    "/subjects",
    operation_id="listSubjects",
    tags=["subjects"],
    guards=READ,
    responses=problems(400, 401, 403),
)
async def list_subjects(db: Db, limit: Limit = 100, cursor: Cursor = None) -> SubjectsOut:
    """Every subject, by id, a page at a time."""
    async with db.read() as conn:
        found = {r.subject_id: r for _, r in await queries.registrations_by_kind(conn, "subject")}  # type: ignore[union-attr]
    page, nxt = _page(sorted(found), cursor, limit)
    return SubjectsOut(
        subjects=[present.subject_out(found[i]) for i in page],
        next=f"/subjects?limit={limit}&cursor={nxt}" if nxt else None,
    )


@get("/sources", operation_id="listSources", tags=["sources"], guards=READ, responses=problems(400, 401, 403))
async def list_sources(
    db: Db,
    limit: Limit = 100,
    cursor: Cursor = None,
    kind: Annotated[str | None, QueryParameter(description="Only sources of this kind")] = None,
    country: Annotated[str | None, QueryParameter(description="Only sources of this country code")] = None,
) -> SourcesOut:
    """Every source, by id, optionally of one kind or country, a page at a time."""
    async with db.read() as conn:
        regs = [r for _, r in await queries.registrations_by_kind(conn, "source")]
    found = {
        r.source_id: r
        for r in regs
        if isinstance(r, SourceRegistered)
        and (kind is None or r.kind == kind)
        and (country is None or r.country == country)
    }
    page, nxt = _page(sorted(found), cursor, limit)
    params = {k: v for k, v in (("limit", str(limit)), ("kind", kind), ("country", country)) if v}
    return SourcesOut(
        sources=[present.source_out(found[i]) for i in page],
        next=f"/sources?{urlencode({**params, 'cursor': nxt})}" if nxt else None,
    )


@get(
    "/sources/{source_id:str}",
    operation_id="getSource",
    tags=["sources"],
    guards=READ,
    responses=problems(400, 401, 403, 404),
)
async def source_detail(
    db: Db,
    source_id: FromPath[str],
    limit: Limit = 100,
    cursor: Annotated[
        int | None, QueryParameter(ge=0, description="The 'next' cursor of the previous page")
    ] = None,
) -> SourceDetailOut:
    """A source, and the claims it made in the order they were recorded, each with what became of it."""
    async with db.read() as conn:
        found = await queries.registration(conn, f"source-{source_id}")
        if found is None:
            raise NotFound("source", source_id)
        records = await queries.claims_by_source(conn, source_id, after=cursor or 0, limit=limit + 1)
    page = records[:limit]
    nxt = page[-1].made_position if len(records) > limit else None
    return SourceDetailOut(
        source=present.source_out(found[1]),
        claims=[present.claim_summary(r) for r in page],
        next=f"/sources/{source_id}?limit={limit}&cursor={nxt}" if nxt else None,
    )


@get(
    "/documents",
    operation_id="listDocuments",
    tags=["documents"],
    guards=READ,
    responses=problems(400, 401, 403),
)
async def list_documents(db: Db, limit: Limit = 100, cursor: Cursor = None) -> DocumentsOut:
    """Every document, by id, a page at a time."""
    async with db.read() as conn:
        found = {r.document_id: r for _, r in await queries.registrations_by_kind(conn, "document")}  # type: ignore[union-attr]
    page, nxt = _page(sorted(found), cursor, limit)
    return DocumentsOut(
        documents=[present.document_out(found[i]) for i in page],
        next=f"/documents?limit={limit}&cursor={nxt}" if nxt else None,
    )


ROUTES = [
    health,
    estimates,
    subject_timeline,
    claim,
    claim_history,
    events,
    list_subjects,
    list_sources,
    source_detail,
    list_documents,
]
