"""The auditor's reads: a claim's history as recorded, with proofs of its events against the latest signed
checkpoint, and the log itself page by page. Like ``queries``, each takes the transaction it runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.app.errors import NotFound
from timeline.domain.events import DocumentRegistered
from timeline.domain.streams import claim_stream, document_stream
from timeline.store import audit, eventlog, queries, tree
from timeline.store.audit import StoredRow
from timeline.store.database import Database
from timeline.store.eventlog import RecordedEvent

# Positions in a page of the JSON log at most (NDJSON streams pages of this size).
PAGE = 1000


async def history(conn: AsyncConnection, claim_id: str) -> tuple[list[RecordedEvent], dict[str, str]]:
    """Every event of a claim as recorded, and the titles of the documents they cite."""
    recorded = await eventlog.read_stream(conn, claim_stream(claim_id))
    if not recorded:
        raise NotFound("claim", claim_id)
    ids = {d for r in recorded for d in getattr(r.event, "document_ids", ())}
    found = await queries.registrations_among(conn, (document_stream(d) for d in ids))
    titles = {reg.document_id: reg.title for reg in found.values() if isinstance(reg, DocumentRegistered)}
    return recorded, titles


class Proofs(msgspec.Struct, frozen=True, kw_only=True):
    """Inclusion proofs of a claim's events in the latest signed checkpoint: the checkpoint's size and note,
    each event as stored, and each covered event's proof by position."""

    size: int
    note: str
    rows: dict[int, StoredRow]
    hashes: dict[int, list[str]]


async def inclusion_proofs(conn: AsyncConnection, claim_id: str, positions: Iterable[int]) -> Proofs | None:
    """Proofs that a claim's events at ``positions`` are in the latest signed checkpoint (None: none yet)."""
    latest = await tree.latest_checkpoint(conn)
    if latest is None:
        return None
    rows = {r.position: r for r in await audit.stream_rows(conn, claim_stream(claim_id))}
    hashes = {
        p: tree.b64(await tree.inclusion(conn, p - 1, latest.size)) for p in positions if p <= latest.size
    }
    return Proofs(size=latest.size, note=latest.note, rows=rows, hashes=hashes)


async def log_page(conn: AsyncConnection, after: int, limit: int) -> tuple[list[RecordedEvent], int]:
    """Up to ``limit`` events of the log after a position, and the log's head."""
    recorded = await eventlog.read_all(conn, after=after, limit=limit)
    return recorded, await eventlog.head_position(conn)


async def log_batches(db: Database, after: int, limit: int) -> AsyncIterator[list[RecordedEvent]]:
    """Up to ``limit`` events after a position, a page at a time, each page in its own snapshot."""
    sent = 0
    while sent < limit:
        async with db.read() as conn:
            batch = await eventlog.read_all(conn, after=after, limit=min(PAGE, limit - sent))
        if not batch:
            return
        yield batch
        sent += len(batch)
        after = batch[-1].position
