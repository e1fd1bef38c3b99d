"""Faults of the store answered as problem+json: a busy database, an event this version cannot read."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ExceptionHandlersMap

from timeline.api.problems import _problem
from timeline.api.schemas import Problem, ProblemItem
from timeline.api.settings import Settings
from timeline.store import views
from timeline.store.eventlog import UnreadableEvent
from timeline.store.projector import Worker


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


class Unhealthy(Exception):
    """What /health found wrong: one line per view or projection, naming it."""

    def __init__(self, findings: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in findings))
        self.findings = findings


def judge_health(
    request: Request[Any, Any, Any],
    head: int,
    standing: dict[str, tuple[int, dt.datetime | None]],
    next_recorded: dict[str, dt.datetime | None],
) -> None:
    """Raise ``Unhealthy`` when the views are past the log's head (events removed behind timeline's back)
    or an asynchronous projection has stalled: failing in this process, or not moved for the stall time
    while the event after it waits."""
    settings: Settings = request.app.state.settings
    worker: Worker = request.app.state.projections
    findings: list[tuple[str, str]] = []
    views_at = standing.get(views.CHECKPOINT, (0, None))[0]
    if views_at > head:
        findings.append(
            (
                views.CHECKPOINT,
                f"the views are at position {views_at}, past the log's head {head}: events were removed "
                "behind timeline's back (`timeline verify` says where)",
            )
        )
    now = dt.datetime.now(dt.UTC)
    # A process that has just started has not had the stall time to move anything.
    started = now - dt.timedelta(seconds=time.monotonic() - request.app.state.started)
    for name, waiting in next_recorded.items():
        position, moved = standing.get(name, (0, None))
        if name in worker.failing:
            findings.append(
                (name, f"projection {name} is stuck after position {position}: {worker.failing[name]}")
            )
        elif waiting is not None:
            since = max(waiting, moved or waiting, started)
            idle = (now - since).total_seconds()
            if idle > settings.stall_seconds:
                findings.append(
                    (
                        name,
                        f"projection {name} has not moved from position {position} for {idle:.0f} s "
                        f"while the log is at {head}",
                    )
                )
    if findings:
        raise Unhealthy(findings)


def unhealthy(request: Request[Any, Any, Any], exc: Unhealthy) -> Response[bytes]:
    """503: a load balancer stops sending requests that would be answered from stale or wrong views."""
    return _problem(
        request,
        Problem(
            title="Unhealthy",
            status=HTTP_503_SERVICE_UNAVAILABLE,
            detail=str(exc),
            errors=[ProblemItem(path=name, message=message) for name, message in exc.findings],
        ),
    )


HANDLERS: ExceptionHandlersMap = {UnreadableEvent: unreadable, Unhealthy: unhealthy}
