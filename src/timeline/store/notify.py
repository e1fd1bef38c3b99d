"""Waking readers when the log grows: in this process after a commit, and across processes on PostgreSQL
through LISTEN/NOTIFY. Notifications are only hints; readers always re-read the log from their position,
so a lost or duplicated notification can delay an event but never lose or repeat one."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg

CHANNEL = "timeline_events"


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
    """A dedicated PostgreSQL connection that LISTENs and relays notifications to a ``Notifier``."""

    def __init__(self, dsn: str, notifier: Notifier) -> None:
        self.dsn = dsn
        self.notifier = notifier
        self._conn: Any = None

    async def start(self) -> None:
        """Connect and LISTEN."""
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._relay)

    def _relay(self, *_: object) -> None:
        self.notifier.notify()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
