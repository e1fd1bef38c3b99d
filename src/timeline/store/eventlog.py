"""The append-only event log: append to a stream with an expected version, read a stream, read all.

Appends run inside a write transaction opened by ``Database.write``, which serializes writers (an EXCLUSIVE
table lock on PostgreSQL, BEGIN IMMEDIATE on SQLite). Positions are therefore committed in the order they are
allocated, and a reader tailing ``read_all`` can never skip an event that commits later with a lower position.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain import upcasting
from timeline.domain.events import SCHEMA_VERSION, DomainEvent, encode_event
from timeline.store import chain, driver, statements
from timeline.store.schema import events


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who recorded an event and through what: an import (file and place in it) or an HTTP request."""

    recorded_by: str
    origin: str | None = None
    import_id: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended, with the date it is about (valid time), if any."""

    event: DomainEvent
    valid_from: dt.date | None
    metadata: Metadata


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The stored envelope: a domain event with its place in the log and the facts of its recording."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    event: DomainEvent
    metadata: Metadata
    valid_from: dt.date | None
    recorded_at: dt.datetime
    prev_hash: str
    hash: str


class UnreadableEvent(Exception):
    """A stored event this version cannot decode: a corrupted row, or one written by a newer version."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"the log holds an event this version cannot read: position {position} ({reason})")
        self.position = position
        self.reason = reason


def decode_stored(position: int, data: str | bytes, event_type: str, schema_version: int) -> DomainEvent:
    """The event stored at ``position`` as ``event_type`` at ``schema_version``, upcast to its current
    version (every read of the log decodes here), or ``UnreadableEvent`` naming the position."""
    try:
        return upcasting.decode(data, event_type, schema_version)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise UnreadableEvent(position, str(exc)) from None


def _metadata(position: int, data: str | bytes) -> Metadata:
    try:
        return _meta_decoder.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise UnreadableEvent(position, f"metadata: {exc}") from None


# Raised where the version is checked: by ``append`` before writing, by the database's key while writing.
WrongExpectedVersion = driver.WrongExpectedVersion

