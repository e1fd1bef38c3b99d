"""Running projections: checkpoints kept with their changes, catch-up, rebuild, and one leader per
asynchronous projection across processes.

A projection is one module with a ``name``, its ``tables`` and an ``apply(conn, events)``; this module does
the rest. Each batch of events and the projection's new checkpoint commit in one transaction, so a crash
never applies an event twice or skips one: the next run starts from the checkpoint that committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store import eventlog
from timeline.store.database import Database, insert_into
from timeline.store.eventlog import RecordedEvent
from timeline.store.faults import fault_of
from timeline.store.schema import checkpoints, events, log_checkpoints

_log = logging.getLogger("timeline.projector")


class Projection(Protocol):
    """What a projection module provides."""

    name: str
    tables: tuple[sa.Table, ...]

    async def apply(self, conn: AsyncConnection, events: Sequence[RecordedEvent]) -> None:
        """Fold a batch of events (in log order) into the projection's tables."""


async def checkpoint(conn: AsyncConnection, name: str, *, lock: bool = False) -> int:
    """The log position a projection has processed (0 if it never ran)."""
    query = sa.select(checkpoints.c.position).where(checkpoints.c.name == name)
    if not (lock and conn.dialect.name == "postgresql"):
        return int((await conn.execute(query)).scalar_one_or_none() or 0)
    position = (await conn.execute(query.with_for_update())).scalar_one_or_none()
    if position is None:
        # A lock on a row not there yet (first run, or after a reset) covers nothing, and two runners
        # would both apply the first batch: make the row first. The second runner's insert waits on the
        # first's, and its read then sees where the first one left the projection.
        await conn.execute(
            insert_into(conn, checkpoints)
            .values(name=name, position=0, updated_at=dt.datetime.now(dt.UTC))
            .on_conflict_do_nothing(index_elements=["name"])
        )
        position = (await conn.execute(query.with_for_update())).scalar_one()
    return int(position)


async def save_checkpoint(conn: AsyncConnection, name: str, position: int) -> None:
    """Record the processed position, in the transaction that made the projection's changes."""
    now = dt.datetime.now(dt.UTC)
    await _upsert(conn, name, position=position, updated_at=now, failure=None)


async def save_failure(conn: AsyncConnection, name: str, message: str) -> None:
    """Write a leader's failure on the projection's checkpoint row; the next checkpoint clears it."""
    await _upsert(conn, name, failure=message)


async def _upsert(conn: AsyncConnection, name: str, **values: Any) -> None:
    # A row made here starts at the log's start (position 0) unless ``values`` say otherwise.
    statement = insert_into(conn, checkpoints).values(name=name, **{"position": 0, **values})
    await conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


async def all_checkpoints(conn: AsyncConnection) -> dict[str, int]:
    """Every projection's processed position, by name."""
    result = await conn.execute(sa.select(checkpoints.c.name, checkpoints.c.position))
    return {row[0]: int(row[1]) for row in result}


class Standing(NamedTuple):
    """The log's head, its last signed size, each projection's position and when it last moved, and when
    the event after one projection's position was recorded (None when it is at the head)."""

    head: int
    signed: int
    projections: dict[str, tuple[int, dt.datetime | None]]
    waiting_since: dt.datetime | None
    # The failures the projections' leaders recorded, by projection (``save_failure``).
    failures: dict[str, str]


