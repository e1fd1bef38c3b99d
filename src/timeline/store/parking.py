"""One idle connection kept out of its pool for the next write of the same kind.

A checkout from SQLAlchemy's pool and its return cost about 200 us of Python (the pool's fairy and record,
the AsyncConnection around them, their greenlet switches): on PostgreSQL twice a whole SELECT 1 round trip,
and a tenth to a fifth of a single write's Python on either database (bench/results-2026-12-05-fifteenth-
parked.txt). A process's writes take turns, so the connection one write leaves is the one the next would
take: kept here, neither pays. It is kept only after a write that ended well with nothing under way on the
connection; one that failed or was cancelled may have left a statement half sent, and goes back to the pool
to be reset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Parking:
    """Holds at most one idle connection of ``engine``, with its driver connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.held: tuple[AsyncConnection, Any] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[AsyncConnection, Any]]:
        """A connection and its driver connection for one write, kept afterwards if the write ended well."""
        conn, driver = await self.take()
        clean = False
        try:
            yield conn, driver
            clean = True
        finally:
            await self.give(conn, driver, clean=clean)

    async def take(self) -> tuple[AsyncConnection, Any]:
        """The kept connection unless the server closed it meanwhile (a restart), else one from the pool."""
        held, self.held = self.held, None
        if held is not None:
            if _usable(*held):
                return held
            await held[0].close()  # the pool drops it, as its check at checkout would have
        conn = await self.engine.connect()
        return conn, (await conn.get_raw_connection()).driver_connection

    async def give(self, conn: AsyncConnection, driver: Any, *, clean: bool) -> None:
        """Keep ``conn`` for the next write if the last ended well (``clean``), else give it back."""
        if clean and self.held is None and _usable(conn, driver) and not _in_transaction(conn, driver):
            self.held = (conn, driver)
        else:
            await conn.close()

    async def close(self) -> None:
        """Give the kept connection back to the pool (before the pool is disposed of)."""
        held, self.held = self.held, None
        if held is not None:
            await held[0].close()


def _usable(conn: AsyncConnection, driver: Any) -> bool:
    if conn.closed or conn.invalidated:
        return False
    # asyncpg knows its connection closed once the loop has read the server's goodbye; SQLite's never is.
    is_closed = getattr(driver, "is_closed", None)
    return not (is_closed is not None and is_closed())


def _in_transaction(conn: AsyncConnection, driver: Any) -> bool:
    if conn.in_transaction():
        return True
    # asyncpg's own view (a write without a transaction of its own sends statements past SQLAlchemy).
    is_in_transaction = getattr(driver, "is_in_transaction", None)
    return bool(is_in_transaction is not None and is_in_transaction())
