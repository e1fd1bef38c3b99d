"""The baselines every target is a ratio to: raw SQL on the same database and the `eventsourcing` library."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from typing import Any

import asyncpg
from eventsourcing import postgres as es_postgres
from eventsourcing import sqlite as es_sqlite
from eventsourcing.persistence import StoredEvent
from sqlalchemy.engine import make_url

from timeline.domain import upcasting
from timeline.domain.events import encode_event
from timeline.store.driver import columns
from timeline.store.statements import EVENT_COLUMNS
from timeline_bench.seed import claim_made

RAW_TABLE = (
    "CREATE TABLE raw_events (position BIGINT PRIMARY KEY, stream_id TEXT NOT NULL, "
    "version INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, "
    "recorded_at TEXT NOT NULL)"
)


def raw_rows(count: int, tag: str) -> list[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return [
        (
            i,
            f"claim-{tag}-{i}",
            1,
            "ClaimMade",
            encode_event(claim_made(i, tag)).decode(),
            '{"recorded_by":"bench"}',
            now,
        )
        for i in range(1, count + 1)
    ]


async def raw_insert(
    dialect: str, url: str, rows: list[tuple[Any, ...]], per_transaction: int, copy: bool = False
) -> float:
    """Store ``rows`` in a bare table of their own, ``per_transaction`` a transaction (or by one COPY), and
    return the seconds the inserts and commits took: connecting, setting WAL, creating the table and closing
    (which checkpoints SQLite's WAL) are left out, as every rate they are compared with leaves them out. With
    them in, the baseline ran at 0.38x (SQLite, 2,000 rows in batches of 100) to 0.91x (PostgreSQL, one a
    transaction) its rate (bench/results-2026-12-05-seventeenth-targets.txt, section 7)."""
    if dialect == "sqlite":
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(RAW_TABLE.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY"))
            start = time.perf_counter()
            for first in range(0, len(rows), per_transaction):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO raw_events VALUES (?,?,?,?,?,?,?)", rows[first : first + per_transaction]
                )
                conn.execute("COMMIT")
            return time.perf_counter() - start
        finally:
            conn.close()
    pg = await asyncpg.connect(pg_dsn(url))
    try:
        await pg.execute(RAW_TABLE.replace("recorded_at TEXT", "recorded_at TIMESTAMPTZ"))
        records = [(*r[:6], dt.datetime.fromisoformat(r[6])) for r in rows]
        start = time.perf_counter()
        if copy:
            await pg.copy_records_to_table("raw_events", records=records)
        else:
            for first in range(0, len(records), per_transaction):
                async with pg.transaction():
                    await pg.executemany(
                        "INSERT INTO raw_events VALUES ($1,$2,$3,$4,$5,$6,$7)",
                        records[first : first + per_transaction],
                    )
        return time.perf_counter() - start
    finally:
        await pg.close()


def at_our_durability(pool: Any) -> None:
    """Make a peer SQLite connection pool open its connections as ours are (WAL, synchronous=NORMAL): the
    library leaves SQLite's default (FULL, a sync per commit), which would compare two durabilities."""
    create = pool._create_connection

    def created() -> Any:
        connection = create()
        connection._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        return connection

    pool._create_connection = created


def peer_recorder(dialect: str, url: str) -> Any:
    """The peer's application recorder on the same database (SQLite: a file beside ours, as durable)."""
    recorder: Any
    if dialect == "sqlite":
        lite = es_sqlite.SQLiteDatastore(sqlite_path(url) + ".peer")
        at_our_durability(lite.pool)
        recorder = es_sqlite.SQLiteApplicationRecorder(lite)
    else:
        u = make_url(url)
        datastore = es_postgres.PostgresDatastore(
            dbname=str(u.database),
            host=str(u.host),
            port=u.port or 5432,
            user=str(u.username),
            password=u.password or "",
        )
        recorder = es_postgres.PostgresApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def peer_events(count: int, tag: str) -> list[Any]:
    return [
        StoredEvent(
            originator_id=uuid.uuid5(uuid.NAMESPACE_OID, f"{tag}-{i}"),
            originator_version=1,
            topic="ClaimMade",
            state=encode_event(claim_made(i, tag)),
        )
        for i in range(count)
    ]


def peer_insert(recorder: Any, stored: list[Any], per_call: int) -> int:
    for start in range(0, len(stored), per_call):
        recorder.insert_events(stored[start : start + per_call])
    return len(stored)


_PAGE = 10_000  # events a raw read asks for at once


async def read_and_decode(dialect: str, url: str) -> tuple[int, float]:
    """The floor under any rebuild: every event of timeline's log read in pages with the raw driver and
    decoded into its domain event (through the upcasters, as every read is), nothing else done; the number
    of events and the seconds the reading and decoding took. Connecting and closing are left out, as for
    ``raw_insert``: at 20,000 events they added a sixth to PostgreSQL's read (bench/results-2026-12-05-
    seventeenth-targets.txt, section 8)."""
    count, after = 0, 0
    query = (
        "SELECT position, data, type, schema_version FROM events WHERE position > {} "
        "ORDER BY position LIMIT {}"
    )
    if dialect == "sqlite":
        lite = sqlite3.connect(sqlite_path(url))
        try:
            start = time.perf_counter()
            while rows := lite.execute(query.format("?", "?"), (after, _PAGE)).fetchall():
                for _, data, kind, version in rows:
                    upcasting.decode(data, kind, version)
                count += len(rows)
                after = rows[-1][0]
            return count, time.perf_counter() - start
        finally:
            lite.close()
    pg = await asyncpg.connect(pg_dsn(url))
    try:
        start = time.perf_counter()
        statement = await pg.prepare(query.format("$1", "$2"))
        while rows := await statement.fetch(after, _PAGE):
            for _, data, kind, version in rows:
                upcasting.decode(data, kind, version)
            count += len(rows)
            after = rows[-1][0]
        return count, time.perf_counter() - start
    finally:
        await pg.close()


# What one write of timeline stores, as rows: the event, its claim's row, its timeline entry, the estimate
# it changes (the views a ClaimMade touches; stream records, tree nodes and checkpoints left out, so this
# floor is lower than what a write really costs the database).
_STORED = {
    "events": f"SELECT {EVENT_COLUMNS} FROM events ORDER BY position",
    "claims": "SELECT claim_id, subject_id, source_id, metric, status, version, made_position, "
    "updated_position, state FROM claims",
    "timeline": "SELECT position, subject_id, occurred_on, entry, source_id, kind FROM timeline",
    "estimates": "SELECT subject_id, metric, source_id, asserted_claim_id, projected_claim_id FROM estimates",
}
# Each table's columns, as ``_STORED`` reads them.
_COLUMNS = {
    name: [column.strip() for column in query.removeprefix("SELECT ").split(" FROM ")[0].split(",")]
    for name, query in _STORED.items()
}
_STORE_POSTGRES = f"""WITH e AS (
  INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[],
    $5::text[], $6::int[], $7::text[], $8::text[], $9::date[], $10::timestamptz[], $11::text[], $12::text[])
), c AS (
  INSERT INTO claims (claim_id, subject_id, source_id, metric, status, version, made_position,
    updated_position, state)
  SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::int[],
    $19::bigint[], $20::bigint[], $21::text[])
), t AS (
  INSERT INTO timeline (position, subject_id, occurred_on, entry, source_id, kind)
  SELECT * FROM unnest($22::bigint[], $23::text[], $24::date[], $25::text[], $26::text[], $27::text[])
)
INSERT INTO estimates SELECT * FROM unnest($28::text[], $29::text[], $30::text[], $31::text[], $32::text[])
ON CONFLICT (subject_id, metric, source_id) DO UPDATE SET asserted_claim_id = excluded.asserted_claim_id,
  projected_claim_id = excluded.projected_claim_id"""
_STORE_SQLITE = {
    "events": f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "claims": "INSERT INTO claims (claim_id, subject_id, source_id, metric, status, version, made_position, "
    "updated_position, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "timeline": "INSERT INTO timeline (position, subject_id, occurred_on, entry, source_id, kind) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "estimates": "INSERT OR REPLACE INTO estimates VALUES (?, ?, ?, ?, ?)",
}


async def _copied(pg: asyncpg.Connection, batches: list[dict[str, list[tuple[Any, ...]]]]) -> float:
    """``stored_rows`` by COPY, table by table in one transaction, for a single batch (a later batch's
    estimate rows would replace earlier ones, which COPY cannot)."""
    [batch] = batches
    start = time.perf_counter()
    async with pg.transaction():
        for name, rows in batch.items():
            await pg.copy_records_to_table(name, records=rows, columns=_COLUMNS[name])
    return len(batch["events"]) / (time.perf_counter() - start)


def _batches(
    stored: dict[str, list[tuple[Any, ...]]], skip: int, per_transaction: int
) -> tuple[list[tuple[Any, ...]], list[dict[str, list[tuple[Any, ...]]]]]:
    """The first ``skip`` events (set-up, stored untimed), then each transaction's rows: its events and the
    claim, timeline and estimate rows they made."""
    events = stored["events"]
    claims = {row[6]: row for row in stored["claims"]}
    entries = {row[0]: row for row in stored["timeline"]}
    estimates = {row[:3]: row for row in stored["estimates"]}
    batches = []
    for start in range(skip, len(events), per_transaction):
        chunk = events[start : start + per_transaction]
        made = [claims[e[0]] for e in chunk if e[0] in claims]
        batches.append(
            {
                "events": chunk,
                "claims": made,
                "timeline": [entries[e[0]] for e in chunk if e[0] in entries],
                "estimates": list({c[1:4]: estimates[c[1], c[3], c[2]] for c in made if c[3]}.values()),
            }
        )
    return events[:skip], batches


async def read_stored(dialect: str, written: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a timeline write stored in ``written``, table by table: its events and the claim, timeline
    and estimate rows they made (as ``_COLUMNS`` names them)."""
    if dialect == "sqlite":
        lite = sqlite3.connect(sqlite_path(written))
        try:
            return {name: lite.execute(query).fetchall() for name, query in _STORED.items()}
        finally:
            lite.close()
    pg = await asyncpg.connect(pg_dsn(written))
    try:
        return {name: [tuple(r) for r in await pg.fetch(query)] for name, query in _STORED.items()}
    finally:
        await pg.close()


def pg_dsn(url: str) -> str:
    """The asyncpg DSN of a PostgreSQL database URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> str:
    """The file of a SQLite database URL."""
    path = make_url(url).database
    assert path is not None, url
    return path


async def stored_rows(
    dialect: str, written: str, empty: str, per_transaction: int, skip: int, *, copy: bool = False
) -> float:
    """Events a second with which the rows a timeline write stored (read back from ``written``) go into the
    empty timeline database ``empty`` alone, ``per_transaction`` events' rows a transaction: no rules, no
    hashing, no folding. On PostgreSQL each transaction is one statement, sent outside any transaction (one
    round trip), or with ``copy`` a COPY per table in a transaction (the faster way for thousands of rows);
    on SQLite, an INSERT per table between BEGIN IMMEDIATE and COMMIT."""
    stored = await read_stored(dialect, written)
    setup, batches = _batches(stored, skip, per_transaction)
    if dialect == "sqlite":
        conn = sqlite3.connect(sqlite_path(empty), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executemany(_STORE_SQLITE["events"], setup)
            start = time.perf_counter()
            for batch in batches:
                conn.execute("BEGIN IMMEDIATE")
                for name, rows in batch.items():
                    conn.executemany(_STORE_SQLITE[name], rows)
                conn.execute("COMMIT")
            seconds = time.perf_counter() - start
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(pg_dsn(empty))
        try:
            values = ", ".join(f"${i}" for i in range(1, 13))
            await pg.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({values})", setup)
            if copy:
                return await _copied(pg, batches)
            statement = await pg.prepare(_STORE_POSTGRES)
            arguments = [
                (
                    *columns(batch["events"], 12),
                    *columns(batch["claims"], 9),
                    *columns(batch["timeline"], 6),
                    *columns(batch["estimates"], 5),
                )
                for batch in batches
            ]
            start = time.perf_counter()
            for args in arguments:
                await statement.fetch(*args)
            seconds = time.perf_counter() - start
        finally:
            await pg.close()
    return sum(len(b["events"]) for b in batches) / seconds
