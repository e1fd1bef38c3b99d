"""The write path's and the fold's statements, sent to the database driver itself (asyncpg, or sqlite3 on the
loop's thread), inside the caller's SQLAlchemy transaction.

SQLAlchemy Core spent 100-300 microseconds of Python on each statement (compile-cache lookup, parameter and
result processing), more than SQLite or a local PostgreSQL spent running it, and a write sent 9-11 of them.
Here each statement is fixed text whose lists travel as one parameter (a PostgreSQL array, a JSON array for
SQLite's ``json_each``), so asyncpg prepares it once per connection and no list length makes a new statement.
On PostgreSQL everything a write changes (its events, every view row and the views' checkpoint, the Merkle
tree's new nodes and the signed log checkpoint that ``store.seal`` adds, and the NOTIFY) goes in one statement
of data-modifying CTEs: one round trip.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store.database import APPENDED, NOTIFIED, UNLOCKED, driver_of, may_write
from timeline.store.faults import MovedOn, NeedsLock
from timeline.store.seal import SEALED, SEALER, SignedCheckpoint
from timeline.store.statements import (
    APPEND,
    CLAIMS_FOR,
    EVENTS_PART,
    KEYS_ANSWERED,
    MOVED_ON,
    READ_AFTER,
    READ_FOR_WRITE,
    SAVE_APPENDING,
    SAVE_FOLDING,
    SQLITE,
)

Row = tuple[Any, ...]


class WrongExpectedVersion(Exception):
    """The stream moved on since the caller read it: nothing was appended. ``actual`` is None when only the
    database's unique (stream, version) key noticed (another write took the version first)."""

    def __init__(self, stream_id: str, expected: int, actual: int | None) -> None:
        at = f"is at version {actual}" if actual is not None else f"already has a version {expected + 1}"
        super().__init__(f"stream {stream_id!r} {at}, expected {expected}; read it again and retry")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


_STREAM_KEY = "uq_events_stream_id_stream_version"
_ANSWERED_KEY = "pk_idempotency_keys"


def _taken(stream_id: str, version: int) -> WrongExpectedVersion:
    return WrongExpectedVersion(stream_id, version - 1, None)


@functools.lru_cache(maxsize=16)  # every event of a write has the same time
def sqlite_time(value: dt.datetime) -> str:
    """A UTC time as SQLAlchemy stores it in SQLite (naive, with microseconds), so both writers agree."""
    # isoformat takes half strftime's time, and a write formats two or three times.
    return value.astimezone(dt.UTC).isoformat(sep=" ", timespec="microseconds")[:26]


def event_row(row: Row, dialect: str) -> Row:
    """An ``events`` row in column order, typed for the driver (SQLite stores UUIDs, dates and times as
    SQLAlchemy does: 32 hex digits, ISO dates, naive UTC times)."""
    if dialect == "postgresql":
        return row
    valid_from = row[8]
    return (
        *row[:1],
        row[1].hex,
        *row[2:8],
        valid_from.isoformat() if valid_from is not None else None,
        sqlite_time(row[9]),
        *row[10:],
    )


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def stored_event(row: Sequence[Any], dialect: str) -> Row:
    """An ``events`` row as read (in ``statements.EVENT_COLUMNS`` order), typed alike on both databases."""
    if dialect == "postgresql":
        return tuple(row)
    valid_from, recorded_at = row[8], row[9]
    return (
        row[0],
        uuid.UUID(row[1]),
        *row[2:8],
        dt.date.fromisoformat(valid_from) if valid_from is not None else None,
        _utc(dt.datetime.fromisoformat(recorded_at)),
        *row[10:],
    )


async def read_for_write(
    conn: AsyncConnection,
    whole: list[str],
    probe: list[str],
    head: bool,
    record_format: int,
    claim_ids: Sequence[str] = (),
    keys: Sequence[tuple[str, str, str]] = (),
) -> list[Row]:
    """Rows of ``READ_FOR_WRITE``: (part, *event columns), the streams' events typed as ``stored_event``
    gives them; a probed stream's first event and the head are left as stored, since only their stream id,
    position and hash are used (decoding their UUIDs and times took 3.3% of a single write's samples). A
    record's row is (3, None, None, stream_id, version, None, None, state, ...), a claim's (4 or 5, None,
    None, claim_id, None, None, None, state, ...)."""
    driver = await driver_of(conn)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = await driver.fetch(
            READ_FOR_WRITE[dialect],
            _array(whole),
            _array(probe),
            head,
            record_format,
            _array(list(claim_ids)),
            *columns(keys, 3),
        )
    else:
        rows = await driver.execute_fetchall(
            READ_FOR_WRITE[dialect],
            (
                json.dumps(whole),
                json.dumps(probe),
                int(head),
                record_format,
                json.dumps(claim_ids),
                json.dumps(keys),
            ),
        )
    return [(r[0], *stored_event(r[1:], dialect)) if r[0] == EVENTS_PART else tuple(r) for r in rows]


