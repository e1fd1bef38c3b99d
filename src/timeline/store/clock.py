"""The views' log position, read cheaply enough to check on every request.

A cached response is valid exactly while the views stay at the position it was built from, so the check must
see every commit made before the request arrived, by this process or any other. SQLite answers from a
stdlib connection in microseconds; PostgreSQL from a dedicated asyncpg connection, where concurrent requests
share one query (one that was sent after they all arrived) instead of queueing a query each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from timeline.store import views
from timeline.store.database import Database

_QUERY = "SELECT position, updated_at FROM projection_checkpoints WHERE name = {}"

Reading = tuple[int, dt.datetime | None]


class Clock(Protocol):
    """Where the views stand: their log position and when they last changed."""

    async def now(self) -> Reading:
        """The position and last change as of a moment after this call began."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


def _utc(value: dt.datetime | str | None) -> dt.datetime | None:
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class SqliteClock:
    """A stdlib sqlite3 connection in autocommit mode: every query sees the latest commit of any process."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def now(self) -> Reading:
        """One primary-key lookup, run inline: it is cheaper than a hop to a thread."""
        with self._lock:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, timeout=5
                )
            row = self._conn.execute(_QUERY.format("?"), (views.CHECKPOINT,)).fetchone()
        return (0, None) if row is None else (int(row[0]), _utc(row[1]))

    async def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresClock:
    """One asyncpg connection; requests that ask while a query is out wait for the next one, which covers
    them all, so a burst of requests costs two queries rather than one each."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        self._waiting: asyncio.Future[Reading] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    async def now(self) -> Reading:
        """The views' position from a query sent after this call began."""
        if self._closed:
            raise ConnectionError("the views clock is closed")  # and must not open a connection again
        if self._waiting is None:
            self._waiting = asyncio.get_running_loop().create_future()
        waiting = self._waiting
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="views-clock")
        # shield: one caller giving up (a client hanging up) must not cancel the others' answer.
        return await asyncio.shield(waiting)

    async def _run(self) -> None:
        while self._waiting is not None:
            round_, self._waiting = self._waiting, None  # later callers wait for the next round
            try:
                reading = await self._query()
            except Exception as error:  # handed to every waiter, who falls back
                round_.set_exception(error)
                round_.exception()  # retrieved here, so a round nobody awaits anymore logs nothing
            else:
                round_.set_result(reading)

    async def _query(self) -> Reading:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn)
            row = await self._conn.fetchrow(_QUERY.format("$1"), views.CHECKPOINT)
        except BaseException:
            await self._drop()
            raise
        return (0, None) if row is None else (int(row[0]), _utc(row[1]))

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        """Stop and close the connection."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        await self._drop()


class EngineClock:
    """Through the engine's own pool: for databases no second connection can open (SQLite in memory)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def now(self) -> Reading:
        """The views' freshness, in a read transaction of its own."""
        async with self._db.read() as conn:
            return await views.freshness(conn)

    async def close(self) -> None:
        """Nothing to release."""


def for_database(db: Database) -> Clock:
    """The cheapest clock the database allows."""
    if db.dialect == "postgresql":
        return PostgresClock(db.dsn)
    path = make_url(db.url).database
    if path and path != ":memory:" and not path.startswith("file:"):
        return SqliteClock(path)
    return EngineClock(db)
