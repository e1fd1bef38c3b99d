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
from timeline.api.problems import BadRequest
from timeline.api.schemas import (
    ClaimOut,
    EstimatesOut,
    EventsOut,
    HealthOut,
    HistoryOut,
    TimelineOut,
)
from timeline.app import queries, records
from timeline.app.queries import When
from timeline.domain.errors import InvalidValue
from timeline.domain.values import DATE_PATTERN, POSITION_MAX, parse_position
from timeline.projections import occurred_on
from timeline.store.database import Database
from timeline.store.queries import TimelineFilter

READ = [requires("read")]
NDJSON = "application/x-ndjson"
_line_encoder = msgspec.json.Encoder()

AsOf = Annotated[
    str | None,
    QueryParameter(
        pattern=DATE_PATTERN,
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


def _when(as_of: str | None, known_at: str | None) -> When | None:
    """The moment ``as_of`` and ``known_at`` name (None: now), checked before anything is read."""
    if as_of is None and known_at is None:
        return None
    valid_until = None
    if as_of is not None:
        try:
            valid_until = timetravel.period_end(as_of)
        except ValueError:
            raise BadRequest("as_of", f"{as_of!r} is not a calendar date") from None
    if known_at is None:
        return When(as_of=as_of, valid_until=valid_until)
    if known_at[:1].isdigit() and "-" not in known_at:
        # Checked against the log's head where the cut is placed (a position not yet reached is refused).
        position = parse_position(known_at, field="known_at")
        return When(as_of=as_of, valid_until=valid_until, known_position=position)
    return When(as_of=as_of, valid_until=valid_until, known_moment=_moment(known_at))


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


TIMELINE_KINDS = (
    "made",
    "revised",
    "denied",
    "confirmed",
    "retracted",
    "evidence",
    "denial_withdrawn",
    "statement",
)

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Items per page")]
Cursor = Annotated[str | None, QueryParameter(description="The 'next' cursor of the previous page")]


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
    # One statement, which needs no transaction around it.
    found = await queries.lookup(db, queries.health)
    faults.judge_health(request, found.head_position, found.standing, found.waiting_since, found.failures)
    return HealthOut(
        status="ok",
        database=db.dialect,
        head_position=found.head_position,
        views_position=found.views_position,
        projections=found.projections,
        signed_position=found.signed_position,
        unsigned_events=0 if found.unsigned is None else found.unsigned[1] - found.unsigned[0] + 1,
        unsigned_from=None if found.unsigned is None else found.unsigned[0],
        response_cache=cache.stats(request),
    )


@get(
    "/subjects/{subject_id:str}/estimates",
    operation_id="getEstimates",
    tags=["subjects"],
    middleware=READ,
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
    when = _when(as_of, known_at)

    async def build(conn: AsyncConnection) -> tuple[EstimatesOut, dict[str, str]]:
        found = await queries.estimates(conn, subject_id, metric, when)
        return present.estimates_out(subject_id, metric, as_of, found), {}

    return await cache.respond(request, db, build, conditional=when is None)


async def estimates_body(
    db: Database, subject_id: str, metric: str | None, as_of: str | None, known_at: str | None
) -> EstimatesOut:
    """The estimates view of a subject, now or at a cut (shared by the JSON route and the exports)."""
    when = _when(as_of, known_at)
    found = await queries.read(db, lambda conn: queries.estimates(conn, subject_id, metric, when))
    return present.estimates_out(subject_id, metric, as_of, found)


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


# Which date a timeline entry is filtered by: when it happened, where a claim says, else when it was stated.
_DATED = " (when it happened where the claim says, else when it was stated)"


@get(
    "/subjects/{subject_id:str}/timeline",
    operation_id="getTimeline",
    tags=["subjects"],
    middleware=READ,
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
    since: Annotated[dt.date | None, QueryParameter(description=f"On or after this date{_DATED}")] = None,
    until: Annotated[dt.date | None, QueryParameter(description=f"On or before this date{_DATED}")] = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> Response[TimelineOut]:
    """The subject's claims, revisions, denials, confirmations, evidence and retractions, in the order they
    were stated or, where a claim says, happened (log order breaks ties), a page at a time. ETag,
    Last-Modified and 304 as for estimates."""
    if since is not None and until is not None and since > until:
        raise BadRequest("since", f"since ({since}) is after until ({until})")
    where = TimelineFilter(source_id=source, kinds=_parse_kinds(kind), since=since, until=until)
    after = _parse_cursor(cursor) if cursor else None
    when = _when(as_of, known_at)

    async def build(conn: AsyncConnection) -> tuple[TimelineOut, dict[str, str]]:
        found = await queries.timeline(conn, subject_id, where, after, limit + 1, when)
        page = found.entries[:limit]
        next_link = None
        if len(found.entries) > limit:
            last = page[-1]
            params = dict(request.query_params)
            params.update(limit=str(limit), cursor=f"{occurred_on(last).isoformat()}~{last.position}")
            next_link = f"{request.url.path}?{urlencode(params)}"
        body = TimelineOut(
            subject_id=subject_id,
            subject_name=found.subject_name,
            entries=[present.entry_out(e, found.names, found.claims) for e in page],
            next=next_link,
            as_of=as_of,
            known_at_position=found.cut.known_position if found.cut else None,
        )
        return body, {}

    return await cache.respond(request, db, build, conditional=when is None)


async def timeline_entries(
    db: Database,
    subject_id: str,
    where: TimelineFilter,
    limit: int,
    as_of: str | None,
    known_at: str | None,
) -> queries.Timeline:
    """A subject's timeline (now or at a cut), for the exports."""
    when = _when(as_of, known_at)
    return await queries.read(db, lambda conn: queries.timeline(conn, subject_id, where, None, limit, when))


def etag(version: int) -> str:
    """The ETag of a stream at a version: clients send it back in If-Match to write against it."""
    return f'"{version}"'


@get(
    "/claims/{claim_id:str}",
    operation_id="getClaim",
    tags=["claims"],
    middleware=READ,
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
    when = _when(as_of, known_at)

    async def build(conn: AsyncConnection) -> tuple[ClaimOut, dict[str, str]]:
        found = await queries.claim(conn, claim_id, when)
        out = present.claim_out(found.record, found.names)
        if found.cut is not None:
            out = msgspec.structs.replace(out, as_of=as_of, known_at_position=found.cut.known_position)
            return out, {"Cache-Control": "no-cache"}
        return out, {"ETag": etag(found.record.claim.version), "Cache-Control": "no-cache"}

    return await cache.respond(request, db, build, conditional=False)


@get(
    "/claims/{claim_id:str}/history",
    operation_id="getClaimHistory",
    tags=["claims"],
    middleware=READ,
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
        recorded, titles = await records.history(conn, claim_id)
        entries = present.history(recorded, titles)
        if not proof:
            return HistoryOut(claim_id=claim_id, events=entries), {}
        proofs = await records.inclusion_proofs(conn, claim_id, [e.position for e in entries])
        if proofs is None:
            return HistoryOut(claim_id=claim_id, events=entries), {}
        for entry in entries:
            if entry.position in proofs.hashes:
                row, hashes = proofs.rows[entry.position], proofs.hashes[entry.position]
                entry.proof = present.event_proof(row, proofs.size, hashes)
        return HistoryOut(claim_id=claim_id, events=entries, checkpoint=proofs.note), {}

    return await cache.respond(request, db, build)


@get(
    "/events",
    operation_id="getEvents",
    tags=["log"],
    middleware=READ,
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
    recorded, head = await queries.read(db, lambda conn: records.log_page(conn, after, limit))
    last = recorded[-1].position if recorded else after
    return Response(
        EventsOut(
            events=[present.event_out(e) for e in recorded],
            head_position=head,
            next=f"/events?after={last}&limit={limit}" if last < head else None,
        )
    )


async def _ndjson(db: Database, after: int, limit: int) -> AsyncIterator[bytes]:
    async for batch in records.log_batches(db, after, limit):
        yield b"".join(_line_encoder.encode(present.event_out(e)) + b"\n" for e in batch)


ROUTES = [
    ping,
    health,
    estimates,
    subject_timeline,
    claim,
    claim_history,
    events,
]
