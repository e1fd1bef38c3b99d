"""One idle connection kept out of its pool for the next write of the same kind.

A checkout from SQLAlchemy's pool and its return cost about 200 us of Python (the pool's fairy and record,
the AsyncConnection around them, their greenlet switches): on PostgreSQL twice a whole SELECT 1 round trip,
and a tenth to a fifth of a single write's Python on either database (bench/results-2026-12-05-fifteenth-
parked.txt). A process's writes take turns, so the connection one write leaves is the one the next would
take: kept here, neither pays. It is kept only after a write that ended well, with no transaction open on it,
by the pool the engine has now (not one ``dispose`` replaced meanwhile); one that failed or was cancelled
goes back to the pool, as before. A kept connection that someone used after its write ended (and so holds a
transaction, on SQLite the file's write lock) or that the server closed is not handed out again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Parking:
    """Holds at most one idle connection of ``engine``, with its driver connection; none unless ``keeps``
    (a pool too small to spare one: readers would wait on it)."""

    def __init__(self, engine: AsyncEngine, *, keeps: bool = True) -> None:
        self.engine = engine
        self.keeps = keeps
        self.held: tuple[AsyncConnection, Any] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[AsyncConnection, Any]]:
        """A connection and its driver connection for one write, kept afterwards if the write ended well
        (the driver connection is None where nothing is kept: it is only looked at to keep one)."""
        if not self.keeps:
            async with self.engine.connect() as conn:
                yield conn, None
            return
        pool = self.engine.sync_engine.pool
        conn, driver = await self.take()
        clean = False
        try:
            yield conn, driver
            # Not into a pool that ``dispose`` replaced meanwhile: that one's connections are being closed.
            clean = self.engine.sync_engine.pool is pool
        finally:
            await self.give(conn, driver, clean=clean)

    async def take(self) -> tuple[AsyncConnection, Any]:
        """The kept connection unless the server closed it meanwhile (a restart) or it was used after its
        write ended, else one from the pool."""
        held, self.held = self.held, None
        if held is not None:
            if _usable(*held) and not _in_transaction(*held):
                return held
            await _give_back(*held)
        conn = await self.engine.connect()
        return conn, (await conn.get_raw_connection()).driver_connection

    async def give(self, conn: AsyncConnection, driver: Any, *, clean: bool) -> None:
        """Keep ``conn`` for the next write if the last ended well (``clean``), else give it back."""
        if clean and self.held is None and _usable(conn, driver) and not _in_transaction(conn, driver):
            self.held = (conn, driver)
        else:
            await _give_back(conn, driver)

    async def close(self) -> None:
        """Give the kept connection back to the pool (before the pool is disposed of)."""
        held, self.held = self.held, None
        if held is not None:
            await _give_back(*held)


async def _give_back(conn: AsyncConnection, driver: Any) -> None:
    # The pool rolls back a transaction SQLAlchemy began, and drops a connection the server closed. One begun
    # on the driver itself, past SQLAlchemy, its reset would not see: that connection is discarded.
    if not conn.closed and not conn.in_transaction() and _driver_in_transaction(driver):
        await conn.invalidate()
    else:
        await conn.close()


def _usable(conn: AsyncConnection, driver: Any) -> bool:
    if conn.closed or conn.invalidated:
        return False
    # asyncpg knows its connection closed once the loop has read the server's goodbye; SQLite's never is.
    is_closed = getattr(driver, "is_closed", None)
    return not (is_closed is not None and is_closed())


def _in_transaction(conn: AsyncConnection, driver: Any) -> bool:
    return conn.in_transaction() or _driver_in_transaction(driver)


def _driver_in_transaction(driver: Any) -> bool:
    # asyncpg's own view (a write without a transaction of its own sends statements past SQLAlchemy).
    is_in_transaction = getattr(driver, "is_in_transaction", None)
    return bool(is_in_transaction is not None and is_in_transaction())
