"""Audit routes: the head of the hash chain, verifying it from the stored rows, and the raw export."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

from litestar import get
from litestar.params import QueryParameter
from litestar.response import Stream

from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.api.problems import BadRequest
from timeline.api.schemas import HeadOut
from timeline.domain.values import POSITION_MAX
from timeline.store import audit, eventlog
from timeline.store.audit import Verification
from timeline.store.database import Database

READ = [requires("read")]


@get("/audit/head", operation_id="getAuditHead", tags=["audit"], guards=READ, responses=problems(401, 403))
async def head(db: Db) -> HeadOut:
    """The last event's position and hash. Note them; later, verify with them that the log only grew."""
    async with db.read() as conn:
        position, digest = await eventlog.head_link(conn)
    return HeadOut(position=position, hash=digest)


@get(
    "/audit/verify",
    operation_id="verifyLog",
    tags=["audit"],
    guards=READ,
    responses=problems(400, 401, 403),
)
async def verify(
    db: Db,
    since_position: Annotated[
        int | None, QueryParameter(ge=0, le=POSITION_MAX, description="A head noted earlier: its position")
    ] = None,
    since_hash: Annotated[
        str | None,
        QueryParameter(pattern=r"^[0-9a-f]{64}$", description="A head noted earlier: its hash"),
    ] = None,
) -> Verification:
    """Recompute the hash chain from the stored rows: ``ok`` with the head and the number of events
    checked, or the first position where it breaks and how. From a remembered head, also proves the log
    only grew since."""
    if (since_position is None) != (since_hash is None):
        raise BadRequest(
            "since_hash", "give both since_position and since_hash (from /audit/head), or neither"
        )
    since = (since_position, since_hash) if since_position is not None and since_hash else None
    async with db.read() as conn:
        return await audit.verify(conn, since=since)


@get(
    "/audit/export",
    operation_id="exportLog",
    tags=["audit"],
    guards=READ,
    responses=problems(400, 401, 403),
    media_type="application/x-ndjson",
)
async def export(
    db: Db,
    subject: Annotated[
        str | None, QueryParameter(description="Only this subject's streams (not restorable on its own)")
    ] = None,
) -> Stream:
    """The log as JSON Lines, exactly as stored and hashed (the format of `timeline export`), streamed.
    Check it with the recipe in docs/audit.md, or load it with `timeline restore`."""
    lines = _export(db, subject)
    # The first batch is read before the answer starts, so what fails there gets its own status.
    try:
        first = await anext(lines, b"")
    except BaseException:
        await lines.aclose()  # gives its connection back now
        raise
    return Stream(_then(first, lines), media_type="application/x-ndjson")


async def _then(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for line in rest:
        yield line


async def _export(db: Database, subject: str | None) -> AsyncGenerator[bytes]:
    async with db.read() as conn:
        async for line in audit.export(conn, subject_id=subject):
            yield line


ROUTES = [head, verify, export]
