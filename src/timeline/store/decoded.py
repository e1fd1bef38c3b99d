"""The snapshots this process has decoded, shared by its readers: decoding a hot subject's costs more than
all the rest of a cut, so each is decoded once, checked against the log as ``store.snapshots`` says, and
kept (by everything its digest covers) until the cache's bound evicts it. Their claims are decoded once for
all of them (``_pool``). What a snapshot holds is never changed, only read from; made from it on first use
are its ``as_of`` part (``earlier``) and the views a cut starts from (``base``), and kept with it, only ever
appended to, the events read after it (``after``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import gc
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import resumed
from timeline.domain.streams import claim_stream
from timeline.projections import ClaimRecord, TimelineEntry
from timeline.resumed import Base, Folded
from timeline.store import eventlog, queries, snaprows
from timeline.store.snapshots import FORMAT, Snapshot
from timeline.timetravel import Earlier, Logged


@contextmanager
def no_collection() -> Iterator[None]:
    """Decoding or folding a hot subject makes some 100,000 short-lived containers, none in a cycle: the
    cyclic collector would walk them repeatedly (a third of a fold's time), so it waits until the end."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


async def earlier(
    conn: AsyncConnection, subject_id: str, snapshot: Snapshot
) -> dict[str, list[Earlier]] | None:
    """The snapshot's claims at earlier valid times, read and decoded on first use (by each of the cuts
    that race for it, at most; the bytes it holds are counted for each, and let go of together); None if
    the stored part fails its hash."""
    global _held  # noqa: PLW0603
    if snapshot.earlier is None:
        stored = await snaprows.part(conn, subject_id, snapshot.position, snapshot.parts, "earlier")
        if stored is None:
            return None
        with no_collection():
            try:
                snapshot.earlier = _earlier_decoder.decode(stored)
            except msgspec.DecodeError:
                snaprows.malformed(subject_id, snapshot.position, "earlier")
                return None
        if snapshot.tail.cached:  # decoded, some three times this (``CACHED_BYTES``)
            snapshot.tail.held += len(stored)
            _held += len(stored)
            _trim()
    return snapshot.earlier


def base(snapshot: Snapshot) -> Base:
    """What a cut from the snapshot starts from, made once (each cut changes a copy of its views)."""
    if snapshot.base is None:
        with no_collection():
            snapshot.base = resumed.base(snapshot.claims)
    return snapshot.base


class _Stored(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A claim as a snapshot stores it (a ``Folded``), read with its parts left encoded: its version and
    bytes find it among the claims already decoded (``_pool``), and only a claim not there is decoded."""

    record: msgspec.Raw
    entries: msgspec.Raw
    version: int
    latest: msgspec.Raw


class _StoredState(msgspec.Struct, frozen=True, kw_only=True):
    claims: dict[str, _Stored]
    sources: list[str]


_stored_decoder = msgspec.json.Decoder(_StoredState)
_record_decoder = msgspec.json.Decoder(ClaimRecord)
_entries_decoder = msgspec.json.Decoder(dict[int, TimelineEntry | None])
_latest_decoder = msgspec.json.Decoder(dt.date | None)
_earlier_decoder = msgspec.json.Decoder(dict[str, list[Earlier]])


# Snapshots decoded lately, by everything their digest covers: a hit is a row whose digest was checked over
# the very bytes decoded here, so it is used without reading or decoding them again (decoding a subject of
# 10,000 events is most of a cut's cost).
_decoded: OrderedDict[tuple[str, int, str, str], Snapshot] = OrderedDict()
CACHED = 16


# Their claims, decoded once for all of them. Snapshots of a subject share most of their claims (of the
# bench hot subject's 2,793 at position 570,000, 1,705 were the same at 855,000, three snapshots on): a
# claim at the same version of its stream is stored in the same bytes, and decoded to the same ``Folded``.
# So a snapshot next to one decoded already costs the claims that changed in between, in time and in
# memory. The bytes are compared, not only the versions: two databases in one process (or an edited row)
# may differ at the same version.
class _Pooled:
    """A decoded claim, the bytes it was decoded from, and how many cached snapshots hold it."""

    __slots__ = ("folded", "holders", "size", "stored")

    def __init__(self, folded: Folded, stored: tuple[msgspec.Raw, ...]) -> None:
        self.folded, self.stored, self.holders = folded, stored, 0
        self.size = sum(len(part) for part in stored)


# By (claim, version): usually one, more only where encodings differ at the same version.
_pool: dict[tuple[str, int], list[_Pooled]] = {}
# The bytes the cache holds, counted as encoded: each pooled claim once, and what each snapshot holds of its
# own (its ``as_of`` part once decoded, and the events after it: ``Tail.held``).
# A decoded claim takes about three times its encoded size, and its encoding is kept beside it, so the
# bound keeps a server's decoded snapshots to some 150 MB: every snapshot of the bench's hot subject from
# the middle of a 1,000,000-event log on (where the previous bound, counting each snapshot whole, held four).
CACHED_BYTES = 48_000_000
_held = 0


def _claims_of(stored: _StoredState) -> dict[str, Folded]:
    """The stored claims as ``Folded``, each decoded only if no cached snapshot holds the same bytes. Every
    claim is decoded before the pool takes any, so a part that fails to decode leaves the pool as it was."""
    global _held  # noqa: PLW0603 (the cache's running total, kept beside it)
    found: list[tuple[str, _Pooled, bool]] = []  # (claim, its pooled entry, whether it is new)
    for claim_id, kept in stored.claims.items():
        same = _pool.get((claim_id, kept.version), ())
        pooled = next((p for p in same if p.stored == (kept.record, kept.entries, kept.latest)), None)
        if pooled is not None:
            found.append((claim_id, pooled, False))
            continue
        folded = Folded(
            record=_record_decoder.decode(kept.record),
            entries=_entries_decoder.decode(kept.entries),
            version=kept.version,
            latest=_latest_decoder.decode(kept.latest),
        )
        # Copies: the decoded ``Raw`` parts would keep the whole snapshot's bytes alive.
        copies = tuple(msgspec.Raw(bytes(part)) for part in (kept.record, kept.entries, kept.latest))
        found.append((claim_id, _Pooled(folded, copies), True))
    claims: dict[str, Folded] = {}
    for claim_id, pooled, new in found:
        if new:
            _pool.setdefault((claim_id, pooled.folded.version), []).append(pooled)
            _held += pooled.size
        pooled.holders += 1
        claims[claim_id] = pooled.folded
    return claims


def _evict() -> None:
    """Drop the least recently used snapshot, and the pooled claims no other cached snapshot holds."""
    global _held  # noqa: PLW0603
    snapshot = _decoded.popitem(last=False)[1]
    tail: Tail = snapshot.tail
    tail.cached = False
    _held -= tail.held
    for claim_id, folded in snapshot.claims.items():
        same = _pool[(claim_id, folded.version)]
        pooled = next(p for p in same if p.folded is folded)
        pooled.holders -= 1
        if not pooled.holders:
            same.remove(pooled)
            _held -= pooled.size
            if not same:
                del _pool[(claim_id, folded.version)]


def _trim() -> None:
    while _decoded and (len(_decoded) > CACHED or _held > CACHED_BYTES):
        _evict()


async def latest(conn: AsyncConnection, subject_id: str, position: int) -> Snapshot | None:
    """The latest snapshot of the subject at or before ``position`` that the log confirms, else None.

    Always the latest, decoded or not: an older one decoded already saves decoding this one once, but then
    every cut folds the thousands of events in between (a cut on the hot subject took 95 ms from two
    snapshots back, against 14-28 ms from the latest, once decoded)."""
    row = (await conn.execute(snaprows.row_at(subject_id, position, before=True))).first()
    if row is None:
        return None
    at, fmt, chain_hash, recorded_digest, parts, logged_hash = row
    key = (subject_id, at, chain_hash, recorded_digest)
    if fmt == FORMAT and logged_hash == chain_hash and (hit := _decoded.get(key)) is not None:
        _decoded.move_to_end(key)
        return hit
    if (
        not snaprows.confirmed(subject_id, row)
        or (state := await snaprows.part(conn, subject_id, at, parts, "state")) is None
    ):
        return None
    if (hit := _decoded.get(key)) is not None:  # decoded by another cut while this one read
        return hit
    with no_collection():
        try:
            stored = _stored_decoder.decode(state)
            claims = _claims_of(stored)
        except msgspec.DecodeError:
            snaprows.malformed(subject_id, at, "state")
            return None
    # In key order: the log's (stream, version) index is then probed in its own order (``logged_after``).
    versions = dict(sorted((claim_stream(c), kept.version) for c, kept in claims.items()))
    found = Snapshot(
        position=at,
        claims=claims,
        sources=stored.sources,
        versions=versions,
        parts=parts,
        tail=Tail(through=at, through_hash=chain_hash, versions=dict(versions)),
    )
    _decoded[key] = found
    _trim()
    return found


# The stream versions of snapshots read by ``following`` (small: 55 KB for the hot subject's at 950,000).
_following: OrderedDict[tuple[str, int, str, str], dict[str, int]] = OrderedDict()


async def following(conn: AsyncConnection, subject_id: str, position: int) -> dict[str, int] | None:
    """The stream versions of the subject's first snapshot after ``position``, if the log still confirms
    it (else None): a stream at the same version there as in an earlier snapshot had no event in between,
    so a cut from the earlier one reads no tail for it. Read from the row's small ``versions`` part."""
    row = (await conn.execute(snaprows.row_at(subject_id, position, before=False))).first()
    if row is None:
        return None
    at, fmt, chain_hash, recorded_digest, parts, logged_hash = row
    key = (subject_id, at, chain_hash, recorded_digest)
    if fmt == FORMAT and logged_hash == chain_hash:
        if (hit := _decoded.get(key)) is not None:
            return hit.versions
        if (known := _following.get(key)) is not None:
            _following.move_to_end(key)
            return known
    if not snaprows.confirmed(subject_id, row):
        return None
    if (stored := await snaprows.part(conn, subject_id, at, parts, "versions")) is None:
        return None
    try:
        found = {claim_stream(c): v for c, v in snaprows.versions_decoder.decode(stored).items()}
    except msgspec.DecodeError:
        snaprows.malformed(subject_id, at, "versions")
        return None
    _following[key] = found
    while len(_following) > CACHED:
        _following.popitem(last=False)
    return found


# What a read event is counted as in the cache's bytes: the mean size of an event row of the bench's log.
_EVENT_BYTES = 700


class Tail:
    """The events on a snapshot's streams after it, up to ``through``, in log order, as cuts from it read
    them, and the last version read of each stream. The log up to its head never changes (positions are
    committed in order), so a later cut at or before ``through`` reads nothing, and one after reads only
    what came since: repeated cuts near the head (every ``as_of`` cut now) stop probing every stream. Only
    ever appended to, so a cut's slice of it stays what it read."""

    __slots__ = ("cached", "events", "held", "through", "through_hash", "versions")

    def __init__(self, *, through: int, through_hash: str, versions: dict[str, int]) -> None:
        self.through = through
        # The chain hash of the event at ``through``: the log the events were read from, up to there.
        self.through_hash = through_hash
        self.versions = versions
        self.events: list[Logged] = []
        self.cached = True  # grown only while in the cache, whose bytes count it
        self.held = 0  # the bytes the snapshot holds of its own: these events, its decoded ``as_of`` part


async def after(conn: AsyncConnection, subject_id: str, snapshot: Snapshot, position: int) -> list[Logged]:
    """The events on the snapshot's streams after it, up to ``position``, in log order."""
    global _held  # noqa: PLW0603
    tail: Tail = snapshot.tail
    # What this cut starts from, taken before any wait: another cut may extend the tail meanwhile.
    seen, through, versions = len(tail.events), tail.through, dict(tail.versions)
    if through > snapshot.position and await eventlog.hash_at(conn, through) != tail.through_hash:
        # The snapshot's key checked the log up to it; after it, this log is not the one read (a copy of
        # the database that went another way, say): read as if nothing had been, and keep nothing.
        return await queries.logged_after(conn, dict(snapshot.versions), position=position)
    if position <= through:
        return tail.events[: bisect.bisect_right(tail.events, position, hi=seen, key=_position)]
    # Only up to the head is the log settled: an event at ``position`` read before the tail is, the events
    # before it were committed before it (a position past the head names nothing yet, and is not kept).
    settled = await eventlog.hash_at(conn, position)
    wanted = versions
    if (bound := await following(conn, subject_id, position)) is not None:
        # A stream at the same version in the next snapshot had no event up to it.
        wanted = {s: v for s, v in versions.items() if bound.get(s) != snapshot.versions[s]}
    found = await queries.logged_after(conn, wanted, position=position)
    if tail.cached and tail.through == through and settled is not None:
        tail.events.extend(found)
        tail.versions.update((e.stream_id, e.stream_version) for e in found)
        tail.through, tail.through_hash = position, settled
        tail.held += len(found) * _EVENT_BYTES
        _held += len(found) * _EVENT_BYTES
        _trim()
    return [*tail.events[:seen], *found]


def _position(e: Logged) -> int:
    return e.position
