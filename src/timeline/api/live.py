"""Live updates: the log as Server-Sent Events, resumable with Last-Event-ID, filterable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from litestar import Request, get
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api import present
from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.api.problems import BadRequest
from timeline.api.settings import Settings
from timeline.domain.claims import ClaimEvent
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    EvidenceAttached,
    RecordCorrected,
)
from timeline.store import eventlog
from timeline.store.database import Database
from timeline.store.eventlog import RecordedEvent
from timeline.store.schema import claims

BATCH = 500
_encoder = msgspec.json.Encoder()


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a stream delivers: all, or those about one subject, claim or source."""

    subject: str | None = None
    claim: str | None = None
    source: str | None = None


async def _owners(conn: AsyncConnection, batch: list[RecordedEvent]) -> dict[str, tuple[str, str]]:
    """Each claim's (subject, source) as currently recorded, for the claims a batch touches."""
    ids = {e.event.claim_id for e in batch if isinstance(e.event, ClaimEvent)}
    if not ids:
        return {}
    result = await conn.execute(
        sa.select(claims.c.claim_id, claims.c.subject_id, claims.c.source_id).where(
            claims.c.claim_id.in_(ids)
        )
    )
    return {row[0]: (row[1], row[2]) for row in result}


def _matches(e: RecordedEvent, where: Filter, owners: dict[str, tuple[str, str]]) -> bool:
    event = e.event
    if not isinstance(event, ClaimEvent):
        if where.claim is not None:
            return False
        if where.subject is not None:
            return e.stream_id == f"subject-{where.subject}"
        if where.source is not None:
            return e.stream_id == f"source-{where.source}"
        return True
    subject, maker = owners.get(event.claim_id, (None, None))
    if isinstance(event, ClaimMade):
        subject, maker = event.subject_id, event.source_id
    if where.claim is not None and event.claim_id != where.claim:
        return False
    if where.subject is not None and subject != where.subject:
        return False
    if where.source is not None:
        involved = {maker}
        if isinstance(event, ClaimDenied):
            involved.add(event.denied_by)
        elif isinstance(event, ClaimConfirmed):
            involved.add(event.confirmed_by)
        elif isinstance(event, EvidenceAttached):
            involved.add(event.produced_by)
        elif isinstance(event, RecordCorrected) and event.changes.source_id:
            involved.add(event.changes.source_id)
        return where.source in involved
    return True


async def follow(
    db: Database, after: int, where: Filter, keepalive: float
) -> AsyncIterator[ServerSentEventMessage]:
    """Every event after ``after`` that matches, then each new one as it commits; a comment when idle."""
    position = after
    while True:
        generation = db.notifier.generation
        async with db.read() as conn:
            batch = await eventlog.read_all(conn, after=position, limit=BATCH)
            owners = await _owners(conn, batch)
        for e in batch:
            position = e.position
            if _matches(e, where, owners):
                yield ServerSentEventMessage(
                    data=_encoder.encode(present.event_out(e)).decode(), id=e.position, event=e.type
                )
        if len(batch) == BATCH:
            continue
        if not await db.notifier.wait(generation, keepalive):
            # Also the moment to look again: a notification lost with a dropped connection costs one interval.
            yield ServerSentEventMessage(comment="keep-alive", data=None)


@get(
    "/events/stream",
    operation_id="streamEvents",
    tags=["log"],
    guards=[requires("read")],
    responses=problems(400, 401, 403),
)
async def stream(
    db: Db,
    request: Request[Any, Any, Any],
    after: Annotated[
        int | None,
        QueryParameter(ge=0, description="Start after this position (Last-Event-ID takes precedence)"),
    ] = None,
    subject: Annotated[str | None, QueryParameter(description="Only events about this subject")] = None,
    claim: Annotated[str | None, QueryParameter(description="Only events of this claim")] = None,
    source: Annotated[
        str | None, QueryParameter(description="Only events made by or involving this source")
    ] = None,
) -> ServerSentEvent:
    """New events as Server-Sent Events, each with its log position as the SSE id. Reconnect with
    Last-Event-ID (browsers do it for you) to get everything missed, then live ones: no gap, no duplicate.
    Without a position, the stream starts at the current head. Idle streams get a keep-alive comment."""
    settings: Settings = request.app.state.settings
    last = request.headers.get("last-event-id")
    if last is not None and not last.isdigit():
        raise BadRequest("Last-Event-ID", f"expected a log position from an earlier event's id, got {last!r}")
    start = int(last) if last is not None else after
    if start is None:
        async with db.read() as conn:
            start = await eventlog.head_position(conn)
    where = Filter(subject=subject, claim=claim, source=source)
    return ServerSentEvent(
        follow(db, start, where, settings.keepalive_seconds),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ROUTES = [stream]
