"""Auditing the log itself: verify the hash chain, export it as JSON Lines, restore it from an export.

Everything here reads the stored rows as they are (the JSON text, not re-encoded events), because that is
what the hashes cover and what an export must reproduce byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import merkle, signing
from timeline.domain import upcasting
from timeline.domain.events import ClaimMade
from timeline.domain.streams import subject_stream as subject_stream_of
from timeline.store import chain, tree
from timeline.store.database import APPENDED, driver_of
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


_line_decoder = msgspec.json.Decoder(ExportedEvent)


class _Line(msgspec.Struct, frozen=True):
    """An export line as the driver hands it over: ``ExportedEvent``'s fields in its order, so the encoded
    bytes are the same, but typed as they are read (text, or a date msgspec writes the same way)."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    valid_from: str | dt.date | None
    recorded_at: str
    data: str
    metadata: str
    prev_hash: str
    hash: str


# Rows per query: few round trips (and aiosqlite thread hops); two batches in memory, a few megabytes.
EXPORT_BATCH = 2000
_SQLITE_EXPORT = (
    "SELECT position, event_id, stream_id, stream_version, type, schema_version, valid_from, recorded_at, "
    "data, metadata, prev_hash, hash FROM events WHERE position > ? ORDER BY position LIMIT ?"
)
# PostgreSQL writes the UUID and the UTC time in export form itself, cheaper than Python doing it per row.
_POSTGRES_EXPORT = (
    "SELECT position, event_id::text, stream_id, stream_version, type, schema_version, valid_from, "
    "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "data, metadata, prev_hash, hash FROM events ORDER BY position"
)
_line_encoder = msgspec.json.Encoder()


def _sqlite_line(r: Any) -> _Line:
    # SQLAlchemy stores a UUID on SQLite as 32 hex digits, a time as naive UTC 'YYYY-MM-DD HH:MM:SS.ffffff'
    # and a date as 'YYYY-MM-DD' (which is how msgspec writes a date); slicing text is much cheaper than
    # building a UUID and a datetime. Other shapes go through the general conversions.
    event_id, recorded_at = r[1], r[7]
    if len(event_id) == 32:
        event_id = (
            f"{event_id[:8]}-{event_id[8:12]}-{event_id[12:16]}-{event_id[16:20]}-{event_id[20:]}".lower()
        )
    else:
        event_id = str(uuid.UUID(event_id))
    if len(recorded_at) == 26 and recorded_at[10] == " ":
        recorded_at = f"{recorded_at[:10]}T{recorded_at[11:]}Z"
    else:
        recorded_at = chain.timestamp(_utc(dt.datetime.fromisoformat(recorded_at)))
    valid_from = r[6]
    if valid_from is not None and len(valid_from) != 10:
        valid_from = dt.date.fromisoformat(valid_from)
    return _Line(r[0], event_id, r[2], r[3], r[4], r[5], valid_from, recorded_at, r[8], r[9], r[10], r[11])


async def _reader(
    conn: AsyncConnection,
) -> tuple[Callable[[], Awaitable[list[_Line]]], Callable[[], Awaitable[object]]]:
    """How to read the next batch of export lines straight from the driver behind ``conn`` (in its
    transaction), and how to finish: SQLAlchemy's per-row processing would cost more than all the rest."""
    driver = await driver_of(conn)
    if conn.dialect.name != "postgresql":
        after = 0

        async def fetch_rows() -> list[_Line]:
            nonlocal after
            rows = await driver.execute_fetchall(_SQLITE_EXPORT, (after, EXPORT_BATCH))
            batch = [_sqlite_line(r) for r in rows]
            if batch:
                after = batch[-1].position
            return batch

        return fetch_rows, _nothing

    # A declared cursor is planned for a fast start (an index scan in position order) even when the table
    # was never analyzed, where a LIMIT query may sort the whole table for every batch. Each export names
    # its own, as one stopped early leaves its cursor open until the transaction ends; so its statements
    # go to the driver uncached, as no other export runs them again.
    name = f"timeline_export_{uuid.uuid4().hex}"
    await driver.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {_POSTGRES_EXPORT}")
    statement = await driver.prepare(f"FETCH {EXPORT_BATCH} FROM {name}")

    async def fetch_cursor() -> list[_Line]:
        return [_Line(*r) for r in await statement.fetch()]

    return fetch_cursor, lambda: driver.execute(f"CLOSE {name}")


async def _nothing() -> None:
    pass


async def _batches(
    conn: AsyncConnection, process: Callable[[list[_Line]], list[bytes]]
) -> AsyncIterator[list[bytes]]:
    """Every stored row as an export line, in position order, a batch at a time through ``process``,
    which runs while the database reads the batch after it."""
    fetch, finish = await _reader(conn)
    batch = await fetch()
    following: asyncio.Future[list[_Line]] | None = None
    try:
        while batch:
            if len(batch) == EXPORT_BATCH:
                following = asyncio.ensure_future(fetch())
                await asyncio.sleep(0)  # lets it send its query before ``process`` keeps the loop busy
            processed = process(batch)
            batch = await following if following is not None else []
            following = None
            # Nothing is being read while the caller has the batch, so it may stop, or use ``conn``, at
            # any yield.
            yield processed
    finally:
        if following is not None and not following.done():  # failed or cancelled mid-read
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
    await finish()


async def export(conn: AsyncConnection, *, subject_id: str | None = None) -> AsyncIterator[bytes]:
    """The log as JSON Lines, in position order; with ``subject_id``, only that subject's streams (its own
    and its claims'). Streams in batches, so memory does not grow with the log."""
    claim_streams: set[str] = set()
    subject_stream = "" if subject_id is None else subject_stream_of(subject_id)

    def encode(batch: list[_Line]) -> list[bytes]:
        return [
            _line_encoder.encode(line) + b"\n"
            for line in batch
            if subject_id is None or _in_subject(line, subject_id, subject_stream, claim_streams)
        ]

    async for lines in _batches(conn, encode):
        for line in lines:
            yield line


def _in_subject(line: _Line, subject_id: str, subject_stream: str, claim_streams: set[str]) -> bool:
    # A claim's stream belongs to the subject named when the claim was made (its first event).
    if line.type == "ClaimMade":
        made = decode_stored(line.position, line.data, line.type, line.schema_version)
        assert isinstance(made, ClaimMade)
        if made.subject_id == subject_id:
            claim_streams.add(line.stream_id)
    return line.stream_id == subject_stream or line.stream_id in claim_streams


class RestoreError(Exception):
    """An export cannot be restored; says which line and why. Nothing was written."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


def _recorded_at(text: str) -> dt.datetime:
    # Exactly the export's form, 'YYYY-MM-DDTHH:MM:SS.ffffffZ'; fromisoformat and a comparison are several
    # times faster than strptime, and stricter too.
    body = text.removesuffix("Z")
    try:
        parsed = dt.datetime.fromisoformat(body) if body != text else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None or parsed.isoformat(timespec="microseconds") != body:
        raise ValueError(f"recorded_at is {text!r}, not in the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return parsed.replace(tzinfo=dt.UTC)


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
            upcasting.decode(item.data, item.type, item.schema_version)
            recorded_at = _recorded_at(item.recorded_at)
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
    conn.info[APPENDED] = 1  # the write transaction then builds the Merkle tree and signs its head
    return expected - 1
