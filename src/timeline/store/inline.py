"""SQLite connections that run each statement on the event loop's own thread, for SQLAlchemy's aiosqlite
dialect (given as its ``async_creator``).

aiosqlite hands every call to a thread of its own and waits for the answer: a write made about 28 such
hand-offs, which cost more than its statements (each a few microseconds to a millisecond). Here a statement
runs where it is awaited. The one wait that could be long, for another connection's write lock, does not
happen in SQLite's busy handler (which would stall every request on the loop): the connection has no busy
timeout, and a statement that finds the database locked is retried after an asyncio sleep, until the
timeout a threaded connection would have waited.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Waits between attempts at a locked database: short at first (another writer's transaction is usually a
# millisecond or two), then no more than this.
_FIRST_WAIT = 0.0005
_LONGEST_WAIT = 0.05


def _busy(error: sqlite3.OperationalError) -> bool:
    # Another connection holds the lock: the one case SQLite's busy handler would have waited for. Not a
    # stale snapshot (the transaction must restart), nor a table locked by this same connection
    # (SQLITE_LOCKED): no wait cures those.
    code = getattr(error, "sqlite_errorcode", 0)
    return code & 0xFF == sqlite3.SQLITE_BUSY and code != _BUSY_SNAPSHOT


_BUSY_SNAPSHOT = getattr(sqlite3, "SQLITE_BUSY_SNAPSHOT", 517)


class InlineCursor:
    """A cursor with aiosqlite's awaitable methods, each run at once."""

    def __init__(self, owner: InlineConnection) -> None:
        self._owner = owner
        self._cursor = owner.sqlite.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        await self._owner.attempt(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = list(parameters)  # a retry must see them all again
        await self._owner.attempt(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        for row in self._cursor:
            yield row


class _Immediately:
    """What SQLAlchemy's adapter puts work on (aiosqlite's queue to its thread): here it runs at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # handed to whoever awaits the future, as aiosqlite does
            future.set_exception(error)


class InlineConnection:
    """A sqlite3 connection with the part of aiosqlite's interface that SQLAlchemy's adapter uses."""

    def __init__(self, connection: sqlite3.Connection, timeout: float) -> None:
        self.sqlite = connection
        self.timeout = timeout
        self._tx = _Immediately()
        self._closed = False

    @property
    def _conn(self) -> sqlite3.Connection:  # where SQLAlchemy's adapter sets the isolation level
        return self.sqlite

    @property
    def _connection(self) -> sqlite3.Connection | None:  # the adapter commits only while this is set
        return None if self._closed else self.sqlite

    @property
    def isolation_level(self) -> str | None:
        return self.sqlite.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self.sqlite.in_transaction

    @property
    def total_changes(self) -> int:
        return self.sqlite.total_changes

    async def attempt(self, call: Callable[..., T], *args: Any) -> T:
        """Run ``call`` now; while the database is locked by another connection, try again after a sleep
        that lets the loop (and the lock's holder, if it is on this loop) go on."""
        deadline: float | None = None
        wait = _FIRST_WAIT
        while True:
            changes = self.sqlite.total_changes
            try:
                return call(*args)
            except sqlite3.OperationalError as error:
                # Retried only if it changed nothing: an executemany outside a write transaction may have
                # written some rows before it met the lock, and must not write them twice.
                if not _busy(error) or self.sqlite.total_changes != changes:
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.timeout
                if now >= deadline:
                    raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, _LONGEST_WAIT)

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        return await InlineCursor(self).execute(sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        return await InlineCursor(self).executemany(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        cursor = await self.execute(sql, parameters)
        try:
            return cursor._cursor.fetchall()
        finally:
            cursor._cursor.close()

    async def commit(self) -> None:
        await self.attempt(self.sqlite.commit)

    async def rollback(self) -> None:
        self.sqlite.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.sqlite.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        self._closed = True
        self.sqlite.close()


def creator(path: str, *, timeout: float) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: inline connections to the SQLite file at ``path``."""

    async def connect() -> InlineConnection:
        # No busy timeout in SQLite itself: waiting for a lock is done by ``attempt``, on the loop.
        connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        return InlineConnection(connection, timeout)

    return connect
