"""Waking readers when the log grows: in this process after a commit, and across processes on PostgreSQL
through LISTEN/NOTIFY. Notifications are only hints; readers always re-read the log from their position,
so a lost or duplicated notification can delay an event but never lose or repeat one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "timeline_events"
_log = logging.getLogger(__name__)


async def notify_listeners(conn: AsyncConnection) -> None:
    """Wake every process listening on PostgreSQL, when (and only if) this transaction commits."""
    await conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class Notifier:
    """A generation counter that waiters on any event loop in this process can wait on."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        """The log grew: wake every waiter."""
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def wait(self, since: int, seconds: float) -> bool:
        """Wait until the generation passes ``since``; False if ``seconds`` passed first."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            if self.generation != since:
                return True
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(event.wait(), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(entry)


class Listener:
    """A dedicated PostgreSQL connection that LISTENs and relays notifications to a ``Notifier``; when the
    connection drops it is made again (with backoff), and readers are woken once it is back, since
    notifications sent meanwhile are lost."""

    def __init__(self, dsn: str, notifier: Notifier, *, retry: float = 0.2, most: float = 5.0) -> None:
        self.dsn = dsn
        self.notifier = notifier
        self.retry = retry
        self.most = most
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and LISTEN (failing if the database is unreachable now), then keep the connection."""
        await self._connect()
        self._keeper = asyncio.create_task(self._keep(), name="listen-keeper")

    @property
    def pid(self) -> int | None:
        """The server process of the current connection (None while reconnecting)."""
        return None if self._conn is None or self._conn.is_closed() else int(self._conn.get_server_pid())

    async def _connect(self) -> None:
        self._lost.clear()
        conn = await asyncpg.connect(self.dsn)
        conn.add_termination_listener(self._dropped)
        await conn.add_listener(CHANNEL, self._relay)
        self._conn = conn

    def _dropped(self, *_: object) -> None:
        self._lost.set()

    async def _keep(self) -> None:
        while True:
            await self._lost.wait()
            self._conn = None
            delay = self.retry
            while True:
                try:
                    await self._connect()
                    break
                except Exception:  # whatever stops it now, the connection is tried again
                    _log.warning("LISTEN connection lost; reconnecting in %.1f s", delay, exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.most)
            # Whatever was committed while we were away was announced to nobody: look now.
            self.notifier.notify()

    def _relay(self, *_: object) -> None:
        self.notifier.notify()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.remove_termination_listener(self._dropped)
            await conn.close()
