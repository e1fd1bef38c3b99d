"""One reader of the log for every live stream of a process: each new batch of events is read once, encoded
once as Server-Sent Events, and handed to the streams it concerns. A stream is woken only when a batch
touches what it filters on, so idle streams cost a commit nothing."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api import faults, present
from timeline.domain.claims import ClaimEvent
from timeline.domain.events import ClaimMade, StatementMade
from timeline.domain.streams import parse as parse_stream
from timeline.domain.streams import sources_named
from timeline.store import eventlog, tokens
from timeline.store.database import Database
from timeline.store.eventlog import RecordedEvent
from timeline.store.schema import claims

BATCH = 500
# Recent events kept for streams a little behind; a stream further back reads the log itself.
WINDOW = 5_000
# SQLite has no notifications across processes: the one reader looks at the log this often instead.
POLL_SQLITE = 0.25
# On PostgreSQL, LISTEN wakes the reader; it looks anyway this often, in case a notification was lost.
FALLBACK = 5.0
# After a wake-up, the reader waits this long for more commits: under a stream of writes, each open stream
# then gets one send per gathering rather than one per commit (a send costs the same for 1 event or 20).
GATHER = 0.05
# Seconds between checks that the tokens of open streams are still valid (when reads need a token).
RECHECK = 2.0
KEEPALIVE = b": keep-alive\n\n"
_IDLE = 2**63  # the floor while the reader is not reading: every stream reads the log itself
_ALL = ("all", "")
_encoder = msgspec.json.Encoder()
_log = logging.getLogger(__name__)

Key = tuple[str, str]


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a stream delivers: all, or those about a subject, a claim or a source (all given)."""

    subject: str | None = None
    claim: str | None = None
    source: str | None = None

    @property
    def key(self) -> Key:
        """What the stream waits on: every event that passes the filter touches this key."""
        if self.claim is not None:
            return ("claim", self.claim)
        if self.subject is not None:
            return ("subject", self.subject)
        if self.source is not None:
            return ("source", self.source)
        return _ALL

    def admits(self, item: Item) -> bool:
        """Whether the stream delivers this event."""
        return (
            (self.claim is None or item.claim_id == self.claim)
            and (self.subject is None or item.subject == self.subject)
            and (self.source is None or self.source in item.sources)
        )


