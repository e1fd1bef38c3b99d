"""Group commit: many concurrent writes share one transaction, one lock and one commit.

Appends are serialized (one writer holds the log's lock at a time), so under concurrency the lock, not the
work, is the bottleneck. A ``Committer`` takes the write units waiting when the lock frees (waiting briefly
for more when fewer are queued than the last batch had), runs them in one write transaction, commits once,
and then answers every caller. A unit that fails gets its own error
and leaves no trace: the Recorder forgets what it recorded, and since the Recorder writes nothing before
``finish``, that is usually all there is to undo. A unit that failed after changing the database (or with a
database error) makes the batch roll back and run again with a SAVEPOINT around each unit, so it rolls back
alone. Each unit still sees the log exactly as if it had run alone after the ones before it, so positions,
versions and the hash chain are the same as with one transaction each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import remembering
from timeline.domain.events import DomainEvent
from timeline.service import Recorder
from timeline.store import idempotency
from timeline.store.database import Database, last_write
from timeline.store.faults import NeedsLock, causes

T = TypeVar("T")
_log = logging.getLogger("timeline.groupcommit")
Unit = Callable[["Recorder"], Awaitable[Any]]


class _Queued(NamedTuple):
    unit: Unit
    future: asyncio.Future[Any]
    # The streams the unit will read, and those whose existence it will check: read for the whole batch.
    reads: tuple[str, ...]
    probes: tuple[str, ...]
    # The events it will propose, when known: the views' rows for them come with the streams.
    proposed: tuple[DomainEvent, ...]
    # The (principal, Idempotency-Key) it will look up and store: read for the whole batch, stored with it.
    keys: tuple[idempotency.Ident, ...]


class Unavailable(Exception):
    """The committer is closing (the server is shutting down): the write was not, or may not have been,
    recorded. The API answers 503; the client retries against a running server."""


_REFUSED = "the server is shutting down; this write was not recorded: retry shortly"
_CUT_OFF = (
    "the server shut down while this write was being committed; it may or may not have been recorded: "
    "read it back, or retry with the same Idempotency-Key"
)


# Seconds ``close`` lets a batch already in its transaction finish before cancelling it.
CLOSE_GRACE = 5.0

# The longest a leader waits for the rest of a batch (see ``Committer._gather``).
GATHER_LIMIT = 0.02

# A batch is cut to half of the writers going round only when each half holds at least this many: at 32 and
# 64 HTTP connections halves wrote 11% and 16% more events a second, at 16 and 8 they wrote less (a
# transaction more per round costs more than the overlap gives back). bench/results-2026-12-04-halves.txt
HALF_AT_LEAST = 16

# Seconds batches take the log's lock up front after two in a row begun without it had to take it
# (``Committer._attempt``).
LOCKED_SPELL = 1.0


class _Unclean(Exception):
    """A unit failed after changing the database: only a savepoint could have undone its part alone."""


# Where a connection keeps the count of statements sent on it that may change something (all but SELECTs),
# counted by ``_count_changes`` on every engine a Committer writes through.
_SENT = "timeline.changes_sent"


def _count_changes(conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
    if statement.lstrip()[:6].upper() != "SELECT":
        conn.info[_SENT] = conn.info.get(_SENT, 0) + 1


def _watch_changes(db: Database) -> None:
    """Count the changes sent through ``db``'s engine (once): listening on each transaction's connection
    and then removing the listener took 7.7% of a single write's samples under its transaction (py-spy). Reads
    go through the same engine; a statement cost the same with the listener as without it (within the noise
    of about 100 us a statement, bench/results-2026-12-05-thirteenth-write-path.txt)."""
    engine = db.engine.sync_engine
    if not sa.event.contains(engine, "before_cursor_execute", _count_changes):
        sa.event.listen(engine, "before_cursor_execute", _count_changes)


class _Watch:
    """Counts the statements sent on a connection that may change something (all but SELECTs), from now
    on (none without a connection); its engine must be watched (``_watch_changes``)."""

    def __init__(self, conn: AsyncConnection | None) -> None:
        self._info = conn.info if conn is not None else None
        self._start = self._info.get(_SENT, 0) if self._info is not None else 0

    @property
    def changes(self) -> int:
        return self._info.get(_SENT, 0) - self._start if self._info is not None else 0


def _from_database(exc: BaseException) -> bool:
    # A failed statement can leave the transaction unusable (PostgreSQL aborts it), so any database error
    # in the chain counts, even one the unit wrapped in its own exception. Statements sent to the driver
    # itself (store.driver) raise the driver's own errors.
    database_errors = sa.exc.SQLAlchemyError | asyncpg.PostgresError | sqlite3.Error
    return any(isinstance(cause, database_errors) for cause in causes(exc))


class Committer:
    """Runs write units for one database on one event loop, batching those that arrive together."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 64,
        gather_limit: float = GATHER_LIMIT,
        future_slack: dt.timedelta | None = None,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> None:
        self.db = db
        _watch_changes(db)
        # Told (write units, events appended) after each transaction commits: the metrics count batches.
        self.on_commit = on_commit
        self.max_batch = max_batch
        self.gather_limit = gather_limit
        # The last batch's size and how long its transaction took: what the next leader waits for, how long.
        self._last_size = 1
        self._last_seconds = 0.0
        # How many writes the next batch may take (``_pace``).
        self._limit = max_batch
        self.future_slack = future_slack
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # The batch in its transaction now: answered by ``close`` if cancelled before it could answer.
        self._running: list[_Queued] = []
        # Until when (the loop's clock) batches begin with the log's lock rather than without it.
        self._locked_until = 0.0
        # Whether the last batch begun without the lock had to take it.
        self._refused = False

    async def run(
        self,
        unit: Callable[[Recorder], Awaitable[T]],
        *,
        reads: Iterable[str] = (),
        probes: Iterable[str] = (),
        proposed: Iterable[DomainEvent] = (),
        keys: Iterable[idempotency.Ident] = (),
    ) -> T:
        """Run ``unit`` in a write transaction shared with other units; return its result once that commits,
        or raise what it raised with only its changes undone. It may run twice, so it acts only in there.
        The streams it will ``reads`` and ``probes`` are read for the whole batch in one query (with the
        view rows the ``proposed`` events will need), the idempotency ``keys`` it will look up likewise, and
        what it stores under them is inserted with the rest of the batch's.
        Raises ``Unavailable`` once ``close`` has begun."""
        if self._closed:
            raise Unavailable(_REFUSED)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="group-commit")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(
            _Queued(unit, future, tuple(reads), tuple(probes), tuple(proposed), tuple(keys))
        )
        return await future

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._take(batch)
            try:
                await self._gather(batch)
            except BaseException:
                _answer(batch, _REFUSED)  # cancelled by ``close`` before the batch began
                raise
            if self._closed:
                _answer(batch, _REFUSED)
                return
            self._running = batch
            began = asyncio.get_running_loop().time()
            try:
                await self._commit(batch)
                self._last_size, self._last_seconds = len(batch), asyncio.get_running_loop().time() - began
            except BaseException:
                # Cancelled (by ``close``) or worse: nobody else will answer this batch's callers.
                _answer(batch, _CUT_OFF)
                raise
            finally:
                self._running = []
            await self._pace(len(batch))

    async def _pace(self, answered: int) -> None:
        """Set how many writes the next batch may take: half of the writers going round when they come back
        slowly, all that wait otherwise.

        A batch's round trips to the database leave the process idle unless some writers are elsewhere
        meanwhile. Over HTTP, with every connection's write in one batch, nothing is: the server parses
        32 requests, waits for the database, answers 32 and so on (busy 0.81 of the time). Cut in two
        halves, one half's requests are answered and parsed while the other half is in the database (busy
        0.97). Writers in this process that write again at once (the benchmarks' 32 writers) have no work
        of their own to overlap, and halves would only cost them a transaction more a round."""
        before = self._queue.qsize()
        if answered + before < 2 * HALF_AT_LEAST:
            self._limit = self.max_batch
            return
        # One turn of the loop: the callers just answered run until they next wait, which for a caller in
        # this process writing again is after it queued its next write. (One that reaches the committer
        # through another task, as asyncio.wait_for on Python 3.11, comes back a turn later and is halved.)
        await asyncio.sleep(0)
        waiting = self._queue.qsize()
        if waiting - before >= answered:
            self._limit = self.max_batch
        else:
            # Decided on who came back, not on the whole queue: with the other half waiting, the cap stays
            # at a half, so the writes joining a batch after the lock (``_transaction``) cannot merge them.
            self._limit = min(self.max_batch, -(-(answered + waiting) // 2))

    def _take(self, batch: list[_Queued]) -> None:
        while len(batch) < self._limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _gather(self, batch: list[_Queued]) -> None:
        """Wait a little for the rest of a batch when fewer writes are queued than the last batch had.

        Under a steady load of N writers, those still being decoded or authenticated when the queue is
        looked at would otherwise make a batch of their own, which costs a whole transaction: over HTTP with
        32 clients, batches alternated 1 and 31 writes (the token check answers the first request of a burst
        alone). As PostgreSQL's commit_delay does only when commit_siblings are active, a lone writer never
        waits (its last batch was 1); the wait is bounded by the last transaction's duration, which is what
        a write missing this batch would wait for the next one anyway, and by ``gather_limit``."""
        want = min(self._last_size, self._limit)
        window = min(self.gather_limit, self._last_seconds)
        if len(batch) >= want or window <= 0 or self._closed:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while len(batch) < want and not self._closed:
            try:
                async with asyncio.timeout_at(deadline):
                    batch.append(await self._queue.get())
            except TimeoutError:
                return
            self._take(batch)

    async def _commit(self, batch: list[_Queued]) -> None:
        try:
            outcomes = await self._attempt(batch)
        except Exception as exc:
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            return
        for future, ok, value in outcomes:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def _attempt(self, batch: list[_Queued]) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Commit the batch: first without a transaction of its own (``Database.append``: two round trips
        on PostgreSQL rather than four, three with idempotency keys); then, if that could not be, in a write
        transaction that holds the log's lock."""
        loop = asyncio.get_running_loop()
        if self.db.appends_unlocked and loop.time() >= self._locked_until:
            try:
                outcomes = await self._transaction(batch, savepoints=False, unlocked=True)
            except _Unclean:
                # A unit failed with a database error: straight to a savepoint each (a unit runs at most
                # twice, as without this attempt).
                return await self._transaction(batch, savepoints=True)
            except NeedsLock:
                # Another process writing (the log moved on), a rebuild, or a seal that must extend the
                # stored tree or leave events unsigned: twice in a row, it is likely again next time, and
                # each try costs the batch's read, so batches take the lock first a while. The one after
                # that spell tries again, and one refusal then starts another.
                if self._refused:
                    self._locked_until = loop.time() + LOCKED_SPELL
                self._refused = True
            else:
                self._refused = False
                return outcomes
        try:
            return await self._transaction(batch, savepoints=False)
        except _Unclean:
            # A unit failed after changing the database (or with a database error); nothing was
            # committed, so run the batch again with a savepoint around each unit.
            return await self._transaction(batch, savepoints=True)

    async def _transaction(
        self, batch: list[_Queued], *, savepoints: bool, unlocked: bool = False
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """``_committed`` with the claims' folds remembered: a batch folds each claim event up to three
        times (the rules, the views' look ahead, the views), and outside a write nothing is."""
        with remembering():
            return await self._committed(batch, savepoints=savepoints, unlocked=unlocked)

    async def _committed(
        self, batch: list[_Queued], *, savepoints: bool, unlocked: bool
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Run the batch in one write transaction and commit it; each unit's outcome, in order.

        Without ``savepoints``, a failing unit is only rewound in memory. That is enough when it failed
        before changing anything in the database (the usual case: the rules, If-Match or an idempotency
        key refused it; the Recorder writes nothing until ``finish``); otherwise this raises ``_Unclean``
        and the transaction rolls back. ``unlocked``: in ``Database.append``, where a unit that came to a
        statement only a locked transaction may send raises ``NeedsLock`` for the whole batch.
        """
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        async with self.db.append() if unlocked else self.db.write() as conn:
            # The writes queued while the lock was awaited join now rather than wait for the next turn: with
            # several processes taking turns at the lock, batches otherwise stay as small as they began
            # (3.7 writes on average over HTTP with two workers). Not once ``close`` has begun: what is
            # still queued then is refused.
            if not self._closed:
                self._take(batch)
            # One Recorder for the whole batch: its events go in with one INSERT and one save of the views.
            recorder = Recorder(conn, recorded_by="", label="", future_slack=self.future_slack)
            # Every stream the batch will read, in one query rather than one per unit.
            await recorder.preload(
                (s for queued in batch for s in queued.reads),
                probe=(s for queued in batch for s in queued.probes),
                proposed=[e for queued in batch for e in queued.proposed],
            )
            asked = {ident for queued in batch for ident in queued.keys}
            keys = await idempotency.Pending.read(conn, asked) if asked else None
            # Without the lock no statement goes through SQLAlchemy (Database.append refuses them): no watch.
            watch = _Watch(None if unlocked else conn)
            conn.info[idempotency.PENDING] = keys
            try:
                modes = {"savepoints": savepoints, "unlocked": unlocked}
                for queued in batch:
                    outcomes.append(await self._unit(queued, recorder, keys, watch, **modes))
            finally:
                conn.info.pop(idempotency.PENDING, None)
            if unlocked:
                last_write(conn)
            appended = await recorder.finish(answers=keys.take() if keys is not None else ())
        if self.on_commit is not None:
            self.on_commit(len(batch), len(appended))
        return outcomes

    @staticmethod
    async def _unit(
        queued: _Queued,
        recorder: Recorder,
        keys: idempotency.Pending | None,
        watch: _Watch,
        *,
        savepoints: bool,
        unlocked: bool,
    ) -> tuple[asyncio.Future[Any], bool, Any]:
        """Run one unit of the batch: its outcome, or ``_Unclean`` / ``NeedsLock`` for the whole batch."""
        unit, future, conn = queued.unit, queued.future, recorder.conn
        mark, changes = recorder.mark(), watch.changes
        stored = keys.mark() if keys is not None else 0
        try:
            if savepoints:
                async with conn.begin_nested():
                    result = await unit(recorder)
            else:
                result = await unit(recorder)
        except Exception as exc:  # the unit's own error goes back to its caller
            if unlocked and any(isinstance(cause, NeedsLock) for cause in causes(exc)):
                raise NeedsLock("a unit needs the log's lock") from exc
            recorder.rewind(mark)
            if keys is not None:
                keys.rewind(stored)
            if not savepoints and (watch.changes > changes or _from_database(exc)):
                raise _Unclean from exc
            return (future, False, exc)
        return (future, True, result)

    async def close(self, *, grace: float = CLOSE_GRACE) -> None:
        """Stop taking writes and answer every caller: the batch in its transaction gets ``grace`` seconds to
        commit, then is cancelled; writes still queued are refused with ``Unavailable``. Never hangs."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            # Let the batch in hand commit (its callers then get their real answers); the loop is stopped
            # as soon as it waits for the next batch, so nothing queued behind it is started.
            running = self._running
            if running:
                await asyncio.wait([q.future for q in running], timeout=grace)
            task.cancel()
            # A transaction stuck in the database may not even end when cancelled: answer for it regardless.
            await asyncio.wait([task], timeout=grace)
            _answer(running, _CUT_OFF)
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                _log.error("group commit stopped on an error", exc_info=error)
        queued: list[_Queued] = []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        _answer(queued, _REFUSED)


def _answer(batch: Iterable[_Queued], message: str) -> None:
    # A new exception for each caller: one instance raised in many tasks would gather all their tracebacks.
    for queued in batch:
        if not queued.future.done():
            queued.future.set_exception(Unavailable(message))