async def standing_with_head(conn: AsyncConnection, waiting: str) -> Standing:
    """What /health reports, in one statement (one snapshot, one round trip: the health check must stay
    cheap on a busy server, where each round trip waits its turn on the event loop)."""
    one = sa.select(sa.literal(1).label("one")).subquery()
    reached = sa.select(checkpoints.c.position).where(checkpoints.c.name == waiting).scalar_subquery()
    query = sa.select(
        sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0)).scalar_subquery(),
        sa.select(sa.func.coalesce(sa.func.max(log_checkpoints.c.size), 0)).scalar_subquery(),
        sa.select(events.c.recorded_at)
        .where(events.c.position == sa.func.coalesce(reached, 0) + 1)
        .scalar_subquery(),
        checkpoints.c.name,
        checkpoints.c.position,
        checkpoints.c.updated_at,
        checkpoints.c.failure,
    ).select_from(one.outerjoin(checkpoints, sa.true()))
    rows = (await conn.execute(query)).all()
    head, signed = int(rows[0][0]), int(rows[0][1])
    found = {row[3]: (int(row[4]), _utc(row[5])) for row in rows if row[3] is not None}
    failures = {row[3]: str(row[6]) for row in rows if row[3] is not None and row[6] is not None}
    return Standing(head, signed, found, _utc(rows[0][2]), failures)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    # SQLite keeps no time zone; what it stores is UTC.
    return moment if moment is None or moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


async def run_batch(db: Database, projection: Projection, *, size: int = 500) -> int:
    """Apply the next batch after the projection's checkpoint, with the new checkpoint; returns its size."""
    async with db.serial() as conn:
        if conn.dialect.name == "postgresql":
            # The batch and its checkpoint commit together, so a crash losing them lets the next run apply
            # the batch again from the log: nothing here needs to wait for the WAL to reach the disk, and on
            # a busy server these commits' flushes (one per projection per wake) queued with the writes'.
            await conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        after = await checkpoint(conn, projection.name, lock=True)
        batch = await eventlog.read_all(conn, after=after, limit=size)
        if batch:
            await projection.apply(conn, batch)
            await save_checkpoint(conn, projection.name, batch[-1].position)
    # Work a projection defers until its batch is committed (time travel's snapshots fold outside the lock).
    if batch and (committed := getattr(projection, "after_commit", None)) is not None:
        await committed()
    return len(batch)


async def catch_up(db: Database, projection: Projection, *, size: int = 500) -> int:
    """Run batches until the projection has processed the whole log; returns how many events it applied."""
    total = 0
    while moved := await run_batch(db, projection, size=size):
        total += moved
    return total


async def reset(conn: AsyncConnection, projection: Projection) -> None:
    """Empty the projection's tables and forget its checkpoint (a rebuild then starts from position 1)."""
    # A batch another runner has under way holds this row: wait for it to commit, or its rows inserted after
    # this transaction's DELETE began would outlive the reset and be counted again from position 1.
    await checkpoint(conn, projection.name, lock=True)
    for table in projection.tables:
        await conn.execute(sa.delete(table))
    await conn.execute(sa.delete(checkpoints).where(checkpoints.c.name == projection.name))


def _lock_key(name: str) -> int:
    # A stable 32-bit key per projection, in the advisory-lock space PostgreSQL shares with other apps.
    return zlib.crc32(f"timeline.projection.{name}".encode())


# The advisory lock `timeline project` holds while it runs, on a session of its own: a process that defers to
# it (an API process: ``Leadership.deferring``) takes no lead while it is held and gives back any it leads.
# After a database restart cut every session, whichever process came back first took the leads it could;
# an API process that won one kept it, and ran that projection for good.
PROJECTION_PROCESS = "projection process"
_PRESENT = zlib.crc32(b"timeline.projection-process")
# A bigint advisory key shows in pg_locks as its high half (classid, 0 here) and low half (objid).
_PRESENT_HELD = """SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = 0 AND objid = $1::bigint::oid AND objsubid = 1)"""


