"""Faults answered as problem+json: a busy or unreachable database (503 with Retry-After), an event this
version cannot read (422 naming it), and what /health finds wrong (503)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
import sqlalchemy as sa
from litestar import Request
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY, HTTP_503_SERVICE_UNAVAILABLE

from timeline.api.problems import TimelineProblem, internal_error
from timeline.api.schemas import Problem, ProblemItem
from timeline.api.settings import Settings
from timeline.store import views
from timeline.store.eventlog import UnreadableEvent
from timeline.store.faults import Busy, fault_of
from timeline.store.projector import Worker


def unreadable(exc: UnreadableEvent) -> TimelineProblem:
    """422 naming the position: the request is fine, but what it asks for passes through that event."""
    return TimelineProblem(
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


# Seconds a client is asked to wait before retrying a write the database was too busy for.
RETRY_AFTER = 5


def database_fault(exc: Exception) -> TimelineProblem:
    """503 with Retry-After for a database that is busy (another write holds the log's lock) or cannot be
    reached for the moment; any other error is the 500 it was."""
    found = fault_of(exc)
    if found is None:
        return internal_error(exc)
    fault = found[0]
    detail = (
        "the database is busy with another write (an import, say); nothing was recorded: retry shortly"
        if fault == "busy"
        else "the database cannot be reached for the moment; nothing was recorded: retry shortly"
    )
    return TimelineProblem(
        Problem(title="Service Unavailable", status=HTTP_503_SERVICE_UNAVAILABLE, detail=detail),
        headers={"Retry-After": str(RETRY_AFTER)},
    )


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
    recorded_failures: dict[str, str],
) -> None:
    """Raise ``Unhealthy`` when the views are past the log's head (events removed behind timeline's back)
    or an asynchronous projection has stalled: failing other than for the database's passing fault (in
    this process, or as its leader recorded), or not moved for the stall time while the event after it
    waits."""
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
        failing = worker.failing.get(name)
        if failing is None:  # led by another process (`timeline project`, say): as its leader recorded
            stuck = recorded_failures.get(name)
        else:
            stuck = None if failing.passing else failing.message
        if stuck is not None:
            findings.append((name, f"projection {name} is stuck after position {position}: {stuck}"))
        elif waiting is not None:
            # A projection the database failed for a moment (a restart) is judged as any other: by how long
            # it has not moved, so a load balancer does not pull every server at once for it.
            since = max(waiting, moved or waiting, started)
            idle = (now - since).total_seconds()
            if idle > settings.stall_seconds:
                why = f": {failing.message}" if failing is not None else ""
                findings.append(
                    (
                        name,
                        f"projection {name} has not moved from position {position} for {idle:.0f} s "
                        f"while the log is at {head}{why}",
                    )
                )
    if findings:
        raise Unhealthy(findings)


def unhealthy(exc: Unhealthy) -> TimelineProblem:
    """503: a load balancer stops sending requests that would be answered from stale or wrong views."""
    return TimelineProblem(
        Problem(
            title="Unhealthy",
            status=HTTP_503_SERVICE_UNAVAILABLE,
            detail=str(exc),
            errors=[ProblemItem(path=name, message=message) for name, message in exc.findings],
        ),
    )


# Folded into api.problems' table by create_app.
PROBLEMS: dict[type[Any], Callable[[Any], TimelineProblem]] = {
    UnreadableEvent: unreadable,
    Unhealthy: unhealthy,
    # Errors of the database and the way to it, wherever raised; anything else stays a 500.
    sa.exc.SQLAlchemyError: database_fault,
    asyncpg.PostgresError: database_fault,
    asyncpg.InterfaceError: database_fault,
    asyncpg.InternalClientError: database_fault,
    sqlite3.Error: database_fault,
    # Refused, reset, no route to the host, an unknown host (ConnectionError, socket.gaierror and the lock
    # wait's Busy are OSErrors too); any other OSError (a full disk) stays the 500 it was.
    OSError: database_fault,
    Busy: database_fault,
}
