"""Engines and transactions for SQLite and PostgreSQL, with one serialized write transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from timeline.signing import Signer
from timeline.store import inline, tree
from timeline.store.connections import (
    WRITE,
    WRITE_PLANS,
    begin_locked,
    check_client,
    configure_sqlite,
    refuse_closed,
    refuse_unlocked,
)
from timeline.store.faults import Busy, NeedsLock
from timeline.store.notify import Listener, Notifier, notify_listeners
from timeline.store.parking import Parking
from timeline.store.seal import SEALED, SEALER, Sealed, Sealer

_log = logging.getLogger("timeline.store")

# Set on a connection's info by the first append of a write transaction, to the first position it appended:
# the transaction then knows to notify readers, and which events are its own to sign.
APPENDED = "timeline_appended"
# Set when the statement that appended also sent the NOTIFY (store.driver), which is then not sent again.
NOTIFIED = "timeline_notified"
# Set on a connection's info, to its driver connection, while it serves a write without a transaction of its
# own (``Database.append``); ``driver_of`` then hands that over without beginning one.
UNLOCKED = "timeline_unlocked"
# Set by ``last_write`` before the write that ends such a write: only that one may append (and commit).
_LAST = "timeline_last_write"
# Seconds a writer waits for the log's write lock before failing (on both databases).
LOCK_TIMEOUT = 30.0
# The advisory lock (PostgreSQL) held while the schema changes: "timeline" in ASCII, out of the way of the
# projections' 32-bit keys.
SCHEMA_LOCK = 0x74696D656C696E65
# Pools of fewer connections give none to be kept for writes (store.parking): readers would wait on it.
_PARKS_FROM = 3


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs and pick the async drivers for them."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
        parsed.drivername, parsed.drivername
    )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def insert_into(conn: AsyncConnection, table: sa.Table) -> Any:
    """An INSERT into ``table`` in the connection's dialect, which can say ON CONFLICT (both have it)."""
    return (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


async def driver_of(conn: AsyncConnection) -> Any:
    """The driver connection behind ``conn`` (sqlite3-like or asyncpg), inside the caller's transaction, for
    hot reads where SQLAlchemy's statement and row processing would cost more than the query."""
    unlocked = conn.info.get(UNLOCKED)
    if unlocked is not None:
        return unlocked
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql" and not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter begins the caller's transaction at its first statement.
        await conn.execute(sa.select(sa.literal(1)))
    return driver


def last_write(conn: AsyncConnection) -> None:
    """In ``Database.append``: the next ``driver.write`` is the one that appends and commits."""
    conn.info[_LAST] = True


def may_write(conn: AsyncConnection) -> bool:
    """Whether ``driver.write`` may write on ``conn``: in a transaction, or as an append's last write."""
    return UNLOCKED not in conn.info or bool(conn.info.get(_LAST))


class Database:
    """One database: an async engine plus read and serialized write transactions. A writer waits at most
    ``lock_timeout`` seconds (30 unless given) for the log's write lock."""

    def __init__(
        self, url: str, *, pool_size: int = 5, lock_timeout: float | None = None, signer: Signer | None = None
    ) -> None:
        self.lock_timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        timeout = self.lock_timeout
        self.url = normalize_url(url)
        # Signs a checkpoint in every transaction that appended; kept outside the database.
        self.signer = signer
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        # A fixed pool: under a burst, requests wait for a pooled connection rather than each opening
        # (and on return closing) one of its own, which on PostgreSQL costs a backend process and a TLS
        # handshake a time and was most of a write's cost under 32 connections.
        # Last in, first out: the connection just returned is taken again, with its prepared statements
        # (asyncpg prepares each per connection; a round-robin pool prepared them on each connection in turn).
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 0, "pool_use_lifo": True}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                # Statements run on the loop's thread, not through aiosqlite's (see store.inline).
                kwargs["async_creator"] = inline.creator(parsed.database, timeout=timeout)
            else:
                # One shared in-memory connection: there is no pool to size.
                kwargs = {"connect_args": {"timeout": timeout}}
        else:
            # A writer waiting longer than this for the log's lock fails instead of hanging; set once per
            # connection rather than with a SET LOCAL round trip in every write transaction.
            kwargs["connect_args"] = {"server_settings": {"lock_timeout": f"{timeout * 1000:.0f}ms"}}
        self.engine = create_async_engine(self.url, **kwargs)
        # Writes without a transaction of their own (``append``) have connections of their own, whose every
        # statement runs a generic plan, as a write transaction's do (``connections.begin_locked``) but with
        # no SET LOCAL to send: the read of a single write took 822 us under the planner's choice and 296 us
        # under a generic plan (medians of six rounds of 300, 2026-12-04). Reads keep the planner's choice.
        self._appender: AsyncEngine | None = None
        self._appending: Parking | None = None
        # The connection the last write transaction used, kept for the next (store.parking) where the pool
        # leaves readers at least two others meanwhile.
        self._writing = Parking(self.engine, keeps=kwargs.get("pool_size", 0) >= _PARKS_FROM)
        if self.dialect == "postgresql":
            event.listen(self.engine.sync_engine, "checkout", refuse_closed)
            generic = {**kwargs["connect_args"]["server_settings"], **WRITE_PLANS}
            # One batch at a time per committer: two connections cover a second committer on the database.
            self._appender = create_async_engine(
                self.url,
                **{**kwargs, "pool_size": 2, "connect_args": {"server_settings": generic}},
                isolation_level="AUTOCOMMIT",
            )
            event.listen(self._appender.sync_engine, "checkout", refuse_closed)
            # Every connection of this engine serves a write without the lock: none sends a statement
            # through SQLAlchemy (set once here: listening per write cost 25-50 us of it).
            event.listen(self._appender.sync_engine, "before_cursor_execute", refuse_unlocked)
            event.listen(self._appender.sync_engine, "connect", check_client)
            # The connection the last write without the lock used, kept for the next (store.parking).
            self._appending = Parking(self._appender)
        self.notifier = Notifier()
        # SQLite writers in this process queue here, in order, rather than polling for the file's lock.
        self._sqlite_writers = asyncio.Lock() if self.dialect == "sqlite" else None
        # Sessions run long statements (a rebuild reads the log a batch at a time and copies whole views):
        # on an SQLite file they go through aiosqlite's thread, not inline, so the loop keeps serving.
        self._threaded: AsyncEngine | None = None
        if self.dialect == "sqlite":
            configure_sqlite(self.engine)
            if "async_creator" in kwargs:
                self._threaded = create_async_engine(
                    self.url, poolclass=NullPool, connect_args={"timeout": timeout}
                )
                configure_sqlite(self._threaded)

    @property
    def signer(self) -> Signer | None:
        """The key that signs a checkpoint in every transaction that appended, if any."""
        return self.sealer.signer

    @signer.setter
    def signer(self, signer: Signer | None) -> None:
        # The tree's frontier and the last checkpoint as this process's last commit left them.
        self.sealer = Sealer(signer)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: one consistent snapshot of the log and the views."""
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.begin()
            yield conn  # closing the connection rolls the read transaction back

    @asynccontextmanager
    async def lookup(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read statement, which needs no snapshot beyond its own: on PostgreSQL it
        runs without BEGIN and ROLLBACK, one round trip instead of three (a token check on every write)."""
        if self.dialect != "postgresql":
            async with self.read() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction that holds the log's write lock; commits on success, else rolls back.
        When it appended events, readers waiting for the log to grow are woken after the commit."""
        async with self._turn(), self._writing.connection() as (conn, _), self._locked(conn):
            yield conn

    @property
    def appends_unlocked(self) -> bool:
        """Whether ``append`` is open to writes here: on PostgreSQL, where a round trip is worth saving."""
        return self._appender is not None

    @asynccontextmanager
    async def append(self) -> AsyncIterator[AsyncConnection]:
        """A write in two round trips rather than four (three when another process wrote since this one's
        last write, for the seal's read; PostgreSQL only): no transaction of its own, so each
        read sees the log as it is then, and its one write (``driver.write``) takes the log's lock, checks
        that the log still ends where the reads saw it end, writes and commits, as one statement
        (``statements.APPEND``, with the answers to the idempotency keys the write read); the caller marks
        that write with ``last_write``. Raises ``MovedOn`` if the log or the views had moved on, or one of
        those keys was answered meanwhile, and ``NeedsLock`` at any statement sent through SQLAlchemy or any
        other write (it could write, and would commit alone): nothing is written in either case, and the
        caller runs the write again in ``write``. The connection is kept for the next append if this one
        ended well."""
        if self._appending is None:
            raise NeedsLock("only PostgreSQL appends without a transaction of its own")
        async with self._appending.connection() as (conn, driver):
            # Every key set here or below is popped on the way out, so none is left from a write before.
            conn.info[SEALER] = self.sealer
            conn.info[UNLOCKED] = driver
            try:
                yield conn
            finally:
                # The appending statement sends the NOTIFY: once it returned, it has committed, whatever
                # the caller did next.
                committed = conn.info.pop(NOTIFIED, False)
                sealed = conn.info.pop(SEALED, None)
                for key in (UNLOCKED, SEALER, APPENDED, _LAST):
                    conn.info.pop(key, None)
                if committed:
                    self._committed(sealed)

    def _committed(self, sealed: Sealed | None) -> None:
        # What the transaction sealed is the log's state now, and readers waiting for it to grow wake.
        self.sealer.committed(sealed)
        self.notifier.notify()

    @asynccontextmanager
    async def _locked(self, conn: AsyncConnection) -> AsyncIterator[None]:
        appended: int | None = None
        sealed: Sealed | None = None
        # Left over from a transaction on this connection that failed: they describe this one only.
        conn.info.pop(APPENDED, None)
        conn.info.pop(NOTIFIED, None)
        conn.info.pop(SEALED, None)
        # Appends in this transaction (driver.write) bring their tree nodes and checkpoint with them.
        conn.info[SEALER] = self.sealer
        sync = conn.sync_connection
        if sync is None or not sync.get_execution_options().get(WRITE):
            await conn.execution_options(**{WRITE: True})  # a kept connection has it from its first write
        try:
            async with conn.begin():
                if self.dialect == "postgresql":
                    # EXCLUSIVE blocks other writers but not readers; positions commit in order.
                    await begin_locked(conn)
                yield
                appended = conn.info.pop(APPENDED, None)
                sealed = conn.info.pop(SEALED, None)
                left = sealed.unsigned if sealed is not None else None
                if appended is not None and sealed is None:
                    # Events appended around the sealer (a restore): the tree and checkpoint from the
                    # database, and the sealer reads its state back at the next write.
                    self.sealer.forget()
                    left = await tree.commit_checkpoint(conn, self.signer, appended)
                if appended is not None and left is not None:
                    _log.warning(
                        "events %d-%d are left unsigned: the log before this transaction's events (from %d) "
                        "does not end at a checkpoint signed with this key (events or a checkpoint written "
                        "without it?), and nothing is signed over it until an operator has checked the log "
                        "(timeline verify) and signs its head (timeline keys sign-head)",
                        *left,
                        appended,
                    )
                notified = bool(conn.info.pop(NOTIFIED, False))
                if appended is not None and not notified and self.dialect == "postgresql":
                    await notify_listeners(conn)
        finally:
            # Only write transactions seal: the connection goes back to the pool without the sealer.
            conn.info.pop(SEALER, None)
        if appended is not None:
            self._committed(sealed)

    @asynccontextmanager
    async def schema_change(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that changes the schema, one process at a time: servers started together on an
        empty database must not both create its tables. An advisory lock on PostgreSQL (DDL takes no lock
        on tables that do not exist yet), the write lock taken up front on SQLite."""
        async with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                if self.dialect == "postgresql":
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
                yield conn

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """One connection kept across several transactions, for work whose temporary tables must outlive
        one of them (a rebuild)."""
        async with (self._threaded or self.engine).connect() as conn:
            try:
                yield Session(self, conn)
            finally:
                # What the session made on its connection (temporary tables that hide shared ones) must
                # never reach the pool's next user, even after a failure: the connection is discarded.
                await conn.invalidate()

    @asynccontextmanager
    async def serial(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that writes projection tables, not the log: on SQLite it takes the write lock up
        front (two processes must not both apply one batch); on PostgreSQL row locks suffice."""
        async with self._turn(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    def writers_turn(self) -> AbstractAsyncContextManager[None]:
        """This process's turn to write, for a write made through another engine (an import recorded on a
        thread of its own): writers here then queue behind it as behind any write."""
        return self._turn()

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """On SQLite, this process's turn to write, before taking a pooled connection (writers waiting
        must not hold connections readers need); given up after the time another process would wait."""
        if self._sqlite_writers is None:
            yield
            return
        try:
            async with asyncio.timeout(self.lock_timeout):
                await self._sqlite_writers.acquire()
        except TimeoutError:
            raise Busy(
                f"waited {self.lock_timeout:g} s for the SQLite write lock (held by another write in this "
                "process)"
            ) from None
        try:
            yield
        finally:
            self._sqlite_writers.release()

    @property
    def dsn(self) -> str:
        """The URL without SQLAlchemy's driver name, for connections made with asyncpg directly."""
        return make_url(self.url).set(drivername=self.dialect).render_as_string(hide_password=False)

    def listener(self) -> Listener | None:
        """On PostgreSQL, a listener relaying other processes' commits to this process's notifier."""
        return Listener(self.dsn, self.notifier) if self.dialect == "postgresql" else None

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self._writing.close()
        if self._appending is not None:
            await self._appending.close()
        await self.engine.dispose()
        if self._appender is not None:
            await self._appender.dispose()
        if self._threaded is not None:
            await self._threaded.dispose()


class Session:
    """Transactions one after another on one connection (see ``Database.session``)."""

    def __init__(self, db: Database, conn: AsyncConnection) -> None:
        self.db = db
        self.conn = conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that reads one consistent snapshot of the log without blocking writers, and commits
        what it wrote (to temporary tables: it takes no lock on the shared ones)."""
        if self.db.dialect == "postgresql":
            await self.conn.execution_options(isolation_level="REPEATABLE READ")
        async with self.conn.begin():
            yield self.conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction holding the log's write lock, as ``Database.write``."""
        if self.db.dialect == "postgresql":
            await self.conn.execution_options(isolation_level="READ COMMITTED")
        async with self.db._turn(), self.db._locked(self.conn):
            yield self.conn