class Leadership:
    """The right to run one asynchronous projection: a session advisory lock held on its own connection
    (PostgreSQL), so it is released the moment the holding process dies. SQLite runs in one process."""

    def __init__(self, db: Database, name: str, *, retry: float = 0.0, deferring: bool = False) -> None:
        self.db = db
        self.key = _PRESENT if name == PROJECTION_PROCESS else _lock_key(name)
        self._conn: Any = None
        # After a try that found the lead taken, the next waits ``retry`` seconds: each try is a connection
        # of its own, and a process that does not lead would otherwise try at every commit it hears of.
        self.retry = retry
        self._next_try = 0.0
        # Defers to a running `timeline project`: checked at most every ``retry`` seconds while leading.
        self.deferring = deferring
        self._next_check = 0.0
        # Named, so pg_stat_activity shows which process leads (``timeline project``'s, or a server's).
        self._label = f"timeline {'present' if name == PROJECTION_PROCESS else 'lead'} {os.getpid()}"

    @property
    def held(self) -> bool:
        """Whether this process currently leads."""
        return self.db.dialect != "postgresql" or (self._conn is not None and not self._conn.is_closed())

    async def acquire(self) -> bool:
        """Try to become leader; True if this process leads now."""
        if self.held:
            return True
        if time.monotonic() < self._next_try:
            return False
        conn = await asyncpg.connect(self.db.dsn, server_settings={"application_name": self._label})
        try:
            deferred = self.deferring and await conn.fetchval(_PRESENT_HELD, _PRESENT)
            locked = not deferred and await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
        except BaseException:
            conn.terminate()  # cancelled at shutdown, say: the connection must not outlive this call
            raise
        if locked:
            self._conn = conn
            self._next_check = time.monotonic() + self.retry
            return True
        conn.terminate()  # synchronous, so no cancellation can leave it open
        self._next_try = time.monotonic() + self.retry
        return False

    async def give_way(self) -> bool:
        """For a deferring leader: give the lead up if `timeline project` runs (checked at most every
        ``retry`` seconds); True if it did."""
        # On SQLite, ``held`` always (one process) and no connection: nothing to give up.
        if (
            not (self.deferring and self._conn is not None and self.held)
            or time.monotonic() < self._next_check
        ):
            return False
        self._next_check = time.monotonic() + self.retry
        if not await self._conn.fetchval(_PRESENT_HELD, _PRESENT):
            return False
        await self.release()
        return True

    async def release(self) -> None:
        """Give up leadership (closing the session releases the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except BaseException:
                conn.terminate()
                raise


class Failing(NamedTuple):
    """A projection whose every try since its last success failed."""

    # The last error, in words (for a database fault, the driver's own).
    message: str
    # A fault of the database that passes on its own (unreachable, busy): the projection is not broken,
    # and catches up once the database answers again.
    passing: bool


class Worker:
    """Keeps asynchronous projections caught up in the background, while this process leads them."""

    def __init__(
        self,
        db: Database,
        projections: Sequence[Projection],
        *,
        batch: int = 500,
        idle: float = 5.0,
        settle: float = 0.05,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        projection_process: bool = False,
    ) -> None:
        self.db = db
        self.projections = list(projections)
        self.batch = batch
        self.idle = idle
        # After waking, wait this long for more commits: a batch costs a transaction, a checkpoint and a read
        # however few events it holds, and under steady writes each commit would otherwise get its own.
        self.settle = settle
        # After a failure, wait ``backoff`` s, doubling with each failure in a row up to ``max_backoff``.
        self.backoff = backoff
        self.max_backoff = max_backoff
        # A process that does not lead tries again every ``idle`` seconds, so it takes over that soon once
        # the leader is gone (``timeline project``'s, say, which ``serve`` starts beside its API processes).
        # Any other process defers to `timeline project`, which says it runs by a lock of its own.
        deferring = not projection_process
        self.leaders = {
            p.name: Leadership(db, p.name, retry=idle, deferring=deferring) for p in self.projections
        }
        self.present = Leadership(db, PROJECTION_PROCESS, retry=idle) if projection_process else None
        # Each projection failing now.
        self.failing: dict[str, Failing] = {}

    async def run(self) -> None:
        """Loop until cancelled: lead what can be led, apply batches, sleep until the log grows. Any error
        is logged and the projection retried after a pause that doubles with each failure in a row; after
        the database's passing fault, a commit cuts the pause short."""
        failures = dict.fromkeys(self.leaders, 0)
        try:
            while True:
                generation = self.db.notifier.generation
                busy = False
                pause = 0.0
                # Whether every failure of this round was the database's passing fault.
                passing = True
                await self._announce()
                for projection in self.projections:
                    try:
                        if await self._leads(projection.name):
                            busy |= await run_batch(self.db, projection, size=self.batch) == self.batch
                    except Exception as exc:
                        # Whatever it was (a lost connection, an event the fold cannot take, a bug), the
                        # worker must not die silently: a stalled projection serves stale answers forever.
                        failures[projection.name] += 1
                        wait = min(self.backoff * 2 ** (failures[projection.name] - 1), self.max_backoff)
                        failing = self._failing(exc)
                        _log.exception(
                            "projection %s failed (%d in a row); retrying %sin %.1f s",
                            projection.name,
                            failures[projection.name],
                            "at the next commit or " if failing.passing else "",
                            wait,
                        )
                        pause = max(pause, wait)
                        passing &= failing.passing
                        self.failing[projection.name] = failing
                        if not failing.passing:
                            await self._record_quietly(projection.name, failing.message)
                        await self._release_quietly(projection.name)
                    else:
                        failures[projection.name] = 0
                        self.failing.pop(projection.name, None)
                if pause and passing:
                    # A commit (this process's, or another's it hears of) says the database answers again:
                    # retry then rather than at the end of a backoff grown over a long outage, but never
                    # sooner than the first backoff (under steady writes every wait would end at once).
                    if await self.db.notifier.wait(generation, pause):
                        await asyncio.sleep(min(pause, self.backoff))
                elif pause:
                    await asyncio.sleep(pause)
                elif not busy:
                    await self.db.notifier.wait(generation, self.idle)
                    await asyncio.sleep(self.settle)
        finally:
            await self._step_down()

    async def _step_down(self) -> None:
        for name in self.leaders:
            await self._release_quietly(name)
        if self.present is not None:
            try:
                await self.present.release()
            except Exception:
                _log.exception("releasing the projection process's presence failed")

    async def take_leads(self) -> None:
        """Say this process runs (`timeline project`) and try for every lead, before serving anything; a
        database it cannot reach raises here, once."""
        if self.present is not None:
            await self.present.acquire()
        for lead in self.leaders.values():
            await lead.acquire()

    async def _announce(self) -> None:
        """For `timeline project`: hold the lock that says it runs (again, after a database restart). A
        failure is its own, not any projection's: the leads are left as they are and it is tried again."""
        if self.present is None:
            return
        try:
            await self.present.acquire()
        except Exception as exc:
            _log.warning("the projection process could not say it runs (tried again next round): %s", exc)

    async def _leads(self, name: str) -> bool:
        """Whether this process leads projection ``name`` now: it takes the lead if it is free, and one that
        defers gives it up while `timeline project` runs."""
        lead = self.leaders[name]
        if await lead.give_way():
            _log.info("projection %s: its lead given up to the projection process", name)
            return False
        return await lead.acquire()

    @staticmethod
    def _failing(exc: Exception) -> Failing:
        fault = fault_of(exc)
        if fault is None:
            return Failing(str(exc) or type(exc).__name__, passing=False)
        # The driver's words, without SQLAlchemy's wrapping (the statement, a link to its docs).
        cause = fault[1]
        return Failing(str(cause) or type(cause).__name__, passing=True)

    async def _record_quietly(self, name: str, message: str) -> None:
        # For the /health of every process, not only this one's (the leader may be `timeline project`).
        try:
            async with self.db.serial() as conn:
                await save_failure(conn, name, message)
        except Exception:
            _log.exception("recording the failure of projection %s failed", name)

    async def _release_quietly(self, name: str) -> None:
        try:
            await self.leaders[name].release()
        except Exception:
            _log.exception("releasing the lead of projection %s failed", name)