async def read_after(conn: AsyncConnection, after: int, limit: int) -> list[Row]:
    """Up to ``limit`` events after position ``after``, in order, typed as ``stored_event`` gives them."""
    driver = await driver_of(conn)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = await driver.fetch(READ_AFTER[dialect], after, limit)
    else:
        rows = await driver.execute_fetchall(READ_AFTER[dialect], (after, limit))
    return [stored_event(r, dialect) for r in rows]


async def claims_for(
    conn: AsyncConnection,
    ids: list[str],
    full: list[tuple[str, str, str]],
    light: list[tuple[str, str, str]],
) -> list[Row]:
    """Rows (part, claim_id, state): the claims by id, those under the ``full`` keys, and those chosen
    under the ``light`` keys."""
    driver = await driver_of(conn)
    if conn.dialect.name == "postgresql":
        query = CLAIMS_FOR["postgresql"]
        return list(await driver.fetch(query, ids, *columns(full, 3), *columns(light, 3)))
    return list(
        await driver.execute_fetchall(
            CLAIMS_FOR["sqlite"], (json.dumps(ids), json.dumps(full), json.dumps(light))
        )
    )


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any] | None]:
    """Rows as one list per column: what ``unnest`` of a parameter per column takes (NULL for no rows,
    which it takes as none: asyncpg checks each list against abstract base classes before encoding it, at
    about half a microsecond a check, and a single write's empty lists made 59 of its 218 checks)."""
    if not rows:
        return [None] * width
    return [[r[i] for r in rows] for i in range(width)]


def _array(values: Sequence[Any]) -> Sequence[Any] | None:
    # A list parameter, NULL when empty (see ``columns``).
    return values or None


def _sealing(changes: Changes) -> tuple[Any, ...]:
    # Parameters $49-$56 of the appending statement: tree nodes, the checkpoint, the one it replaces.
    signed = changes.signed
    if signed is None:
        return (*columns(changes.tree_nodes, 3), None, None, None, None, changes.superseded)
    return (
        *columns(changes.tree_nodes, 3),
        signed.size,
        signed.root_hash,
        signed.at,
        signed.note,
        changes.superseded,
    )


def _sqlite_signed(signed: SignedCheckpoint) -> Row:
    return (signed.size, signed.root_hash, signed.sqlite_time(), signed.note)


class Changes:
    """What one transaction writes: new events and view rows, in the drivers' column order."""

    def __init__(self) -> None:
        self.events: list[Row] = []
        # Stream records (stream_id, version, format, state), written only with events.
        self.streams: list[Row] = []
        self.claims: list[Row] = []
        self.unchosen: list[Row] = []
        self.chosen: list[Row] = []
        self.defined: list[Row] = []
        self.unlisted: list[int] = []
        self.listed: list[Row] = []
        self.checkpoint: tuple[str, int] | None = None
        # Filled by the transaction's sealer (store.seal) when there are events: the Merkle tree's new nodes
        # (level, idx, hash), the signed log checkpoint, and the size of one this transaction signed
        # before, which the new one replaces.
        self.tree_nodes: list[Row] = []
        self.signed: SignedCheckpoint | None = None
        self.superseded: int | None = None
        # The row version of the views' checkpoint the writer's reads saw: checked by an append without a
        # transaction of its own (statements.APPEND).
        self.views_seen: int | None = None
        # Idempotency keys' answers (principal, key, request_hash, status_code, response), stored with the
        # events (``idempotency.Pending.take``): a write without a transaction of its own has one statement.
        self.answers: list[Row] = []

    def __bool__(self) -> bool:
        return bool(self.answers) or self.rows()

    def rows(self) -> bool:
        """Whether there are events or view rows to write (anything but the keys' answers)."""
        return bool(
            self.events
            or self.claims
            or self.unchosen
            or self.chosen
            or self.defined
            or self.unlisted
            or self.listed
            or self.checkpoint
        )


