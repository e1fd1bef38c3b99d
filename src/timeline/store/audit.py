"""Auditing the log itself: verify the hash chain, export it as JSON Lines, restore it from an export.

Everything here reads the stored rows as they are (the JSON text, not re-encoded events), because that is
what the hashes cover and what an export must reproduce byte for byte.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.events import ClaimMade, decode_event
from timeline.store import chain
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


def _row(m: sa.RowMapping) -> StoredRow:
    recorded_at = m["recorded_at"]
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=dt.UTC)
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
        recorded_at=recorded_at,
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


class Break(msgspec.Struct, frozen=True, kw_only=True):
    """Where the chain breaks, and how."""

    position: int
    problem: str


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """The result of checking the chain: intact up to the head, or the first place it breaks."""

    ok: bool
    checked: int
    from_position: int
    head_position: int
    head_hash: str
    first_break: Break | None = None


async def verify(conn: AsyncConnection, *, since: tuple[int, str] | None = None) -> Verification:
    """Recompute the chain over the whole log, or from a remembered (position, hash) head on."""
    expected, prev, start = 1, chain.GENESIS, 0
    checked = 0

    def broken(position: int, problem: str) -> Verification:
        return Verification(
            ok=False,
            checked=checked,
            from_position=start,
            head_position=expected - 1,
            head_hash=prev,
            first_break=Break(position=position, problem=problem),
        )

    if since is not None:
        start, remembered = since
        if start > 0:
            result = await conn.execute(sa.select(events).where(events.c.position == start))
            found = result.mappings().one_or_none()
            if found is None:
                return broken(start, "the remembered head is gone: the log was cut back or rewritten")
            row = _row(found)
            if row.hash != remembered:
                return broken(
                    start, "the event at the remembered head has another hash: the log was rewritten"
                )
            if row.computed_hash() != row.hash:
                return broken(
                    start, "the event at the remembered head does not match its hash: it was altered"
                )
            expected, prev = start + 1, remembered
    async for row in rows(conn, after=expected - 1):
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
        expected, prev = expected + 1, row.hash
        checked += 1
    return Verification(
        ok=True, checked=checked, from_position=start, head_position=expected - 1, head_hash=prev
    )


# Export and restore -----------------------------------------------------------------------------------


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an export: every stored column. ``data`` and ``metadata`` are the stored JSON text as
    strings, so any JSON parser hands back exactly the bytes the hash covers."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    valid_from: dt.date | None
    recorded_at: str
    data: str
    metadata: str
    prev_hash: str
    hash: str


_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(ExportedEvent)


def export_line(row: StoredRow) -> bytes:
    """A stored row as one line of JSON Lines (with its newline)."""
    return (
        _line_encoder.encode(
            ExportedEvent(
                position=row.position,
                event_id=row.event_id,
                stream_id=row.stream_id,
                stream_version=row.stream_version,
                type=row.type,
                schema_version=row.schema_version,
                valid_from=row.valid_from,
                recorded_at=chain.timestamp(row.recorded_at),
                data=row.data,
                metadata=row.metadata,
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
        )
        + b"\n"
    )


async def export(conn: AsyncConnection, *, subject_id: str | None = None) -> AsyncIterator[bytes]:
    """The log as JSON Lines, in position order; with ``subject_id``, only that subject's streams (its own
    and its claims'). Streams in batches, so memory does not grow with the log."""
    claim_streams: set[str] = set()
    async for row in rows(conn):
        if subject_id is not None:
            if row.type == "ClaimMade":
                made = decode_event(row.data)
                assert isinstance(made, ClaimMade)
                if made.subject_id == subject_id:
                    claim_streams.add(row.stream_id)
            if row.stream_id != f"subject-{subject_id}" and row.stream_id not in claim_streams:
                continue
        yield export_line(row)


class RestoreError(Exception):
    """An export cannot be restored; says which line and why. Nothing was written."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


async def restore(conn: AsyncConnection, lines: Iterable[bytes]) -> int:
    """Load a whole-log export into an empty log, checking the chain line by line; returns the count.

    Raises ``RestoreError`` for a non-empty log, a malformed, truncated, reordered or altered line; the
    caller's transaction then writes nothing.
    """
    head = await conn.execute(sa.select(sa.func.count()).select_from(events))
    if head.scalar_one():
        raise RestoreError(0, "the database already has events; restore needs an empty one")
    expected, prev = 1, chain.GENESIS
    batch: list[dict[str, object]] = []
    number = 0
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            raise RestoreError(number, "the line is cut off (no newline at its end): the file is truncated")
        try:
            item = _line_decoder.decode(line)
            decode_event(item.data)
            recorded_at = dt.datetime.strptime(item.recorded_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=dt.UTC
            )
        except (msgspec.DecodeError, ValueError) as exc:
            raise RestoreError(number, f"not an exported event: {exc}") from None
        row = StoredRow(
            position=item.position,
            event_id=item.event_id,
            stream_id=item.stream_id,
            stream_version=item.stream_version,
            type=item.type,
            schema_version=item.schema_version,
            data=item.data,
            metadata=item.metadata,
            valid_from=item.valid_from,
            recorded_at=recorded_at,
            prev_hash=item.prev_hash,
            hash=item.hash,
        )
        if row.position != expected:
            raise RestoreError(
                number,
                f"expected event {expected}, found {row.position}: the file is out of order or incomplete "
                "(restore needs a whole-log export, not one subject's)",
            )
        if row.prev_hash != prev or row.computed_hash() != row.hash:
            raise RestoreError(
                number, f"event {row.position} does not match the hash chain: the file was altered"
            )
        batch.append(msgspec.structs.asdict(row))
        if len(batch) >= BATCH:
            await conn.execute(sa.insert(events), batch)
            batch.clear()
        expected, prev = expected + 1, row.hash
    if batch:
        await conn.execute(sa.insert(events), batch)
    return expected - 1