_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(Metadata)


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _to_recorded(row: sa.Row[tuple[object, ...]]) -> RecordedEvent:
    m = row._mapping
    return RecordedEvent(
        position=m["position"],
        event_id=m["event_id"],
        stream_id=m["stream_id"],
        stream_version=m["stream_version"],
        type=m["type"],
        schema_version=m["schema_version"],
        event=decode_stored(m["position"], m["data"], m["type"], m["schema_version"]),
        metadata=_metadata(m["position"], m["metadata"]),
        valid_from=m["valid_from"],
        recorded_at=_utc(m["recorded_at"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


def _from_driver(row: Sequence[Any]) -> RecordedEvent:
    # A row as ``driver.stored_event`` gives it, in ``statements.EVENT_COLUMNS`` order.
    return RecordedEvent(
        position=row[0],
        event_id=row[1],
        stream_id=row[2],
        stream_version=row[3],
        type=row[4],
        schema_version=row[5],
        event=decode_stored(row[0], row[6], row[4], row[5]),
        metadata=_metadata(row[0], row[7]),
        valid_from=row[8],
        recorded_at=row[9],
        prev_hash=row[10],
        hash=row[11],
    )


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    """The stream's current version: the number of events in it (0 if it does not exist)."""
    result = await conn.execute(
        sa.select(sa.func.max(events.c.stream_version)).where(events.c.stream_id == stream_id)
    )
    return int(result.scalar_one() or 0)


class Batch:
    """Events being appended in one write transaction: positions and hashes are assigned as they are
    added (the caller holds the write lock, so the head cannot move), and ``flush`` inserts them all with
    one statement. Streams are checked by the caller; the unique (stream, version) key backs it up."""

    def __init__(self, head: int, head_hash: str, recorded_at: dt.datetime) -> None:
        self.head = head
        self.head_hash = head_hash
        self.recorded_at = recorded_at
        self._stamp = chain.timestamp(recorded_at)
        # In ``statements.EVENT_COLUMNS`` order.
        self.rows: list[driver.Row] = []
        # The last metadata encoded: the events of one request or input line share one.
        self._metadata: tuple[Metadata, str] | None = None
        self._random = b""
        self._drawn = 0

    @classmethod
    async def start(cls, conn: AsyncConnection, recorded_at: dt.datetime) -> Batch:
        """A batch continuing the log from its current head."""
        head, head_hash = await head_link(conn)
        return cls(head, head_hash, recorded_at)

    def add(self, stream_id: str, version: int, item: NewEvent) -> RecordedEvent:
        """Give the event the next position, chain it, and queue its row."""
        return self.append(stream_id, version, item.event, item.valid_from, item.metadata)

    def append(
        self,
        stream_id: str,
        version: int,
        event: DomainEvent,
        valid_from: dt.date | None,
        metadata: Metadata,
    ) -> RecordedEvent:
        """``add``, for the event's parts: the write path has them at hand, and a ``NewEvent`` per event
        only to be taken apart here was a measurable part of a batch."""
        self.head += 1
        position = self.head
        name = type(event).__name__
        schema_version = SCHEMA_VERSION[name]
        event_id = self._new_id()
        data = encode_event(event).decode()
        known = self._metadata
        if known is not None and known[0] is metadata:
            meta = known[1]
        else:
            meta = _meta_encoder.encode(metadata).decode()
            self._metadata = (metadata, meta)
        prev_hash = self.head_hash
        recorded_at = self.recorded_at
        self.head_hash = link = chain.link(
            prev_hash,
            chain.canonical_of(
                position,
                event_id,
                stream_id,
                version,
                name,
                schema_version,
                data,
                meta,
                valid_from,
                self._stamp,
            ),
        )
        self.rows.append(
            (
                position,
                event_id,
                stream_id,
                version,
                name,
                schema_version,
                data,
                meta,
                valid_from,
                recorded_at,
                prev_hash,
                link,
            )
        )
        return RecordedEvent(
            position=position,
            event_id=event_id,
            stream_id=stream_id,
            stream_version=version,
            type=name,
            schema_version=schema_version,
            event=event,
            metadata=metadata,
            valid_from=valid_from,
            recorded_at=recorded_at,
            prev_hash=prev_hash,
            hash=link,
        )

    def _new_id(self) -> uuid.UUID:
        # A version 4 UUID as ``uuid.uuid4`` makes it, its random bytes drawn from the system 256 ids at a
        # time: one urandom call per event cost as much as hashing the event.
        at = self._drawn
        if at >= len(self._random):
            self._random, at = os.urandom(16 * 256), 0
        self._drawn = at + 16
        return uuid.UUID(bytes=self._random[at : at + 16], version=4)

    def take(self) -> list[driver.Row]:
        """The queued rows, handed over to be written (``driver.write``) with the views' changes."""
        rows, self.rows = self.rows, []
        return rows

    async def flush(self, conn: AsyncConnection) -> None:
        """Insert the queued rows (and mark the transaction as appending)."""
        changes = driver.Changes()
        changes.events = self.take()
        await driver.write(conn, changes)


async def append(
    conn: AsyncConnection,
    stream_id: str,
    expected_version: int,
    new_events: Sequence[NewEvent],
    *,
    recorded_at: dt.datetime,
) -> list[RecordedEvent]:
    """Append events to one stream if it is at ``expected_version``; raise ``WrongExpectedVersion`` if not.
    The caller holds the log's write lock (``Database.write``)."""
    actual = await stream_version(conn, stream_id)
    if actual != expected_version:
        raise WrongExpectedVersion(stream_id, expected_version, actual)
    if not new_events:
        return []
    batch = await Batch.start(conn, recorded_at)
    recorded = [batch.add(stream_id, expected_version + i, e) for i, e in enumerate(new_events, start=1)]
    await batch.flush(conn)
    return recorded


class Reading(msgspec.Struct, kw_only=True):
    """What a writer reads before appending: each stream's record (version, state) if it has one and its
    events after the record, which other streams exist, and the head link."""

    streams: dict[str, list[RecordedEvent]]
    records: dict[str, tuple[int, str]]
    existing: set[str]
    head: tuple[int, str] | None
    # Claim rows read along (``claim_ids``, ``keys``), as ``driver.claims_for`` gives them: (part, id, state).
    claims: list[tuple[int, str, str]] = []
    # With the head on PostgreSQL, the row version of the views' checkpoint (None if there is none yet).
    views_seen: int | None = None


async def read_for_write(
    conn: AsyncConnection,
    stream_ids: Iterable[str],
    *,
    probe: Iterable[str] = (),
    head: bool = False,
    record_format: int = 0,
    claim_ids: Iterable[str] = (),
    keys: Iterable[tuple[str, str, str]] = (),
) -> Reading:
    """In one query: the streams' records (of ``record_format``) and their events after them in version
    order, which of the ``probe`` streams exist, and, with ``head``, the log's head link. The caller holds
    the write lock, so the head stays put. Along with them, the claim rows of ``claim_ids`` (part 0) and the
    claims chosen under ``keys`` and under those claims' keys (part 2), for the views."""
    reading = Reading(streams={s: [] for s in stream_ids}, records={}, existing=set(), head=None)
    probes = sorted(set(probe).difference(reading.streams))
    if reading.streams or probes or head:
        rows = await driver.read_for_write(
            conn, sorted(reading.streams), probes, head, record_format, sorted(claim_ids), sorted(keys)
        )
        for part, *row in rows:
            if part in statements.CLAIM_PARTS:
                reading.claims.append((2 * (part - statements.CLAIM_PARTS[0]), row[2], row[6]))
            elif part == statements.EVENTS_PART:
                recorded = _from_driver(row)
                reading.streams[recorded.stream_id].append(recorded)
            elif part == statements.PROBE_PART:
                reading.existing.add(row[2])
            elif part == statements.HEAD_PART:
                reading.head = (int(row[0]), str(row[11]))
            elif part == statements.VIEWS_SEEN_PART:
                reading.views_seen = int(row[0])
            else:
                reading.records[row[2]] = (int(row[3]), str(row[6]))
    if head and reading.head is None:
        reading.head = (0, chain.GENESIS)
    reading.existing.update(s for s, stored in reading.streams.items() if stored)
    reading.existing.update(s for s, (version, _) in reading.records.items() if version > 0)
    return reading


async def head_link(conn: AsyncConnection) -> tuple[int, str]:
    """The last event's position and hash: (0, the genesis hash) for an empty log."""
    result = await conn.execute(
        sa.select(events.c.position, events.c.hash).order_by(events.c.position.desc()).limit(1)
    )
    row = result.first()
    return (0, chain.GENESIS) if row is None else (int(row[0]), str(row[1]))


async def read_stream(conn: AsyncConnection, stream_id: str, *, from_version: int = 1) -> list[RecordedEvent]:
    """One stream's events from ``from_version`` on, in order."""
    result = await conn.execute(
        sa.select(events)
        .where(events.c.stream_id == stream_id, events.c.stream_version >= from_version)
        .order_by(events.c.stream_version)
    )
    return [_to_recorded(row) for row in result]


async def read_all(conn: AsyncConnection, *, after: int = 0, limit: int = 100) -> list[RecordedEvent]:
    """The whole log after ``after``, in global order, at most ``limit`` events."""
    return [_from_driver(row) for row in await driver.read_after(conn, after, limit)]


async def hash_at(conn: AsyncConnection, position: int) -> str | None:
    """The chain hash of the event at ``position`` (None past the head)."""
    found = await conn.execute(sa.select(events.c.hash).where(events.c.position == position))
    return found.scalar_one_or_none()


async def head_position(conn: AsyncConnection) -> int:
    """The position of the last event in the log (0 when it is empty)."""
    result = await conn.execute(sa.select(sa.func.max(events.c.position)))
    return int(result.scalar_one() or 0)


async def read_until(
    conn: AsyncConnection,
    *,
    position: int,
    stream_id: str | None = None,
    streams: Sequence[str] | None = None,
) -> list[RecordedEvent]:
    """Every event up to and including ``position`` (of one stream, or of some streams), in log order."""
    query = sa.select(events).where(events.c.position <= position)
    if stream_id is not None:
        query = query.where(events.c.stream_id == stream_id)
    if streams is not None:
        query = query.where(events.c.stream_id.in_(sorted(set(streams))))
    result = await conn.execute(query.order_by(events.c.position))
    return [_to_recorded(row) for row in result]


async def position_at(conn: AsyncConnection, moment: dt.datetime) -> int:
    """The last position recorded at or before ``moment`` (0 if nothing was recorded by then)."""
    result = await conn.execute(
        # In UTC: SQLite stores the time's fields without their zone.
        sa.select(sa.func.max(events.c.position)).where(events.c.recorded_at <= moment.astimezone(dt.UTC))
    )
    return int(result.scalar_one() or 0)
