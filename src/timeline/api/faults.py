"""Faults of the store answered as problem+json: a busy database, an event this version cannot read."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY
from litestar.types import ExceptionHandlersMap

from timeline.api.problems import _problem
from timeline.api.schemas import Problem
from timeline.store.eventlog import UnreadableEvent


def unreadable(request: Request[Any, Any, Any], exc: UnreadableEvent) -> Response[bytes]:
    """422 naming the position: the request is fine, but what it asks for passes through that event."""
    return _problem(
        request,
        Problem(
            title="Unreadable event",
            status=HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"{exc}; `timeline verify` tells whether the row was altered",
        ),
    )


def unreadable_frame(exc: UnreadableEvent) -> bytes:
    """The last frame of an event stream that reached an event it cannot send (a stream cannot change its
    status once open): an ``error`` event with the problem, and no id, so a reconnect resumes before it."""
    problem = Problem(title="Unreadable event", status=HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc))
    return b"event: error\ndata: %s\n\n" % msgspec.json.encode(problem)


HANDLERS: ExceptionHandlersMap = {UnreadableEvent: unreadable}
