"""Export the log as JSON Lines and restore it from an export, byte for byte.

Both read and write the stored rows as they are (the JSON text, not re-encoded events), because that is what
the hashes cover and what an export must reproduce exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain import upcasting
from timeline.domain.events import ClaimMade
from timeline.domain.streams import subject_stream as subject_stream_of
from timeline.store import chain
from timeline.store.audit import BATCH, StoredRow
from timeline.store.database import APPENDED, driver_of
from timeline.store.eventlog import decode_stored
from timeline.store.schema import events


def _utc(recorded_at: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone; what it returns is UTC.
    return recorded_at if recorded_at.tzinfo is not None else recorded_at.replace(tzinfo=dt.UTC)


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
