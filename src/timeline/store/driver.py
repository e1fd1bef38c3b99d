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

from timeline.store.database import APPENDED, NOTIFIED, driver_of
from timeline.store.notify import CHANNEL
from timeline.store.seal import SEALER

EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, data, metadata, valid_from, "
    "recorded_at, prev_hash, hash"
)
Row = tuple[Any, ...]

# What a writer reads: each stream's record (part 3) and its events after the record's version (part 0, most
# often none), the first event of streams whose existence it checks (1), the log's head (2), ordered so each
# stream's events come in version order. A record of another format counts as none. With them, the claim
# rows the views will need (saving the views' own query): claims by id (4), and the claims chosen under some
# estimate keys and under those claims' own keys (5).
_RECORD = "NULL, NULL, r.stream_id, r.version, NULL, NULL, r.state, NULL, NULL, NULL, NULL, NULL"
_CLAIM = "NULL, NULL, c.claim_id, NULL, NULL, NULL, c.state, NULL, NULL, NULL, NULL, NULL"
_READ_FOR_WRITE = {
    "postgresql": f"""
SELECT 0, e.position, e.event_id, e.stream_id, e.stream_version, e.type, e.schema_version, e.data,
  e.metadata, e.valid_from, e.recorded_at, e.prev_hash, e.hash
FROM unnest($1::text[]) AS w(s) JOIN events e ON e.stream_id = w.s
  LEFT JOIN stream_records r ON r.stream_id = w.s AND r.format = $4
WHERE e.stream_version > coalesce(r.version, 0)
UNION ALL SELECT 1, {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($2::text[]) AND stream_version = 1
UNION ALL (SELECT 2, {EVENT_COLUMNS} FROM events WHERE $3::boolean ORDER BY position DESC LIMIT 1)
UNION ALL SELECT 3, {_RECORD} FROM stream_records r WHERE r.stream_id = ANY($1::text[]) AND r.format = $4
UNION ALL SELECT 4, {_CLAIM} FROM claims c WHERE c.claim_id = ANY($5::text[])
UNION ALL SELECT 5, {_CLAIM} FROM (
    SELECT * FROM unnest($6::text[], $7::text[], $8::text[])
    UNION SELECT subject_id, metric, source_id FROM claims
      WHERE claim_id = ANY($5::text[]) AND metric IS NOT NULL
  ) AS k(s, m, src)
  JOIN estimates e ON e.subject_id = k.s AND e.metric = k.m AND e.source_id = k.src
  JOIN claims c ON c.claim_id IN (e.asserted_claim_id, e.projected_claim_id)
ORDER BY 1, 4, 5""",
    "sqlite": f"""
SELECT 0, e.position, e.event_id, e.stream_id, e.stream_version, e.type, e.schema_version, e.data,
  e.metadata, e.valid_from, e.recorded_at, e.prev_hash, e.hash
FROM json_each(?1) AS w JOIN events e ON e.stream_id = w.value
  LEFT JOIN stream_records r ON r.stream_id = w.value AND r.format = ?4
WHERE e.stream_version > coalesce(r.version, 0)
UNION ALL SELECT 1, {EVENT_COLUMNS} FROM events
  WHERE stream_id IN (SELECT value FROM json_each(?2)) AND stream_version = 1
UNION ALL SELECT * FROM (SELECT 2, {EVENT_COLUMNS} FROM events WHERE ?3 ORDER BY position DESC LIMIT 1)
UNION ALL SELECT 3, {_RECORD} FROM stream_records r
  WHERE r.stream_id IN (SELECT value FROM json_each(?1)) AND r.format = ?4
UNION ALL SELECT 4, {_CLAIM} FROM claims c WHERE c.claim_id IN (SELECT value FROM json_each(?5))
UNION ALL SELECT 5, {_CLAIM} FROM (
    SELECT json_extract(value, '$[0]') AS s, json_extract(value, '$[1]') AS m,
      json_extract(value, '$[2]') AS src FROM json_each(?6)
    UNION SELECT subject_id, metric, source_id FROM claims
      WHERE claim_id IN (SELECT value FROM json_each(?5)) AND metric IS NOT NULL
  ) AS k
  JOIN estimates e ON e.subject_id = k.s AND e.metric = k.m AND e.source_id = k.src
  JOIN claims c ON c.claim_id IN (e.asserted_claim_id, e.projected_claim_id)
ORDER BY 1, 4, 5""",
}
RECORD_PART = 3
CLAIM_PARTS = (4, 5)

