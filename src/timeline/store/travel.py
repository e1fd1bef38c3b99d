"""Reading what time travel folds, from the log alone: a subject's or a claim's events up to a cut, and
the registrations of the sources they name. No view table is consulted, so none can change an answer."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import timetravel
from timeline.domain.streams import source_stream, sources_named, subject_stream
from timeline.projections import Views
from timeline.store import queries


@contextmanager
def _no_collection() -> Iterator[None]:
    """Folding a subject of 10,000 events makes some 100,000 short-lived containers, none in a cycle; the
    cyclic collector would walk them repeatedly (a third of the fold's time), so it waits until the end."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def stream_views(
    conn: AsyncConnection, stream_id: str, position: int, valid_until: dt.date | None
) -> Views:
    """The views one stream's events up to ``position`` fold into, as of ``valid_until``."""
    logged = await queries.logged_until(conn, [stream_id], position=position, valid_until=valid_until)
    with _no_collection():
        return timetravel.views_at(logged, valid_until)


async def subject_views(
    conn: AsyncConnection, subject_id: str, position: int, valid_until: dt.date | None
) -> Views:
    """The views of a subject at a cut: its claims (all that were ever about it), their events up to
    ``position`` as of ``valid_until``, and the registrations of the sources they name (for names)."""
    claim_streams = await queries.claim_streams_of_subject(conn, subject_id, position)
    # The subject's own stream holds its statements.
    streams = {*claim_streams, subject_stream(subject_id)}
    claimed = await queries.logged_until(conn, streams, position=position, valid_until=valid_until)
    # What a claim names is in its own events, so those are read first.
    named = {source_stream(source) for e in claimed for source in sources_named(e.event)}
    registered = await queries.logged_until(conn, named, position=position)
    with _no_collection():
        logged = sorted([*claimed, *registered], key=lambda e: e.position)
        return timetravel.views_at(logged, valid_until)