class Item(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event as every stream sends it, with what the filters ask about it."""

    position: int
    claim_id: str | None
    subject: str | None
    sources: frozenset[str]
    wire: bytes

    @property
    def keys(self) -> Iterable[Key]:
        """The keys of the streams this event may concern."""
        yield _ALL
        if self.claim_id is not None:
            yield ("claim", self.claim_id)
        if self.subject is not None:
            yield ("subject", self.subject)
        for source in self.sources:
            yield ("source", source)


def _wire(e: RecordedEvent) -> bytes:
    # The JSON has no line breaks (msgspec writes it compact), so it is one data line.
    data = _encoder.encode(present.event_out(e))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (e.position, e.type.encode(), data)


async def _owners(conn: AsyncConnection, batch: list[RecordedEvent]) -> dict[str, tuple[str, str]]:
    """Each claim's (subject, source) as currently recorded, for the claims a batch touches."""
    ids = {e.event.claim_id for e in batch if isinstance(e.event, ClaimEvent)}
    if not ids:
        return {}
    result = await conn.execute(
        sa.select(claims.c.claim_id, claims.c.subject_id, claims.c.source_id).where(
            claims.c.claim_id.in_(ids)
        )
    )
    return {row[0]: (row[1], row[2]) for row in result}


def _item(e: RecordedEvent, owners: dict[str, tuple[str, str]]) -> Item:
    event = e.event
    if not isinstance(event, ClaimEvent):
        kind, name = parse_stream(e.stream_id)
        # A statement, in its subject's stream, also concerns the source that made it.
        speaker = [event.source_id] if isinstance(event, StatementMade) else []
        return Item(
            position=e.position,
            claim_id=None,
            subject=name if kind == "subject" else None,
            sources=frozenset([name] if kind == "source" else speaker),
            wire=_wire(e),
        )
    subject, maker = owners.get(event.claim_id, (None, None))
    if isinstance(event, ClaimMade):
        subject, maker = event.subject_id, event.source_id
    named = set(sources_named(event))
    if maker is not None:
        named.add(maker)
    return Item(
        position=e.position, claim_id=event.claim_id, subject=subject, sources=frozenset(named), wire=_wire(e)
    )


async def read_items(db: Database, after: int, limit: int = BATCH) -> list[Item]:
    """The events after a position, ready to send, read in one snapshot."""
    async with db.read() as conn:
        batch = await eventlog.read_all(conn, after=after, limit=limit)
        owners = await _owners(conn, batch)
    return [_item(e, owners) for e in batch]


class Subscriber:
    """One open stream: what it filters on and, when reads need a token, the secret it was opened with."""

    def __init__(self, where: Filter, secret: str | None) -> None:
        self.where = where
        self.secret = secret
        self.ended = False


class Hub:
    """The one reader of new events for the live streams of a process (see the module docstring)."""

    def __init__(
        self, db: Database, verifier: tokens.Verifier | None = None, *, fallback: float = FALLBACK
    ) -> None:
        self.db = db
        self.verifier = verifier
        # How long the reader waits for a wake-up before looking at the log anyway.
        self.poll = POLL_SQLITE if db.dialect == "sqlite" else fallback
        self.floor = _IDLE  # the window holds every event after this position up to ``tail``
        self.tail = 0
        self._positions: list[int] = []
        self._items: list[Item] = []
        self._touched: dict[Key, int] = {}  # for keys with subscribers: the last position that touched them
        self._signals: dict[Key, asyncio.Event] = {}
        self._subscribers: set[Subscriber] = set()
        self._someone = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._guard: asyncio.Task[None] | None = None
        self.batches = 0  # batches of new events read from the log (tests count them)
        # The event the reader cannot get past, while it cannot: streams that reach it are ended.
        self.unreadable: eventlog.UnreadableEvent | None = None

    @property
    def subscribers(self) -> int:
        """Live streams open now."""
        return len(self._subscribers)

    def subscribe(self, where: Filter, secret: str | None = None) -> Subscriber:
        """Register a stream; the reader runs while there is at least one."""
        subscriber = Subscriber(where, secret)
        self._subscribers.add(subscriber)
        self._touched.setdefault(where.key, self.tail)
        self._someone.set()
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="live-fanout")
        if secret is not None and self.verifier is not None and self._guard is None:
            self._guard = asyncio.create_task(self._check_tokens(), name="live-tokens")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream that closed."""
        self._subscribers.discard(subscriber)
        if not self._subscribers:
            self._someone.clear()

    def signal(self, key: Key) -> asyncio.Event:
        """Set when a batch touching ``key`` arrives (taken before looking, so no batch is missed)."""
        found = self._signals.get(key)
        if found is None:
            found = self._signals[key] = asyncio.Event()
        return found

    def after(self, position: int, key: Key) -> list[Item] | None:
        """The window's events after ``position`` (none if nothing since touched ``key``); None when the
        window no longer reaches back to ``position``."""
        if position < self.floor:
            return None
        if self._touched.get(key, self.tail) <= position:
            return []
        return self._items[bisect.bisect_right(self._positions, position) :]

    def _publish(self, items: list[Item]) -> None:
        self._items.extend(items)
        self._positions.extend(i.position for i in items)
        self.tail = items[-1].position
        if len(self._items) > 2 * WINDOW:
            cut = len(self._items) - WINDOW
            self.floor = self._positions[cut - 1]
            del self._items[:cut], self._positions[:cut]
        touched: set[Key] = set()
        for item in items:
            for key in item.keys:
                if key in self._touched:
                    self._touched[key] = item.position
                    touched.add(key)
        for key in touched:
            if (event := self._signals.pop(key, None)) is not None:
                event.set()

    def _restart(self, head: int) -> None:
        """Start the window afresh at ``head`` (after an idle spell, nothing older is kept)."""
        self.floor = self.tail = head
        self._items, self._positions = [], []
        keys = {s.where.key for s in self._subscribers}
        self._touched = dict.fromkeys(keys | {_ALL}, head)
        self._wake_all()

    def _wake_all(self) -> None:
        signals, self._signals = self._signals, {}
        for event in signals.values():
            event.set()

    async def _run(self) -> None:
        while True:
            await self._someone.wait()
            try:
                async with self.db.read() as conn:
                    self._restart(await eventlog.head_position(conn))
            except Exception:
                _log.warning("live streams: reading the log failed; retrying in 1 s", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            while self._subscribers:
                generation = self.db.notifier.generation
                try:
                    items = await read_items(self.db, self.tail)
                    self.unreadable = None
                except eventlog.UnreadableEvent as exc:
                    _log.error("live streams: %s; retrying in 1 s", exc)
                    self.unreadable = exc
                    self._wake_all()
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    # The database went away: streams keep waiting, and reading resumes from the tail.
                    _log.warning("live streams: reading the log failed; retrying in 1 s", exc_info=True)
                    await asyncio.sleep(1.0)
                    continue
                if items:
                    self.batches += 1
                    self._publish(items)
                if len(items) < BATCH and await self.db.notifier.wait(generation, self.poll):
                    await asyncio.sleep(GATHER)
            self.floor = _IDLE
            self._wake_all()

    async def _check_tokens(self) -> None:
        assert self.verifier is not None
        while True:
            await asyncio.sleep(RECHECK)
            held = {s.secret for s in self._subscribers if s.secret is not None and not s.ended}
            if not held:
                continue
            ordered = sorted(held)
            try:
                # Checks started together share one lookup (tokens.Verifier).
                found = await asyncio.gather(*(self.verifier.verify(secret) for secret in ordered))
            except Exception:
                _log.warning("live streams: checking tokens failed; retrying", exc_info=True)
                continue
            invalid = {secret for secret, t in zip(ordered, found, strict=True) if t is None or t.revoked_at}
            for subscriber in list(self._subscribers):
                if subscriber.secret in invalid:
                    subscriber.ended = True
                    self.signal(subscriber.where.key).set()
                    self._signals.pop(subscriber.where.key, None)

    async def close(self) -> None:
        """Stop reading (the server is stopping)."""
        for task in (self._runner, self._guard):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._guard = None


async def follow(
    hub: Hub, after: int, where: Filter, keepalive: float, secret: str | None = None
) -> AsyncIterator[bytes]:
    """Every event after ``after`` that matches, then each new one as it commits, as SSE bytes; a comment
    when idle. Ends when the stream's token is revoked, or with an ``error`` event at an event this version
    cannot read."""
    subscriber = hub.subscribe(where, secret)
    key = where.key
    position = after
    try:
        while not subscriber.ended:
            signal = hub.signal(key)
            items = hub.after(position, key)
            try:
                if items is None:  # behind the window (or the reader is not reading yet): read the log
                    items = await read_items(hub.db, position)
                elif not items:
                    position = max(position, hub.tail)  # nothing since touched this stream
                    if hub.unreadable is not None and position < hub.unreadable.position:
                        raise hub.unreadable
            except eventlog.UnreadableEvent as exc:
                yield faults.unreadable_frame(exc)
                return
            if not items:
                try:
                    async with asyncio.timeout(keepalive):
                        await signal.wait()
                except TimeoutError:
                    yield KEEPALIVE
                continue
            position = items[-1].position
            chunk = b"".join(i.wire for i in items if where.admits(i))
            if chunk:
                yield chunk
    finally:
        hub.unsubscribe(subscriber)