_READ_AFTER = {
    "postgresql": f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
    "sqlite": f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
}

# The claim rows a batch of events needs: by id (part 0), every claim under some estimate keys (1), and the
# claims chosen under others (2: the asserted figure and the projection).
_CLAIMS_FOR = {
    "postgresql": """
SELECT 0, claim_id, state FROM claims WHERE claim_id = ANY($1::text[])
UNION ALL SELECT 1, c.claim_id, c.state FROM unnest($2::text[], $3::text[], $4::text[]) AS k(s, m, src)
  JOIN claims c ON c.subject_id = k.s AND c.metric = k.m AND c.source_id = k.src
UNION ALL SELECT 2, c.claim_id, c.state FROM unnest($5::text[], $6::text[], $7::text[]) AS k(s, m, src)
  JOIN estimates e ON e.subject_id = k.s AND e.metric = k.m AND e.source_id = k.src
  JOIN claims c ON c.claim_id IN (e.asserted_claim_id, e.projected_claim_id)""",
    "sqlite": """
SELECT 0, claim_id, state FROM claims WHERE claim_id IN (SELECT value FROM json_each(?1))
UNION ALL SELECT 1, c.claim_id, c.state FROM json_each(?2) AS k
  JOIN claims c ON c.subject_id = json_extract(k.value, '$[0]') AND c.metric = json_extract(k.value, '$[1]')
    AND c.source_id = json_extract(k.value, '$[2]')
UNION ALL SELECT 2, c.claim_id, c.state FROM json_each(?3) AS k
  JOIN estimates e ON e.subject_id = json_extract(k.value, '$[0]')
    AND e.metric = json_extract(k.value, '$[1]') AND e.source_id = json_extract(k.value, '$[2]')
  JOIN claims c ON c.claim_id IN (e.asserted_claim_id, e.projected_claim_id)""",
}

_CLAIM_COLUMNS = (
    "claim_id, subject_id, source_id, metric, status, version, made_position, updated_position, state"
)
_TIMELINE_COLUMNS = "position, subject_id, occurred_on, source_id, kind, entry"
_REGISTRATION_COLUMNS = "stream_id, kind, position, definition"

# Everything a write or a fold changes, in one statement (the events' part only when there are events). The
# parts touch disjoint rows (a key is either deleted or upserted), as the CTEs of one statement must.
_APPEND_CTE = f"""appended AS (
  INSERT INTO events ({EVENT_COLUMNS})
  SELECT * FROM unnest($33::bigint[], $34::uuid[], $35::text[], $36::int[], $37::text[], $38::int[],
                       $39::text[], $40::text[], $41::date[], $42::timestamptz[], $43::text[], $44::text[])
), kept AS (
  INSERT INTO stream_records (stream_id, version, format, state)
  SELECT * FROM unnest($45::text[], $46::int[], $47::int[], $48::text[])
  ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, format = excluded.format,
    state = excluded.state
), grown AS (
  INSERT INTO tree_nodes (level, idx, hash) SELECT * FROM unnest($49::smallint[], $50::bigint[], $51::bytea[])
), resigned AS (
  DELETE FROM log_checkpoints WHERE size = $56::bigint
), signed AS (
  INSERT INTO log_checkpoints (size, root_hash, recorded_at, note)
  SELECT $52::bigint, $53::text, $54::timestamptz, $55::text WHERE $52::bigint IS NOT NULL
  ON CONFLICT (size) DO NOTHING
), """
_SAVE_POSTGRES = f"""
WITH {{appending}}claimed AS (
  INSERT INTO claims ({_CLAIM_COLUMNS})
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                       $7::bigint[], $8::bigint[], $9::text[])
  ON CONFLICT (claim_id) DO UPDATE SET subject_id = excluded.subject_id, source_id = excluded.source_id,
    metric = excluded.metric, status = excluded.status, version = excluded.version,
    made_position = excluded.made_position, updated_position = excluded.updated_position,
    state = excluded.state
), unchosen AS (
  DELETE FROM estimates e USING unnest($10::text[], $11::text[], $12::text[]) AS k(s, m, src)
  WHERE e.subject_id = k.s AND e.metric = k.m AND e.source_id = k.src
), chosen AS (
  INSERT INTO estimates (subject_id, metric, source_id, asserted_claim_id, projected_claim_id)
  SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
  ON CONFLICT (subject_id, metric, source_id) DO UPDATE SET asserted_claim_id = excluded.asserted_claim_id,
    projected_claim_id = excluded.projected_claim_id
), defined AS (
  INSERT INTO registrations ({_REGISTRATION_COLUMNS})
  SELECT * FROM unnest($18::text[], $19::text[], $20::bigint[], $21::text[])
  ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, position = excluded.position,
    definition = excluded.definition
), unlisted AS (
  DELETE FROM timeline WHERE position = ANY($22::bigint[])
), listed AS (
  INSERT INTO timeline ({_TIMELINE_COLUMNS})
  SELECT * FROM unnest($23::bigint[], $24::text[], $25::date[], $26::text[], $27::text[], $28::text[])
  ON CONFLICT (position) DO UPDATE SET subject_id = excluded.subject_id, occurred_on = excluded.occurred_on,
    source_id = excluded.source_id, kind = excluded.kind, entry = excluded.entry
), checked AS (
  INSERT INTO projection_checkpoints (name, position, updated_at)
  SELECT $29::text, $30::bigint, $31::timestamptz WHERE $29::text IS NOT NULL
  ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
)
SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', '') WHERE $32::boolean) AS notified"""

