"""Read routes: estimates, timelines, claims, the log, and lists of subjects, sources and documents."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import timetravel
from timeline.api import cache, faults, present
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
    SourceActivityOut,
    SourceDetailOut,
    SourceRef,
    SourcesOut,
    SubjectsOut,
    TimelineOut,
)
from timeline.domain.claims import Registration, registration_id
from timeline.domain.errors import InvalidValue
from timeline.domain.events import DocumentRegistered, SourceRegistered, SubjectRegistered
from timeline.domain.values import POSITION_MAX, parse_position
from timeline.projections import ClaimRecord, TimelineEntry, Views, occurred_on
from timeline.store import activity, audit, eventlog, projector, queries, travel, tree, views
from timeline.store.database import Database
from timeline.store.queries import TimelineFilter

READ = [requires("read")]
NDJSON = "application/x-ndjson"
_line_encoder = msgspec.json.Encoder()

AsOf = Annotated[
    str | None,
    QueryParameter(
        pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
        description="Valid time: only what sources had said by this date (YYYY, YYYY-MM or YYYY-MM-DD; "
        "a partial date means the end of that period)",
    ),
]
KnownAt = Annotated[
    str | None,
    QueryParameter(
        description="Transaction time: only what timeline had recorded by then, as a log position (e.g. 27) "
        "or an ISO 8601 time (e.g. 2024-10-22T08:00:00Z; a date means the end of that day, UTC)",
    ),
]


class Cut(msgspec.Struct, frozen=True, kw_only=True):
    """A moment on both time axes; views at a cut are folded from the log, not read from view tables."""

    as_of: str | None
    valid_until: dt.date | None
    known_position: int


async def _cut(conn: AsyncConnection, as_of: str | None, known_at: str | None) -> Cut | None:
    if as_of is None and known_at is None:
        return None
    valid_until = None
    if as_of is not None:
        try:
            valid_until = timetravel.period_end(as_of)
        except ValueError:
            raise BadRequest("as_of", f"{as_of!r} is not a calendar date") from None
    head = await eventlog.head_position(conn)
    position = head
    if known_at is not None:
        if known_at[:1].isdigit() and "-" not in known_at:
            position = parse_position(known_at, field="known_at")
            if position > head:
                # Not silently the head: a position not yet reached names no state anyone was shown.
                raise BadRequest("known_at", f"the log ends at position {head}; got {position}")
        else:
            position = await eventlog.position_at(conn, _moment(known_at))
    return Cut(as_of=as_of, valid_until=valid_until, known_position=position)


def _moment(text: str) -> dt.datetime:
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            "known_at",
            f"expected a log position (e.g. 27) or an ISO 8601 time (e.g. 2024-10-22T08:00:00Z), "
            f"got {text!r}",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


async def _views_at(
    conn: AsyncConnection, cut: Cut, stream_id: str | None = None, subject_id: str | None = None
) -> Views:
    if subject_id is None:
        assert stream_id is not None
        return await travel.stream_views(conn, stream_id, cut.known_position, cut.valid_until)
    return await travel.subject_views(conn, subject_id, cut.known_position, cut.valid_until)


def _names(views: Views) -> dict[str, SourceRef]:
    """Source names as registered (and amended) in folded views, for responses at a cut."""
    return {
        reg.source_id: SourceRef(id=reg.source_id, name=reg.name)
        for _, reg in views.registrations.values()
        if isinstance(reg, SourceRegistered)
    }


class _Names(dict[str, SourceRef]):
    """Names at a cut; a source unknown at the cut is shown by its id."""

    def __missing__(self, key: str) -> SourceRef:
        return SourceRef(id=key, name=key)


TIMELINE_KINDS = ("made", "revised", "denied", "confirmed", "retracted", "evidence")

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Items per page")]
Cursor = Annotated[str | None, QueryParameter(description="The 'next' cursor of the previous page")]


async def _subject_name(conn: AsyncConnection, subject_id: str) -> str:
    found = await queries.registration(conn, f"subject-{subject_id}")
    if found is None or not isinstance(found[1], SubjectRegistered):
        raise NotFound("subject", subject_id)
    return found[1].name


class Pong(msgspec.Struct, kw_only=True):
    """A constant answer."""

    ok: bool


@get("/ping", operation_id="ping", tags=["service"], responses=problems())
async def ping() -> Pong:
    """A constant small answer without touching the database: liveness, and the benchmarks' HTTP ceiling."""
    return Pong(ok=True)


