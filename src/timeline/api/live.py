"""Live updates: the log as Server-Sent Events, resumable with Last-Event-ID, filterable."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import QueryParameter
from litestar.response import Stream

from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.api.fanout import Filter, Hub, follow, read_items
from timeline.api.settings import Settings
from timeline.app import queries
from timeline.domain.values import POSITION_MAX, parse_position


@get(
    "/events/stream",
    operation_id="streamEvents",
    tags=["log"],
    middleware=[requires("read")],
    media_type="text/event-stream",
    responses=problems(400, 401, 403),
)
async def stream(
    db: Db,
    request: Request[Any, Any, Any],
    after: Annotated[
        int | None,
        QueryParameter(
            ge=0, le=POSITION_MAX, description="Start after this position (Last-Event-ID takes precedence)"
        ),
    ] = None,
    subject: Annotated[str | None, QueryParameter(description="Only events about this subject")] = None,
    claim: Annotated[str | None, QueryParameter(description="Only events of this claim")] = None,
    source: Annotated[
        str | None, QueryParameter(description="Only events made by or involving this source")
    ] = None,
) -> Stream:
    """New events as Server-Sent Events, each with its log position as the SSE id. Reconnect with
    Last-Event-ID (browsers do it for you) to get everything missed, then live ones: no gap, no duplicate.
    Without a position, the stream starts at the current head. Idle streams get a keep-alive comment."""
    settings: Settings = request.app.state.settings
    last = request.headers.get("last-event-id")
    start = parse_position(last, field="Last-Event-ID") if last is not None else after
    if start is None:
        start = await queries.read(db, queries.head_position)
    where = Filter(subject=subject, claim=claim, source=source)
    # With public reads off, the stream ends within seconds of its token being revoked.
    secret = None if settings.public_reads else request.headers.get("authorization", "").partition(" ")[2]
    hub: Hub = request.app.state.hub
    if hub.unreadable is not None and start < hub.unreadable.position:
        raise hub.unreadable
    if hub.after(start, where.key) is None:
        # Behind the live window: what the stream sends first is read here, so an event this version cannot
        # read is a 422 naming it rather than a stream that ends at once.
        await read_items(db, start)
    # Each event arrives already encoded (once, for every stream): sent as it is, not re-wrapped.
    return Stream(
        follow(hub, start, where, settings.keepalive_seconds, secret.strip() if secret else None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


ROUTES = [stream]
