"""The baselines every target is a ratio to: raw SQL on the same database and the `eventsourcing` library."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from typing import Any

import asyncpg
from eventsourcing import postgres as es_postgres
from eventsourcing import sqlite as es_sqlite
from eventsourcing.persistence import StoredEvent
from sqlalchemy.engine import make_url

from timeline.domain import upcasting
from timeline.domain.events import encode_event
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
) -> int:
    if dialect == "sqlite":
        path = make_url(url).database
        assert path is not None
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(RAW_TABLE.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY"))
            for start in range(0, len(rows), per_transaction):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO raw_events VALUES (?,?,?,?,?,?,?)", rows[start : start + per_transaction]
                )
                conn.execute("COMMIT")
        finally:
            conn.close()
        return len(rows)
    pg = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await pg.execute(RAW_TABLE.replace("recorded_at TEXT", "recorded_at TIMESTAMPTZ"))
        records = [(*r[:6], dt.datetime.fromisoformat(r[6])) for r in rows]
        if copy:
            await pg.copy_records_to_table("raw_events", records=records)
        else:
            for start in range(0, len(records), per_transaction):
                async with pg.transaction():
                    await pg.executemany(
                        "INSERT INTO raw_events VALUES ($1,$2,$3,$4,$5,$6,$7)",
                        records[start : start + per_transaction],
                    )
    finally:
        await pg.close()
    return len(rows)


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
        path = make_url(url).database
        assert path is not None
        lite = es_sqlite.SQLiteDatastore(path + ".peer")
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


async def read_and_decode(dialect: str, url: str) -> int:
    """The floor under any rebuild: every event of timeline's log read in pages with the raw driver and
    decoded into its domain event (through the upcasters, as every read is), nothing else done; the number
    of events."""
    count, after = 0, 0
    query = (
        "SELECT position, data, type, schema_version FROM events WHERE position > {} "
        "ORDER BY position LIMIT {}"
    )
    if dialect == "sqlite":
        path = make_url(url).database
        assert path is not None
        lite = sqlite3.connect(path)
        try:
            while rows := lite.execute(query.format("?", "?"), (after, _PAGE)).fetchall():
                for _, data, kind, version in rows:
                    upcasting.decode(data, kind, version)
                count += len(rows)
                after = rows[-1][0]
        finally:
            lite.close()
        return count
    pg = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        statement = await pg.prepare(query.format("$1", "$2"))
        while rows := await statement.fetch(after, _PAGE):
            for _, data, kind, version in rows:
                upcasting.decode(data, kind, version)
            count += len(rows)
            after = rows[-1][0]
    finally:
        await pg.close()
    return count