async def _write_postgres(
    driver: Any, changes: Changes, name: str | None, position: int, now: dt.datetime, *, unlocked: bool
) -> None:
    # The fold of a rebuild appends nothing, and must not lock the log against writers as an INSERT into it
    # would, even of no rows: it uses the statement without that part. Outside a transaction, the append
    # takes the lock and checks the head itself (statements.APPEND).
    appending = (APPEND if unlocked else SAVE_APPENDING) if changes.events else SAVE_FOLDING
    if changes.answers and not changes.events:
        # Only the appending statement carries them: a batch that appended nothing (each write replayed, or
        # recorded already) stores them alone, under the lock, and has nothing else to write.
        await driver.execute(KEYS_ANSWERED["postgresql"], *columns(changes.answers, 5), now)
        if not changes.rows():
            return
    try:
        await driver.fetchval(
            appending,
            *columns(changes.claims, 9),
            *columns(changes.unchosen, 3),
            *columns(changes.chosen, 5),
            *columns(changes.defined, 4),
            _array(changes.unlisted),
            *columns(changes.listed, 6),
            name,
            position,
            now,
            bool(changes.events),  # the NOTIFY that wakes other processes' readers
            *(columns(changes.events, 12) if changes.events else ()),
            *(columns(changes.streams, 4) if changes.events else ()),
            *(_sealing(changes) if changes.events else ()),
            *(columns(changes.answers, 5) if changes.events else ()),
            *((changes.views_seen,) if unlocked and changes.events else ()),
        )
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == _ANSWERED_KEY and unlocked:
            # Another process answered one of the batch's keys since they were read: under the lock the
            # read finds its answer.
            raise MovedOn("an idempotency key was answered since this write read it") from None
        # Optimistic concurrency's last word, the unique (stream, version) key; its detail names the key,
        # as "Key (stream_id, stream_version)=(claim-x, 2) already exists."
        if error.constraint_name != _STREAM_KEY:
            raise
        key = str(error.detail or "").partition("=(")[2].rpartition(")")[0]
        stream_id, _, version = key.rpartition(", ")
        raise _taken(stream_id, int(version)) from None
    except asyncpg.PostgresError as error:
        if error.sqlstate == MOVED_ON:
            raise MovedOn(error.message) from None
        raise


async def _seal(conn: AsyncConnection, changes: Changes, driver: Any, *, unlocked: bool) -> None:
    """Note the first position appended, and add the tree's nodes and the checkpoint to ``changes``."""
    conn.info.setdefault(APPENDED, int(changes.events[0][0]))
    sealer = conn.info.get(SEALER)
    if sealer is not None:
        await sealer.seal(conn, changes, driver)
        if unlocked and conn.info[SEALED].unsigned is not None:
            # Events this key's checkpoints do not cover (written without it): the write leaves them
            # unsigned under the lock, where the transaction says so in the log and an operator's
            # sign-head cannot land between the seal's read and the append.
            raise NeedsLock("a write that leaves events unsigned")


async def write(conn: AsyncConnection, changes: Changes) -> None:
    """Write ``changes`` in the caller's transaction: one statement on PostgreSQL (with the NOTIFY that wakes
    other processes' readers when events were appended), one per kind of row on SQLite."""
    if not changes:
        return
    unlocked = UNLOCKED in conn.info
    if unlocked and conn.info.get(NOTIFIED):
        raise RuntimeError("a write without the log's lock writes once: its first write committed it")
    if unlocked and not (changes.events and may_write(conn)):
        # Outside a transaction anything written commits at once: only the append that ends the write,
        # which checks under the lock that what was read still holds. Keys' answers with no events are no
        # exception: their insert would not take the log's lock, under which every other insert of a key
        # is made, and a locked batch that had read the key as unanswered would then fail on it.
        raise NeedsLock("a write without the log's lock writes only its events and their views, last")
    driver = await driver_of(conn)
    now = dt.datetime.now(dt.UTC)
    if changes.events:
        await _seal(conn, changes, driver, unlocked=unlocked)
    name, position = changes.checkpoint if changes.checkpoint is not None else (None, 0)
    if conn.dialect.name == "postgresql":
        await _write_postgres(driver, changes, name, position, now, unlocked=unlocked)
        if changes.events:
            conn.info[NOTIFIED] = True
        return
    for kind, rows in (
        ("events", [event_row(r, "sqlite") for r in changes.events]),
        ("kept", changes.streams),
        ("claims", changes.claims),
        ("unchosen", changes.unchosen),
        ("chosen", changes.chosen),
        ("defined", changes.defined),
        ("unlisted", [(p,) for p in changes.unlisted]),
        ("listed", [(r[0], r[1], r[2].isoformat(), *r[3:]) for r in changes.listed]),
        ("checked", [(name, position, sqlite_time(now))] if name is not None else []),
        ("grown", changes.tree_nodes),
        ("resigned", [(changes.superseded,)] if changes.superseded is not None else []),
        ("signed", [_sqlite_signed(changes.signed)] if changes.signed is not None else []),
        ("answered", [(*row, sqlite_time(now)) for row in changes.answers]),
    ):
        if not rows:
            continue
        before = driver.total_changes
        try:
            await driver.executemany(SQLITE[kind], rows)
        except sqlite3.IntegrityError as error:
            if kind != "events" or "events.stream_id, events.stream_version" not in str(error):
                raise
            # The rows ahead of the one refused went in (and roll back with the transaction).
            refused = changes.events[driver.total_changes - before]
            raise _taken(refused[2], refused[3]) from None
