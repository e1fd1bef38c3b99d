"""Keeping the store ready: migrating and catching the views up on start, and rebuilding them."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import make_url

from timeline.store import activity, eventlog, notify, projector, refold, snapshots, tree, views
from timeline.store.database import Database

_log = logging.getLogger("timeline.store")

Progress = Callable[[int, int | None], None]


def projection_worker(
    db: Database, *, batch: int, idle: float, projection_process: bool = False
) -> projector.Worker:
    """The asynchronous projections (sources' activity, time travel's snapshots), kept caught up by whichever
    process leads them: ``timeline project`` (``projection_process``) while it runs, else a server."""
    projections: list[projector.Projection] = [activity, snapshots.Taker(db)]
    return projector.Worker(db, projections, batch=batch, idle=idle, projection_process=projection_process)


async def catch_up(db: Database, progress: Progress | None = None) -> int:
    """Bring the views up to date with the log (after a crash, or a migration that emptied them), and with a
    signing key warn of events no signed checkpoint covers; returns the events the views took."""
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
        # Start-up signs nothing: it did not append these, and they may be someone's forged rows.
        left = await tree.unsigned(conn) if db.signer is not None else None
    caught_up = await refold.catch_up(db, progress) if head else 0
    if left is not None:
        _log.warning(
            "events %d-%d are covered by no signed checkpoint: check them (timeline verify), then sign the "
            "head (timeline keys sign-head --size %d)",
            *left,
            left[1],
        )
    return caught_up


async def rebuild_views(db: Database, progress: Progress | None = None) -> tuple[int, int]:
    """Refold the views from the log while the old ones keep serving; the events replayed and the views'
    position after."""
    replayed = await refold.rebuild_online(db, progress)
    async with db.read() as conn:
        return replayed, await views.checkpoint(conn)


async def rebuild_views_apart(db: Database, give_up: threading.Event) -> tuple[int, int] | None:
    """``rebuild_views`` on a thread, event loop and engine of its own; None if ``give_up`` is set first
    (the rebuild is rolled back and the old views stay)."""
    if db.dialect == "sqlite" and make_url(db.url).database in (None, "", ":memory:"):
        # An in-memory database exists only on this engine: no other thread can open it.
        return await rebuild_views(db)
    # Folding the log is CPU work, and the SQLite driver runs statements on its loop's thread: on a loop of
    # its own, the rebuild leaves the caller's loop free to serve meanwhile.
    return await asyncio.to_thread(_rebuild_apart, db.url, db.lock_timeout, give_up)


def _rebuild_apart(url: str, lock_timeout: float, give_up: threading.Event) -> tuple[int, int] | None:
    async def run() -> tuple[int, int] | None:
        own = Database(url, pool_size=2, lock_timeout=lock_timeout)
        try:
            task = asyncio.ensure_future(rebuild_views(own))
            while not task.done():
                if give_up.is_set():
                    task.cancel()
                await asyncio.wait({task}, timeout=0.05)
            return None if task.cancelled() else task.result()
        finally:
            await own.dispose()

    return asyncio.run(run())


async def rebuild_all(db: Database, progress: Progress | None = None) -> int:
    """Rebuild the views, then reset the asynchronous projections and catch up those this process can lead
    (a running server that leads one catches it up itself); returns the events replayed. Time travel's
    snapshots are taken afresh too: after a change of the fold's format the old ones are ignored, and would
    be until 1,000 more events each."""
    replayed, _ = await rebuild_views(db, progress)
    for projection in (activity, snapshots.Taker(db)):
        await _rerun(db, projection)
    return replayed


async def _rerun(db: Database, projection: projector.Projection) -> None:
    lead = projector.Leadership(db, projection.name)
    leading = await lead.acquire()
    try:
        async with db.write() as conn:
            await projector.reset(conn, projection)
            if not leading and db.dialect == "postgresql":
                # Wakes the leader's worker (through its LISTEN) to recount now, not at its next idle look.
                await notify.notify_listeners(conn)
        if leading:
            await projector.catch_up(db, projection)
        else:
            _log.info("projection %s is led by a running server, which recounts it", projection.name)
    finally:
        await lead.release()