_SAVE_APPENDING = _SAVE_POSTGRES.replace("{appending}", _APPEND_CTE)
_SAVE_FOLDING = _SAVE_POSTGRES.replace("{appending}", "")

_SQLITE = {
    "events": f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "claims": f"""INSERT INTO claims ({_CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (claim_id) DO UPDATE SET subject_id = excluded.subject_id, source_id = excluded.source_id,
  metric = excluded.metric, status = excluded.status, version = excluded.version,
  made_position = excluded.made_position, updated_position = excluded.updated_position,
  state = excluded.state""",
    "unchosen": "DELETE FROM estimates WHERE subject_id = ? AND metric = ? AND source_id = ?",
    "chosen": """INSERT INTO estimates (subject_id, metric, source_id, asserted_claim_id, projected_claim_id)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (subject_id, metric, source_id) DO UPDATE SET asserted_claim_id = excluded.asserted_claim_id,
  projected_claim_id = excluded.projected_claim_id""",
    "defined": f"""INSERT INTO registrations ({_REGISTRATION_COLUMNS}) VALUES (?, ?, ?, ?)
ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, position = excluded.position,
  definition = excluded.definition""",
    "unlisted": "DELETE FROM timeline WHERE position = ?",
    "listed": f"""INSERT INTO timeline ({_TIMELINE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (position) DO UPDATE SET subject_id = excluded.subject_id, occurred_on = excluded.occurred_on,
  source_id = excluded.source_id, kind = excluded.kind, entry = excluded.entry""",
    "kept": """INSERT INTO stream_records (stream_id, version, format, state) VALUES (?, ?, ?, ?)
ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, format = excluded.format,
  state = excluded.state""",
    "grown": "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
    "resigned": "DELETE FROM log_checkpoints WHERE size = ?",
    "signed": """INSERT INTO log_checkpoints (size, root_hash, recorded_at, note) VALUES (?, ?, ?, ?)
ON CONFLICT (size) DO NOTHING""",
    "checked": """INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at""",
}


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


def _taken(stream_id: str, version: int) -> WrongExpectedVersion:
    return WrongExpectedVersion(stream_id, version - 1, None)


@functools.lru_cache(maxsize=16)  # every event of a write has the same time
def sqlite_time(value: dt.datetime) -> str:
    """A UTC time as SQLAlchemy stores it in SQLite (naive, with microseconds), so both writers agree."""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond:06d}"


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
    """An ``events`` row as read (in ``EVENT_COLUMNS`` order), with Python types on both databases."""
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
    """Rows of ``_READ_FOR_WRITE``: (part, *event columns), events typed as ``stored_event`` gives them
    (a record's row is (3, None, None, stream_id, version, None, None, state, ...), a claim's is
    (4 or 5, None, None, claim_id, None, None, None, state, ...))."""
    driver = await driver_of(conn)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = await driver.fetch(
            _READ_FOR_WRITE[dialect], whole, probe, head, record_format, list(claim_ids), *_columns(keys, 3)
        )
    else:
        rows = await driver.execute_fetchall(
            _READ_FOR_WRITE[dialect],
            (
                json.dumps(whole),
                json.dumps(probe),
                int(head),
                record_format,
                json.dumps(claim_ids),
                json.dumps(keys),
            ),
        )
    return [tuple(r) if r[0] >= RECORD_PART else (r[0], *stored_event(r[1:], dialect)) for r in rows]


