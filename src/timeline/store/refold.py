"""Folding the log into the views a batch at a time: the catch-up after a crash or a migration, and the
rebuild (online beside a serving process, or in the caller's transaction after a restore).

From a checkpoint, ``fold`` reads the log in position order, each batch through ``views.project_logged`` as a
write's events go, and checkpoints with each batch. A rebuild from nothing first folds the log stream by
stream (``fold_streams``): each claim's events come together, so no claim row is read back or rewritten
and nothing but the best figure per estimate key is held between batches; ``fold`` then takes the events
after the position that pass read up to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import remembering
from timeline.domain.events import DomainEvent
from timeline.projections import Views, fold_rows
from timeline.ranking import Best, chosen_of, rank_final
from timeline.store import driver, projector, shadows, views
from timeline.store.database import Database, driver_of
from timeline.store.eventlog import decode_stored
from timeline.store.eventlog import head_position as eventlog_head
from timeline.store.readahead import ChosenKept

# Events a batch of the fold: it loads every claim under each estimate key where a chosen claim can drop, a
# set that grows with the log: 10,000 events a batch peaked at ~1 GB at 1,000,000 events when any drop loaded
# its key; 2,000 costs ~7% more time.
BATCH = 2_000
Progress = Callable[[int, int], Awaitable[None] | None]


async def fold(
    conn: AsyncConnection, after: int, *, batch: int = BATCH, progress: Progress | None = None, head: int = 0
) -> tuple[int, int]:
    """Fold the log after position ``after`` into the views, a batch at a time, each batch's rows and the
    checkpoint written together (the catch-up, and a rebuild's events after its stream-ordered pass);
    memory is bounded by a batch and ``ChosenKept``'s limit. Returns (events folded, the last position)."""
    done = 0
    chosen = ChosenKept()
    while chunk := await _read_after(conn, after, batch):
        # A batch folds each claim event twice (the look ahead, then the views), as a write does.
        with remembering():
            folded = await views.project_logged(conn, chunk, ahead=chosen)
        if folded is not None:
            chosen.keep(folded)
        after = chunk[-1][0]
        done += len(chunk)
        await _report(progress, done, head)
    return done, after


# Only what the fold needs of each event (not its metadata, times, ids or hashes), read on the driver; in
# ``decode_stored``'s argument order.
_READ_AFTER = {
    "postgresql": "SELECT position, data, type, schema_version FROM events WHERE position > $1 "
    "ORDER BY position LIMIT $2",
    "sqlite": "SELECT position, data, type, schema_version FROM events WHERE position > ? "
    "ORDER BY position LIMIT ?",
}


async def _read_after(conn: AsyncConnection, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
    """Up to ``limit`` (position, event) pairs of the log after position ``after``, in order."""
    rows = await _fetch(conn, _READ_AFTER, after, limit)
    return [(row[0], decode_stored(*row)) for row in rows]


async def _fetch(conn: AsyncConnection, statement: dict[str, str], *args: Any) -> list[Any]:
    """The rows of one of this module's statements (text per dialect), read on the driver."""
    raw = await driver_of(conn)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return list(await raw.fetch(statement[dialect], *args))
    return list(await raw.execute_fetchall(statement[dialect], args))


# Events a read of the stream-ordered pass: (stream, version) order, only what the fold needs of each.
_READ_STREAMS = {
    "postgresql": "SELECT stream_id, stream_version, position, data, type, schema_version FROM events "
    "WHERE (stream_id, stream_version) > ($1, $2) AND position <= $3 "
    "ORDER BY stream_id, stream_version LIMIT $4",
    "sqlite": "SELECT stream_id, stream_version, position, data, type, schema_version FROM events "
    "WHERE (stream_id, stream_version) > (?, ?) AND position <= ? "
    "ORDER BY stream_id, stream_version LIMIT ?",
}


async def fold_streams(
    conn: AsyncConnection, head: int, *, batch: int = BATCH, progress: Progress | None = None
) -> int:
    """Fold the log up to position ``head`` into empty views, whole streams a batch at a time, and checkpoint
    them at ``head``. ``projections.fold_rows`` folds each event as ``apply`` does; since a claim's
    stream is whole in its batch, its estimate is ranked once, from its final state (``rank_final``).

    A position-ordered fold from nothing read and rewrote about one claim row an event at random across a
    claims table larger than any cache it may keep (1,000,000 events: 38 s of SQLite alone before any
    folding, bench/results-rebuild-1m-profile.txt). Returns the number of events folded."""
    best: Best = {}
    after: tuple[str, int] = ("", 0)
    pending: list[Any] = []  # the events of the last stream read, which may go on in the next read
    done = 0
    # On PostgreSQL a batch's rows are written while the next batch is folded, the server working beside the
    # loop's Python instead of in turn with it (1,000,000 events: 63.3 s -> 46.3 s). Not on SQLite: there the
    # writing thread and the loop contend for the GIL on every row bound, and the same overlap took 62.4 s
    # against 56.4 s in turn.
    overlap = conn.dialect.name == "postgresql"
    unwritten: tuple[driver.Changes, int] | None = None
    last = False
    while not last:
        rows = await _fetch(conn, _READ_STREAMS, *after, head, batch)
        last = len(rows) < batch
        if rows:
            after = (rows[-1][0], rows[-1][1])
        rows, pending = _whole_streams(pending + rows, last)
        writing = None
        if unwritten is not None and overlap:
            writing = asyncio.ensure_future(driver.write(conn, unwritten[0]))
        elif unwritten is not None:
            await driver.write(conn, unwritten[0])
        try:
            folded = await _folded(rows, best) if rows else None
        finally:
            if writing is not None:
                await writing
        if unwritten is not None:
            done += unwritten[1]
            await _report(progress, done, head)
        unwritten = (folded, len(rows)) if folded is not None else None
    if unwritten is not None:
        await driver.write(conn, unwritten[0])
        done += unwritten[1]
        await _report(progress, done, head)
    changes = driver.Changes()
    changes.chosen = [(*key, *chosen) for key, chosen in sorted(chosen_of(best).items())]
    if head:  # an empty log leaves the views without a checkpoint, as before any event
        changes.checkpoint = (views.CHECKPOINT, head)
    await driver.write(conn, changes)
    return done


def _whole_streams(rows: list[Any], last: bool) -> tuple[list[Any], list[Any]]:
    """The rows of the streams read whole, and those of the last stream read, which the next read may go
    on with (none after the last read)."""
    if last or not rows:
        return rows, []
    cut = len(rows)
    while cut > 0 and rows[cut - 1][0] == rows[-1][0]:
        cut -= 1
    return rows[:cut], rows[cut:]


async def _report(progress: Progress | None, done: int, head: int) -> None:
    if progress is not None and (waiting := progress(done, head)) is not None:
        await waiting


# Rows folded between turns of the loop: the write started beside the fold (PostgreSQL) gets its statement
# sent, and a serving process's requests are not held up for a whole batch's fold.
_YIELD_EVERY = 256


async def _folded(rows: list[Any], best: Best) -> driver.Changes:
    """The rows of whole streams folded into fresh views, their claims counted in ``best``; the changes to
    write (no removals: the tables are fresh; no checkpoint: a batch's position is none)."""
    folded = Views()
    for i, row in enumerate(rows):
        if i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        fold_rows(folded, row[2], decode_stored(*row[2:]))
    for claim_id in folded.changed_claims:
        rank_final(best, folded.claims[claim_id].claim)
    changes = views.changes_of(folded)
    changes.unlisted, changes.checkpoint = [], None
    return changes


async def catch_up(db: Database, progress: Progress | None = None) -> int:
    """Apply whatever the log holds beyond the views' checkpoint (after a crash or a migration)."""
    async with db.write() as conn:
        after = await views.checkpoint(conn)
        if after == 0:
            return await rebuild(conn, progress)
        head = await eventlog_head(conn)
        done, _ = await fold(conn, after, progress=progress, head=head - after)
        return done


async def rebuild_online(db: Database, progress: Progress | None = None, *, batch: int = BATCH) -> int:
    """The rebuild: refold the views while the old ones keep serving. Folds a snapshot of the log into
    temporary copies of the view tables without blocking writers, then briefly takes the write lock to fold
    what arrived meanwhile and copy the new rows over the old. Returns the number of events folded."""
    async with db.session() as session:
        async with session.snapshot() as conn:
            done, after = await _fold_shadows(conn, progress, batch, on_disk=True)
        async with session.write() as conn:
            more, _ = await fold(conn, after, batch=batch)
            await _swap_in_shadows(conn)
    return done + more


async def rebuild(conn: AsyncConnection, progress: Progress | None = None, *, batch: int = BATCH) -> int:
    """The same rebuild on one connection, in the caller's transaction (after a restore): the log folded
    into the temporary tables, then copied over the views. Returns the number of events folded."""
    done, _ = await _fold_shadows(conn, progress, batch, on_disk=False)
    await _swap_in_shadows(conn)
    return done


async def _fold_shadows(
    conn: AsyncConnection, progress: Progress | None, batch: int, *, on_disk: bool
) -> tuple[int, int]:
    """Create the temporary tables and fold the whole log into them (``fold_streams``: memory is bounded by
    a batch and the best figure per estimate key). Returns (events folded, the position folded up to)."""
    await shadows.create(conn, on_disk=on_disk)
    head = await eventlog_head(conn)
    return await fold_streams(conn, head, batch=batch, progress=progress), head


async def _swap_in_shadows(conn: AsyncConnection) -> None:
    """Put the shadows' rows, and the position they reflect, in place of the live views' and drop the
    shadows."""
    position = await views.checkpoint(conn)  # the shadow checkpoint, on this connection
    await shadows.swap_in(conn)
    if position:  # an empty log leaves the views without a checkpoint, as before any event
        await projector.save_checkpoint(conn, views.CHECKPOINT, position)
