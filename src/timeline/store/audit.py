"""Auditing the log itself: verify the hash chain and the signed checkpoints over the stored rows.

Everything here reads the stored rows as they are (the JSON text, not re-encoded events), because that is
what the hashes cover. Export and restore are in ``store.backup``.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import merkle, signing
from timeline.store import chain, tree
from timeline.store.eventlog import UnreadableEvent, decode_stored
from timeline.store.schema import events

BATCH = 1000


class StoredRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the events table, as stored."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: str
    metadata: str
    valid_from: dt.date | None
    recorded_at: dt.datetime
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """What this row's hash should be, from its contents and its prev_hash."""
        return chain.link(
            self.prev_hash,
            chain.canonical(
                position=self.position,
                event_id=self.event_id,
                stream_id=self.stream_id,
                stream_version=self.stream_version,
                type=self.type,
                schema_version=self.schema_version,
                data=self.data,
                metadata=self.metadata,
                valid_from=self.valid_from,
                recorded_at=self.recorded_at,
            ),
        )


def _utc(recorded_at: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone; what it returns is UTC.
    return recorded_at if recorded_at.tzinfo is not None else recorded_at.replace(tzinfo=dt.UTC)


def _row(m: sa.RowMapping) -> StoredRow:
    return StoredRow(
        position=m["position"],
        event_id=m["event_id"],
        stream_id=m["stream_id"],
        stream_version=m["stream_version"],
        type=m["type"],
        schema_version=m["schema_version"],
        data=m["data"],
        metadata=m["metadata"],
        valid_from=m["valid_from"],
        recorded_at=_utc(m["recorded_at"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


async def rows(
    conn: AsyncConnection, *, after: int = 0, until: int | None = None
) -> AsyncIterator[StoredRow]:
    """Every stored row after ``after`` (up to ``until``), in position order, a batch at a time."""
    while True:
        query = sa.select(events).where(events.c.position > after)
        if until is not None:
            query = query.where(events.c.position <= until)
        result = await conn.execute(query.order_by(events.c.position).limit(BATCH))
        batch = [_row(m) for m in result.mappings()]
        for row in batch:
            yield row
        if len(batch) < BATCH:
            return
        after = batch[-1].position


async def stream_rows(conn: AsyncConnection, stream_id: str) -> list[StoredRow]:
    """One stream's stored rows, in order."""
    result = await conn.execute(
        sa.select(events).where(events.c.stream_id == stream_id).order_by(events.c.position)
    )
    return [_row(m) for m in result.mappings()]


class Break(msgspec.Struct, frozen=True, kw_only=True):
    """Where the chain breaks, and how."""

    position: int
    problem: str


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """What verify checked and found: the whole chain up to the head, every signed checkpoint (its root
    recomputed from the events, its signature when the key is known), the remembered head if one was given,
    and the events no checkpoint covers; or the first place it breaks."""

    ok: bool
    checked: int
    from_position: int
    head_position: int
    head_hash: str
    first_break: Break | None = None
    checkpoints_checked: int = 0
    signatures_checked: bool = False
    signed_size: int = 0
    unsigned: int = 0
    remembered_head_checked: bool = False


async def verify(
    conn: AsyncConnection,
    *,
    since: tuple[int, str] | None = None,
    verifier: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    """Recompute the whole chain and the tree's root at every signed checkpoint (checking each signature
    with ``verifier``, a verifier key, when given); with ``since`` (a remembered position and hash), also
    check that event is still there with that hash. ``progress(checked, to_check)`` is told every thousand
    events. Raises ``UnreadableEvent`` when the chain holds but an event cannot be decoded by this version."""
    expected, prev = 1, chain.GENESIS
    checked = 0
    checkpoints = await tree.all_checkpoints(conn)
    pending = list(reversed(checkpoints))
    frontier = merkle.Frontier()
    start, remembered = since if since is not None else (0, "")

    def broken(position: int, problem: str) -> Verification:
        return Verification(
            ok=False,
            checked=checked,
            from_position=0,
            head_position=expected - 1,
            head_hash=prev,
            first_break=Break(position=position, problem=problem),
            checkpoints_checked=len(checkpoints) - len(pending),
            signatures_checked=verifier is not None,
        )

    def check_checkpoint(cp: tree.Checkpoint) -> str | None:
        if frontier.root().hex() != cp.root_hash:
            return (
                f"the first {cp.size} events do not have the root the checkpoint of {cp.size} events signed: "
                "the log was rewritten at or before this position"
            )
        body = cp.note.partition("\n\n")[0].splitlines()
        if len(body) < 3 or body[1] != str(cp.size) or base64.b64decode(body[2]).hex() != cp.root_hash:
            return f"the checkpoint of {cp.size} events says another size or root in its signed note"
        if verifier is not None:
            try:
                signing.verify_note(cp.note, verifier)
            except signing.BadKey as exc:
                return f"the checkpoint of {cp.size} events: {exc}"
        return None

    to_check = 0
    if progress is not None:
        head = await conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0)))
        to_check = int(head.scalar_one())
    unreadable: UnreadableEvent | None = None
    async for row in rows(conn):
        if row.position != expected:
            return broken(expected, f"event {expected} is missing (the next stored event is {row.position})")
        if row.prev_hash != prev:
            return broken(
                row.position,
                f"its prev_hash does not match the hash of event {expected - 1}: events were removed, "
                "reordered or rewritten",
            )
        if row.computed_hash() != row.hash:
            return broken(row.position, "its contents do not match its hash: it was altered")
        if row.position == start and row.hash != remembered:
            return broken(start, "the event at the remembered head has another hash: the log was rewritten")
        frontier.append(merkle.event_leaf(row.hash))
        while pending and pending[-1].size == row.position:
            problem = check_checkpoint(pending.pop())
            if problem is not None:
                return broken(row.position, problem)
        # Told once the whole chain is known to hold: a break matters more.
        unreadable = unreadable or _unreadable(row)
        expected, prev = expected + 1, row.hash
        checked += 1
        if progress is not None and checked % 1000 == 0:
            progress(checked, to_check)
    if progress is not None:
        progress(checked, max(to_check, checked))
    if start > checked:
        return broken(checked + 1, f"the remembered head {start} is gone: the log ends at {checked}")
    if pending:
        return broken(
            checked + 1,
            f"the log ends at event {checked} but a checkpoint signed {pending[0].size} events: events "
            f"{checked + 1}-{pending[0].size} were deleted",
        )
    signed = checkpoints[-1].size if checkpoints else 0
    return _intact(
        unreadable,
        Verification(
            ok=True,
            checked=checked,
            from_position=0,
            head_position=expected - 1,
            head_hash=prev,
            checkpoints_checked=len(checkpoints),
            signatures_checked=verifier is not None,
            signed_size=signed,
            unsigned=checked - signed,
            remembered_head_checked=since is not None,
        ),
    )


def _unreadable(row: StoredRow) -> UnreadableEvent | None:
    try:
        decode_stored(row.position, row.data, row.type, row.schema_version)
    except UnreadableEvent as exc:
        return exc
    return None


def _intact(unreadable: UnreadableEvent | None, verification: Verification) -> Verification:
    if unreadable is not None:
        raise unreadable
    return verification