@get("/health", operation_id="getHealth", tags=["service"], responses=problems(503))
async def health(db: Db, request: Request[Any, Any, Any]) -> HealthOut:
    """Whether the database answers, the log's head, and the position each projection has reached (the
    views follow the log in the same transaction; asynchronous projections may lag a moment). 503 when
    the views are past the log's head or an asynchronous projection has stalled, saying which."""
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        standing = await projector.standing(conn)
        behind = standing.get(activity.name, (0, None))[0]
        next_recorded = await projector.recorded_after(conn, behind) if behind < head else None
    seen = {name: position for name, (position, _) in standing.items()}
    faults.judge_health(request, head, standing, {activity.name: next_recorded})
    return HealthOut(
        status="ok",
        database=db.dialect,
        head_position=head,
        views_position=seen.get(views.CHECKPOINT, 0),
        projections={name: seen.get(name, 0) for name in (views.CHECKPOINT, activity.name)},
        response_cache=cache.stats(request),
    )


@get(
    "/subjects/{subject_id:str}/estimates",
    operation_id="getEstimates",
    tags=["subjects"],
    guards=READ,
    responses=problems(400, 401, 403, 404),
)
async def estimates(
    db: Db,
    request: Request[Any, Any, Any],
    subject_id: FromPath[str],
    metric: Annotated[str | None, QueryParameter(description="Only this metric, e.g. soldiers-sent")] = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> Response[EstimatesOut]:
    """The latest estimate of each source on a subject, with its status and who disputes or confirms it;
    at any moment with ``as_of`` and ``known_at``. The current view carries ETag and Last-Modified from the
    log position it reflects; a conditional GET that is still current gets 304."""

    async def build(conn: AsyncConnection) -> tuple[EstimatesOut, dict[str, str]]:
        return await _estimates_in(conn, subject_id, metric, as_of, known_at), {}

    return await cache.respond(request, db, build, conditional=as_of is None and known_at is None)


async def estimates_body(
    db: Database, subject_id: str, metric: str | None, as_of: str | None, known_at: str | None
) -> EstimatesOut:
    """The estimates view of a subject, now or at a cut (shared by the JSON route and the exports)."""
    async with db.read() as conn:
        return await _estimates_in(conn, subject_id, metric, as_of, known_at)


async def _estimates_in(
    conn: AsyncConnection, subject_id: str, metric: str | None, as_of: str | None, known_at: str | None
) -> EstimatesOut:
    name = await _subject_name(conn, subject_id)  # in the same snapshot as the view it names
    cut = await _cut(conn, as_of, known_at)
    if cut is None:
        records = await queries.estimates_for(conn, subject_id, metric)
        sources: dict[str, SourceRef] = await present.source_names(conn, present.sources_of(records))
    else:
        views = await _views_at(conn, cut, subject_id=subject_id)
        chosen = sorted(
            (key, claim_id)
            for key, claim_id in views.estimates.items()
            if claim_id is not None and key[0] == subject_id and metric in (None, key[1])
        )
        records = [views.claims[claim_id] for _, claim_id in chosen]
        sources = _Names(_names(views))
    return EstimatesOut(
        subject_id=subject_id,
        subject_name=name,
        metric=metric,
        estimates=[present.estimate_out(r, sources) for r in records],
        as_of=as_of,
        known_at_position=cut.known_position if cut else None,
    )


def _parse_cursor(cursor: str) -> tuple[dt.date, int]:
    day, _, position = cursor.partition("~")
    try:
        return dt.date.fromisoformat(day), parse_position(position, field="cursor")
    except (ValueError, InvalidValue):
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
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> Response[TimelineOut]:
    """The subject's claims, revisions, denials, confirmations, evidence and retractions, in the order they
    were stated (log order breaks ties), a page at a time. ETag, Last-Modified and 304 as for estimates."""
    if since is not None and until is not None and since > until:
        raise BadRequest("since", f"since ({since}) is after until ({until})")
    where = TimelineFilter(source_id=source, kinds=_parse_kinds(kind), since=since, until=until)
    after = _parse_cursor(cursor) if cursor else None

    async def build(conn: AsyncConnection) -> tuple[TimelineOut, dict[str, str]]:
        name, entries, sources, cut, claim_records = await _timeline_in(
            conn, subject_id, where, after, limit + 1, as_of, known_at
        )
        page = entries[:limit]
        next_link = None
        if len(entries) > limit:
            last = page[-1]
            params = dict(request.query_params)
            params.update(limit=str(limit), cursor=f"{occurred_on(last).isoformat()}~{last.position}")
            next_link = f"{request.url.path}?{urlencode(params)}"
        body = TimelineOut(
            subject_id=subject_id,
            subject_name=name,
            entries=[present.entry_out(e, sources, claim_records) for e in page],
            next=next_link,
            as_of=as_of,
            known_at_position=cut.known_position if cut else None,
        )
        return body, {}

    return await cache.respond(request, db, build, conditional=as_of is None and known_at is None)


async def timeline_entries(
    db: Database,
    subject_id: str,
    where: TimelineFilter,
    after: tuple[dt.date, int] | None,
    limit: int,
    as_of: str | None,
    known_at: str | None,
) -> tuple[str, list[TimelineEntry], dict[str, SourceRef], Cut | None, dict[str, ClaimRecord]]:
    """A subject's name and timeline entries (now or at a cut) with their sources' names and claims."""
    async with db.read() as conn:
        return await _timeline_in(conn, subject_id, where, after, limit, as_of, known_at)


async def _timeline_in(
    conn: AsyncConnection,
    subject_id: str,
    where: TimelineFilter,
    after: tuple[dt.date, int] | None,
    limit: int,
    as_of: str | None,
    known_at: str | None,
) -> tuple[str, list[TimelineEntry], dict[str, SourceRef], Cut | None, dict[str, ClaimRecord]]:
    name = await _subject_name(conn, subject_id)  # in the same snapshot as the view it names
    cut = await _cut(conn, as_of, known_at)
    if cut is None:
        entries = await queries.timeline_page(conn, subject_id, after=after, limit=limit, where=where)
        sources: dict[str, SourceRef] = await present.source_names(conn, (e.source_id for e in entries))
        claim_records = await queries.claims_among(conn, (e.claim_id for e in entries))
    else:
        views = await _views_at(conn, cut, subject_id=subject_id)
        entries = _timeline_at(views, subject_id, where, after)[:limit]
        sources = _Names(_names(views))
        claim_records = views.claims
    return name, entries, sources, cut, claim_records


def _timeline_at(
    views: Views, subject_id: str, where: TimelineFilter, after: tuple[dt.date, int] | None
) -> list[TimelineEntry]:
    entries = sorted(
        (
            e
            for e in views.timeline.values()
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


def _when(cut: Cut) -> str:
    parts = [f"as of {cut.as_of}"] if cut.as_of else []
    return " and ".join([*parts, f"known at position {cut.known_position}"])


def etag(version: int) -> str:
    """The ETag of a stream at a version: clients send it back in If-Match to write against it."""
    return f'"{version}"'


@get(
    "/claims/{claim_id:str}",
    operation_id="getClaim",
    tags=["claims"],
    guards=READ,
    responses=problems(400, 401, 403, 404),
)
async def claim(
    db: Db,
    request: Request[Any, Any, Any],
    claim_id: FromPath[str],
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> Response[ClaimOut]:
    """A claim's current figure, wording and status, and who disputes or confirms it. The ETag is its
    version; send it in If-Match when writing to the claim, or in If-None-Match to revalidate a cache.
    With ``as_of`` / ``known_at``, the claim as it stood then (folded from the log; no ETag)."""

    async def build(conn: AsyncConnection) -> tuple[ClaimOut, dict[str, str]]:
        cut = await _cut(conn, as_of, known_at)
        if cut is not None:
            views = await _views_at(conn, cut, stream_id=f"claim-{claim_id}")
            at = views.claims.get(claim_id)
            if at is None:
                raise NotFound("claim", claim_id, when=_when(cut))
            names = await present.source_names(conn, present.sources_of([at]))
            out = msgspec.structs.replace(
                present.claim_out(at, names), as_of=as_of, known_at_position=cut.known_position
            )
            return out, {"Cache-Control": "no-cache"}
        record = await queries.claim(conn, claim_id)
        if record is None:
            raise NotFound("claim", claim_id)
        sources = await present.source_names(conn, present.sources_of([record]))
        headers = {"ETag": etag(record.claim.version), "Cache-Control": "no-cache"}
        return present.claim_out(record, sources), headers

    return await cache.respond(request, db, build, conditional=False)


@get(
    "/claims/{claim_id:str}/history",
    operation_id="getClaimHistory",
    tags=["claims"],
    guards=READ,
    responses=problems(400, 401, 403, 404),
)
async def claim_history(
    db: Db,
    request: Request[Any, Any, Any],
    claim_id: FromPath[str],
    proof: Annotated[
        bool, QueryParameter(description="Add each event as stored, with its inclusion proof")
    ] = False,
) -> Response[HistoryOut]:
    """Every event of a claim in order, as first recorded: its version and position, who recorded it from
    which document, what it changed in the claim as shown at the time, and its later corrections. With
    ``proof=true``, also the latest signed checkpoint and each event's inclusion proof against it. ETag,
    Last-Modified and 304 as for estimates."""

    async def build(conn: AsyncConnection) -> tuple[HistoryOut, dict[str, str]]:
        recorded = await eventlog.read_stream(conn, f"claim-{claim_id}")
        if not recorded:
            raise NotFound("claim", claim_id)
        ids = {d for r in recorded for d in getattr(r.event, "document_ids", ())}
        found = await queries.registrations_among(conn, (f"document-{d}" for d in ids))
        titles = {reg.document_id: reg.title for reg in found.values() if isinstance(reg, DocumentRegistered)}
        entries = present.history(recorded, titles)
        if not proof:
            return HistoryOut(claim_id=claim_id, events=entries), {}
        latest = await tree.latest_checkpoint(conn)
        if latest is None:
            return HistoryOut(claim_id=claim_id, events=entries), {}
        stored = {r.position: r for r in await audit.stream_rows(conn, f"claim-{claim_id}")}
        for entry in entries:
            if entry.position <= latest.size:
                hashes = await tree.inclusion(conn, entry.position - 1, latest.size)
                entry.proof = present.event_proof(stored[entry.position], latest.size, tree.b64(hashes))
        return HistoryOut(claim_id=claim_id, events=entries, checkpoint=latest.note), {}

    return await cache.respond(request, db, build)


@get(
    "/events",
    operation_id="getEvents",
    tags=["log"],
    guards=READ,
    responses=problems(400, 401, 403),
)
async def events(
    db: Db,
    request: Request[Any, Any, Any],
    after: Annotated[
        int, QueryParameter(ge=0, le=POSITION_MAX, description="Return events after this position")
    ] = 0,
    limit: Annotated[
        int, QueryParameter(ge=1, le=100_000, description="At most this many (1000 for JSON)")
    ] = 100,
) -> Response[EventsOut] | Stream:
    """The global log in order, after a position. With ``Accept: application/x-ndjson`` the same events are
    streamed one JSON object a line (and ``limit`` may go up to 100000)."""
    if NDJSON in request.headers.get("accept", ""):
        return Stream(_ndjson(db, after, limit), media_type=NDJSON)
    if limit > MAX_LIMIT:
        raise BadRequest(
            "limit", f"at most {MAX_LIMIT} events a page as JSON (ask for {NDJSON} to stream more)"
        )
    async with db.read() as conn:
        recorded = await eventlog.read_all(conn, after=after, limit=limit)
        head = await eventlog.head_position(conn)
    last = recorded[-1].position if recorded else after
    return Response(
        EventsOut(
            events=[present.event_out(e) for e in recorded],
            head_position=head,
            next=f"/events?after={last}&limit={limit}" if last < head else None,
        )
    )


async def _ndjson(db: Database, after: int, limit: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < limit:
        async with db.read() as conn:
            batch = await eventlog.read_all(conn, after=after, limit=min(MAX_LIMIT, limit - sent))
        if not batch:
            return
        yield b"".join(_line_encoder.encode(present.event_out(e)) + b"\n" for e in batch)
        sent += len(batch)
        after = batch[-1].position


async def _registered(conn: AsyncConnection, kind: str) -> dict[str, Registration]:
    """Every registered subject, source or document (``kind``), by its id."""
    return {registration_id(r): r for _, r in await queries.registrations_by_kind(conn, kind)}


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
async def list_subjects(
    db: Db, request: Request[Any, Any, Any], limit: Limit = 100, cursor: Cursor = None
) -> Response[SubjectsOut]:
    """Every subject, by id, a page at a time."""

    async def build(conn: AsyncConnection) -> tuple[SubjectsOut, dict[str, str]]:
        found = await _registered(conn, "subject")
        page, nxt = _page(sorted(found), cursor, limit)
        return SubjectsOut(
            subjects=[present.subject_out(found[i]) for i in page],
            next=f"/subjects?limit={limit}&cursor={nxt}" if nxt else None,
        ), {}

    return await cache.respond(request, db, build)


@get("/sources", operation_id="listSources", tags=["sources"], guards=READ, responses=problems(400, 401, 403))
async def list_sources(
    db: Db,
    request: Request[Any, Any, Any],
    limit: Limit = 100,
    cursor: Cursor = None,
    kind: Annotated[str | None, QueryParameter(description="Only sources of this kind")] = None,
    country: Annotated[str | None, QueryParameter(description="Only sources of this country code")] = None,
) -> Response[SourcesOut]:
    """Every source, by id, optionally of one kind or country, a page at a time."""

    async def build(conn: AsyncConnection) -> tuple[SourcesOut, dict[str, str]]:
        found = {
            ident: r
            for ident, r in (await _registered(conn, "source")).items()
            if isinstance(r, SourceRegistered)
            and (kind is None or r.kind == kind)
            and (country is None or r.country == country)
        }
        page, nxt = _page(sorted(found), cursor, limit)
        params = {k: v for k, v in (("limit", str(limit)), ("kind", kind), ("country", country)) if v}
        return SourcesOut(
            sources=[present.source_out(found[i]) for i in page],
            next=f"/sources?{urlencode({**params, 'cursor': nxt})}" if nxt else None,
        ), {}

    return await cache.respond(request, db, build)


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
        int | None,
        QueryParameter(ge=0, le=POSITION_MAX, description="The 'next' cursor of the previous page"),
    ] = None,
) -> SourceDetailOut:
    """A source, and the claims it made in the order they were recorded, each with what became of it."""
    async with db.read() as conn:
        found = await queries.registration(conn, f"source-{source_id}")
        if found is None:
            raise NotFound("source", source_id)
        records = await queries.claims_by_source(conn, source_id, after=cursor or 0, limit=limit + 1)
        counts = await activity.of(conn, source_id)
    page = records[:limit]
    nxt = page[-1].made_position if len(records) > limit else None
    return SourceDetailOut(
        source=present.source_out(found[1]),
        claims=[present.claim_summary(r) for r in page],
        next=f"/sources/{source_id}?limit={limit}&cursor={nxt}" if nxt else None,
        activity=SourceActivityOut(**counts) if counts else None,
    )


@get(
    "/documents",
    operation_id="listDocuments",
    tags=["documents"],
    guards=READ,
    responses=problems(400, 401, 403),
)
async def list_documents(
    db: Db, request: Request[Any, Any, Any], limit: Limit = 100, cursor: Cursor = None
) -> Response[DocumentsOut]:
    """Every document, by id, a page at a time."""

    async def build(conn: AsyncConnection) -> tuple[DocumentsOut, dict[str, str]]:
        found = await _registered(conn, "document")
        page, nxt = _page(sorted(found), cursor, limit)
        return DocumentsOut(
            documents=[present.document_out(found[i]) for i in page],
            next=f"/documents?limit={limit}&cursor={nxt}" if nxt else None,
        ), {}

    return await cache.respond(request, db, build)


ROUTES = [
    ping,
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