async def read_after(conn: AsyncConnection, after: int, limit: int) -> list[Row]:
    """Up to ``limit`` events after position ``after``, in order, typed as ``stored_event`` gives them."""
    driver = await driver_of(conn)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = await driver.fetch(_READ_AFTER[dialect], after, limit)
    else:
        rows = await driver.execute_fetchall(_READ_AFTER[dialect], (after, limit))
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
        query = _CLAIMS_FOR["postgresql"]
        return list(await driver.fetch(query, ids, *_columns(full, 3), *_columns(light, 3)))
    return list(
        await driver.execute_fetchall(
            _CLAIMS_FOR["sqlite"], (json.dumps(ids), json.dumps(full), json.dumps(light))
        )
    )


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[r[i] for r in rows] for i in range(width)]


def _sealing(changes: Changes) -> tuple[Any, ...]:
    # Parameters $49-$56 of the appending statement: tree nodes, the checkpoint, the one it replaces.
    signed = changes.signed if changes.signed is not None else (None, None, None, None)
    return (*_columns(changes.tree_nodes, 3), *signed, changes.superseded)


def _sqlite_signed(row: Row) -> Row:
    return (row[0], row[1], sqlite_time(row[2]), row[3])


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
        # (level, idx, hash), the signed log checkpoint (size, root hex, time, note), and the size of one
        # this transaction signed before, which the new one replaces.
        self.tree_nodes: list[Row] = []
        self.signed: Row | None = None
        self.superseded: int | None = None

    def __bool__(self) -> bool:
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


async def write(conn: AsyncConnection, changes: Changes) -> None:
    """Write ``changes`` in the caller's transaction: one statement on PostgreSQL (with the NOTIFY that wakes
    other processes' readers when events were appended), one per kind of row on SQLite."""
    if not changes:
        return
    driver = await driver_of(conn)
    now = dt.datetime.now(dt.UTC)
    if changes.events:
        conn.info.setdefault(APPENDED, int(changes.events[0][0]))
        sealer = conn.info.get(SEALER)
        if sealer is not None:
            await sealer.seal(conn, changes)
    name, position = changes.checkpoint if changes.checkpoint is not None else (None, 0)
    if conn.dialect.name == "postgresql":
        notify = bool(changes.events)
        # The fold of a rebuild appends nothing, and must not lock the log against writers as an INSERT
        # into it would, even of no rows: it uses the statement without that part.
        appending = _SAVE_APPENDING if changes.events else _SAVE_FOLDING
        try:
            await driver.fetchval(
                appending,
                *_columns(changes.claims, 9),
                *_columns(changes.unchosen, 3),
                *_columns(changes.chosen, 5),
                *_columns(changes.defined, 4),
                changes.unlisted,
                *_columns(changes.listed, 6),
                name,
                position,
                now,
                notify,
                *(_columns(changes.events, 12) if changes.events else ()),
                *(_columns(changes.streams, 4) if changes.events else ()),
                *(_sealing(changes) if changes.events else ()),
            )
        except asyncpg.UniqueViolationError as error:
            # Optimistic concurrency's last word, the unique (stream, version) key; its detail names the
            # key, as "Key (stream_id, stream_version)=(claim-x, 2) already exists."
            if error.constraint_name != _STREAM_KEY:
                raise
            key = str(error.detail or "").partition("=(")[2].rpartition(")")[0]
            stream_id, _, version = key.rpartition(", ")
            raise _taken(stream_id, int(version)) from None
        if notify:
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
    ):
        if not rows:
            continue
        before = driver.total_changes
        try:
            await driver.executemany(_SQLITE[kind], rows)
        except sqlite3.IntegrityError as error:
            if kind != "events" or "events.stream_id, events.stream_version" not in str(error):
                raise
            # The rows ahead of the one refused went in (and roll back with the transaction).
            refused = changes.events[driver.total_changes - before]
            raise _taken(refused[2], refused[3]) from None
