"""What went wrong with the database: a fault that passes on its own (the log's lock busy, the server
unreachable), told apart from the rest by the chain of errors under SQLAlchemy's; and a write begun without
the log's lock that must run again under it."""

from __future__ import annotations

import errno
import socket
import sqlite3

import asyncpg
import sqlalchemy as sa


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during (a driver's error under SQLAlchemy's), in that order."""
    found: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in found:
        found.append(seen)
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return found


class NeedsLock(Exception):
    """A write begun without the log's lock (``Database.append``) came to something only a transaction that
    holds it may do (a statement through SQLAlchemy, a seal that must extend the stored tree or leave events
    unsigned): nothing was written. Run it again in ``Database.write``."""


class MovedOn(NeedsLock):
    """A write begun without the log's lock found, once it held it, that the log had moved on since its
    reads (another process or transaction appended): nothing was written."""


class Busy(TimeoutError):
    """A write waited its longest for the log's write lock, held by another write."""


_BUSY_SQLITE = 5  # SQLITE_BUSY
_UNREACHABLE = (
    ConnectionError,  # refused, reset, aborted
    TimeoutError,  # connecting took too long
    socket.gaierror,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection found gone
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,  # another backend crashed and the server restarts
    # "another operation is in progress": a connection a server restart cut off mid-statement.
    asyncpg.InternalClientError,
)
_NO_ROUTE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def _unreachable(cause: BaseException) -> bool:
    if isinstance(cause, _UNREACHABLE):
        return True
    if isinstance(cause, asyncpg.InterfaceError):
        # asyncpg raises it for a caller's mistakes too (a wrong number of arguments): only a connection
        # closed under it, or left mid-statement, is the database's doing.
        text = str(cause)
        return "closed" in text or "in progress" in text
    if isinstance(cause, OSError):
        return cause.errno in _NO_ROUTE
    return isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated


def fault_of(exc: BaseException) -> tuple[str, BaseException] | None:
    """What kind of passing fault of the database ``exc`` is ("busy", "unreachable"), with the error in its
    chain that says so, or None: a fault that goes away on its own, so retrying later is the answer."""
    for cause in causes(exc):
        if isinstance(cause, Busy | asyncpg.LockNotAvailableError):
            return "busy", cause
        if isinstance(cause, sqlite3.OperationalError) and (
            getattr(cause, "sqlite_errorcode", 0) & 0xFF == _BUSY_SQLITE or "locked" in str(cause)
        ):
            return "busy", cause
        if _unreachable(cause):
            return "unreachable", cause
    return None
