"""Group commit: many concurrent writes share one transaction, one lock and one commit.

Appends are serialized (one writer holds the log's lock at a time), so under concurrency the lock, not the
work, is the bottleneck. A ``Committer`` takes the write units waiting when the lock frees, runs each inside
a SAVEPOINT of one write transaction (a unit that fails rolls back alone and gets its own error), commits
once, and then answers every caller. Each unit still sees the log exactly as if it had run alone after the
ones before it, so positions, versions and the hash chain are the same as with one transaction each.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from timeline.service import Recorder
from timeline.store.database import Database

T = TypeVar("T")
Unit = Callable[["Recorder"], Awaitable[Any]]


class Committer:
    """Runs write units for one database on one event loop, batching those that arrive together."""

    def __init__(
        self, db: Database, *, max_batch: int = 64, future_slack: dt.timedelta | None = None
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.future_slack = future_slack
        self._queue: asyncio.Queue[tuple[Unit, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def run(self, unit: Callable[[Recorder], Awaitable[T]]) -> T:
        """Run ``unit`` in a write transaction (shared with other waiting units) and return its result once
        the transaction has committed; raise what it raised, having rolled back only its own changes."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="group-commit")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put((unit, future))
        return await future

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Unit, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            async with self.db.write() as conn:
                # One Recorder for the whole batch: its events go in with one INSERT and one save of the
                # views. A unit that fails is rewound in memory and rolled back to its savepoint.
                recorder = Recorder(conn, recorded_by="", label="", future_slack=self.future_slack)
                for unit, future in batch:
                    mark = recorder.mark()
                    try:
                        async with conn.begin_nested():
                            outcomes.append((future, True, await unit(recorder)))
                    except Exception as exc:  # the unit's own error goes back to its caller
                        recorder.rewind(mark)
                        outcomes.append((future, False, exc))
                await recorder.finish()
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, ok, value in outcomes:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def close(self) -> None:
        """Stop the batching task (waiting units are answered first by their batch)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
