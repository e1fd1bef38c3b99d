"""The Litestar application: routes, dependencies and error mapping, built by ``create_app``."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema, Tag
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK

from timeline import __version__
from timeline.api import present
from timeline.api.problems import HANDLERS, PROBLEM_JSON, BadRequest, NotFound
from timeline.api.schemas import (
    ClaimOut,
    EstimatesOut,
    EventsOut,
    HealthOut,
    HistoryOut,
    ImportOut,
    Problem,
    TimelineOut,
)
from timeline.domain.events import SubjectRegistered
from timeline.importer import LoadedFixture, import_fixtures
from timeline.projections import occurred_on
from timeline.store import eventlog, queries, views
from timeline.store.database import Database

MAX_LIMIT = 1000
_PROBLEM_DESCRIPTIONS = {
    400: "Invalid request parameters",
    404: "Unknown subject or claim",
    409: "Conflicts with what is already recorded; nothing was recorded",
    422: "Invalid fixture or claim; nothing was recorded",
}


def _problems(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem+json errors a route can answer with."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=_PROBLEM_DESCRIPTIONS[code],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in codes
    }


Db = NamedDependency[Database]


async def _subject_name(db: Database, subject_id: str) -> str:
    async with db.read() as conn:
        found = await queries.registration(conn, f"subject-{subject_id}")
    if found is None or not isinstance(found[1], SubjectRegistered):
        raise NotFound("subject", subject_id)
    return found[1].name


@get("/health", operation_id="getHealth", tags=["service"], responses=_problems())
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
    responses=_problems(400, 404),
)
async def estimates(
    db: Db,
    subject_id: FromPath[str],
    metric: Annotated[str | None, QueryParameter(description="Only this metric, e.g. soldiers-sent")] = None,
) -> EstimatesOut:
    """The latest estimate of each source on a subject, with its status and who disputes it."""
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


@get(
    "/subjects/{subject_id:str}/timeline",
    operation_id="getTimeline",
    tags=["subjects"],
    responses=_problems(400, 404),
)
async def subject_timeline(
    db: Db,
    request: Request[Any, Any, Any],
    subject_id: FromPath[str],
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Entries per page")] = 50,
    cursor: Annotated[str | None, QueryParameter(description="From a previous page's 'next'")] = None,
) -> TimelineOut:
    """The subject's claims, revisions, denials and retractions in the order they were stated."""
    name = await _subject_name(db, subject_id)
    after = _parse_cursor(cursor) if cursor else None
    async with db.read() as conn:
        entries = await queries.timeline_page(conn, subject_id, after=after, limit=limit + 1)
        sources = await present.source_names(conn, (e.source_id for e in entries))
    page, more = entries[:limit], len(entries) > limit
    next_link = None
    if more:
        last = page[-1]
        next_link = f"{request.url.path}?limit={limit}&cursor={occurred_on(last).isoformat()}~{last.position}"
    return TimelineOut(
        subject_id=subject_id,
        subject_name=name,
        entries=[present.entry_out(e, sources) for e in page],
        next=next_link,
    )


@get("/claims/{claim_id:str}", operation_id="getClaim", tags=["claims"], responses=_problems(404))
async def claim(db: Db, claim_id: FromPath[str]) -> ClaimOut:
    """A claim's current figure, wording and status, and who disputes it."""
    async with db.read() as conn:
        record = await queries.claim(conn, claim_id)
        if record is None:
            raise NotFound("claim", claim_id)
        sources = await present.source_names(conn, present.sources_of([record]))
    return present.claim_out(record, sources)


@get(
    "/claims/{claim_id:str}/history",
    operation_id="getClaimHistory",
    tags=["claims"],
    responses=_problems(404),
)
async def claim_history(db: Db, claim_id: FromPath[str]) -> HistoryOut:
    """Every event of a claim in order, with stream versions and log positions."""
    async with db.read() as conn:
        recorded = await eventlog.read_stream(conn, f"claim-{claim_id}")
    if not recorded:
        raise NotFound("claim", claim_id)
    return HistoryOut(claim_id=claim_id, events=[present.event_out(e) for e in recorded])


@get("/events", operation_id="getEvents", tags=["log"], responses=_problems(400))
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


@dataclass
class _ImportOperation(Operation):
    """Documents the raw fixture body, which the handler reads itself so YAML needs no JSON decoding."""

    def __post_init__(self) -> None:
        text = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        self.request_body = RequestBody(
            content={"application/yaml": text, "application/json": text},
            description="One fixture, as in fixtures/*.yaml; its JSON Schema is fixtures/schema.json.",
            required=True,
        )


@post(
    "/imports",
    operation_id="createImport",
    tags=["log"],
    status_code=HTTP_200_OK,
    operation_class=_ImportOperation,
    responses=_problems(400, 409, 422),
)
async def create_import(
    db: Db,
    request: Request[Any, Any, Any],
    name: Annotated[
        str, QueryParameter(description="A name for the fixture, used in errors and event metadata")
    ] = "request body",
) -> ImportOut:
    """Import one fixture (YAML or JSON body), atomically; importing it again adds nothing."""
    body = await request.body()
    [result] = await import_fixtures(db, [LoadedFixture(name, body)], recorded_by="api")
    return ImportOut(
        document_id=result.document_id,
        import_id=result.import_id,
        appended=result.appended,
        unchanged=result.unchanged,
        first_position=result.first_position,
        last_position=result.last_position,
    )


def create_app(db: Database) -> Litestar:
    """Build the application around a database (which the caller has migrated)."""

    async def provide_db() -> Database:
        return db

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await db.dispose()

    return Litestar(
        route_handlers=[
            health,
            estimates,
            subject_timeline,
            claim,
            claim_history,
            events,
            create_import,
        ],
        dependencies={"db": Provide(provide_db)},
        exception_handlers=HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="timeline",
            version=__version__,
            description="An event-sourced ledger of attributed claims.",
            tags=[
                Tag(name="subjects", description="Estimates and timelines of a subject"),
                Tag(name="claims", description="Claims and their history"),
                Tag(name="log", description="The event log itself"),
                Tag(name="service", description="Service health"),
            ],
        ),
    )
