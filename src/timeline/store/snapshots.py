"""Time travel's snapshots: a subject's claims folded from the log up to a position, kept so that a cut
folds only what came after. A cache derived from the log and checked against it before it is used.

Each row carries the chain hash of the event at its position and a digest over that hash, its position,
subject, format and the hash of each part it stores (the claims; what they show at earlier valid times;
their stream versions), so each part is read and checked alone. A reader (``store.decoded``) takes the
latest row at or before its cut and uses it only if the event at that position still has that hash (the
log it was folded from is this log, up to there), the digest matches, and each part it reads matches its
hash (the row was not edited or cut short); otherwise it folds from the log, so
neither a stale nor an edited snapshot changes an answer. The digest is no signature: someone who can
write the table and recomputes it can forge a row, as they could forge any view; the log, its hash chain
and its signed checkpoints remain the record, and ``timeline verify`` checks those.

Snapshots are written by the asynchronous projector (``Taker``), off the write path: appends never wait
for one, and the fold a snapshot costs is made in a read transaction of its own, after the projector's
batch has committed. Only a few are kept per subject (``retained``), pruned as each new one is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import ClaimEvent
from timeline.domain.events import ClaimMade, RecordCorrected
from timeline.resumed import Base, Folded
from timeline.store import eventlog, queries, streams
from timeline.store.database import Database, insert_into
from timeline.store.eventlog import RecordedEvent
from timeline.store.schema import time_travel_counts, time_travel_snapshots
from timeline.store.views import chunked
from timeline.timetravel import Earlier

# The shape of ``state`` and of the fold that made it (the write path's fold format, which a change to what
# an event does to a claim bumps, is part of it): a row of another format is ignored, and time travel folds
# from the log until the projector has kept new ones. A new snapshot carries over, as stored, the claims
# with no event since the previous one (``travel.take``), so a change to what ``timetravel.folded_claims``
# or ``earlier_states`` make of a claim (its entries included) must bump the 3000 too: a claim left alone
# would otherwise keep its old fold in every snapshot after.
FORMAT = 3000 + streams.FORMAT
# A subject gets a snapshot after this many of its events: a cut then folds at most about this many on top.
EVERY = 1000
# Claim streams whose subject a Taker remembers (about 200 bytes each).
SUBJECTS_KEPT = 20_000
# The latest snapshots of a subject kept whatever their spacing: a subject of up to ``KEEP`` x ``EVERY``
# events keeps every one, so any cut on it folds at most ``EVERY`` of its events on top (a cut on a subject
# of 10,000 events folded up to 4,000 with three: most of its time). Older ones are thinned geometrically.
KEEP = 12


class Carried(msgspec.Struct, kw_only=True):
    """Claims a snapshot keeps as its subject's previous snapshot stored them, still encoded: each claim as
    stored, what it showed at earlier valid times (for those that have any), its stream version. A take
    that folds again only the claims with events since decodes and encodes none of these."""

    claims: dict[str, msgspec.Raw]
    earlier: dict[str, msgspec.Raw]
    versions: dict[str, int]


class Snapshot(msgspec.Struct, kw_only=True):
    """A subject's claims (every claim about it at some moment up to ``position``) and the source
    streams their events name (whose registrations time travel reads from the log)."""

    position: int
    claims: dict[str, Folded]
    sources: list[str]
    # Each claim's stream and the version of it folded (where the events after the snapshot start).
    versions: dict[str, int] = msgspec.field(default_factory=dict)
    # What claims show at valid times before their ``latest`` (``timetravel.earlier_states``): only an
    # ``as_of`` cut needs them, so a reader reads them the first time one asks (``decoded.earlier``).
    earlier: dict[str, list[Earlier]] | None = None
    # The hashes of the stored parts (``seal``), which a reader checks each part against as it reads it.
    parts: str = ""
    # What a cut from here starts from (``resumed.base``), made the first time one does.
    base: Base | None = None
    # The events on its streams after it that cuts have read so far (``store.decoded.after``).
    tail: Any = None
    # Claims taken over from the previous snapshot as it stored them, stored with ``claims`` (``keep``).
    carried: Carried | None = None


class _State(msgspec.Struct, frozen=True, kw_only=True):
    claims: dict[str, Folded | msgspec.Raw]
    sources: list[str]


_encoder = msgspec.json.Encoder()


def digest(subject_id: str, position: int, chain_hash: str, parts: str) -> str:
    """What a snapshot row's digest is over: everything that says what it folds and from which log, and
    the hash of each part it stores (``parts``)."""
    return hashlib.sha256(f"{FORMAT}\n{subject_id}\n{position}\n{chain_hash}\n{parts}".encode()).hexdigest()


PARTS = ("state", "earlier", "versions")


def part_hash(part: bytes) -> str:
    """The hash ``parts`` holds for one stored part."""
    return hashlib.sha256(part).hexdigest()


def seal(subject_id: str, position: int, chain_hash: str, stored: dict[str, bytes]) -> dict[str, str]:
    """The ``parts`` and ``digest`` columns of a row storing these parts (``PARTS``, by column)."""
    parts = " ".join(part_hash(stored[name]) for name in PARTS)
    return {"parts": parts, "digest": digest(subject_id, position, chain_hash, parts)}


async def keep(conn: AsyncConnection, subject_id: str, snapshot: Snapshot) -> None:
    """Store a snapshot (a second one at the same position is left as it is)."""
    chain_hash = await eventlog.hash_at(conn, snapshot.position)
    if chain_hash is None:
        raise LookupError(f"no event at position {snapshot.position} to snapshot at")
    carried = snapshot.carried or Carried(claims={}, earlier={}, versions={})
    # Carried claims first, then those folded again: not the order a whole take gives (that of their first
    # events), so the bytes differ from one, but no reader depends on the order of a subject's claims.
    claims: dict[str, Folded | msgspec.Raw] = {**carried.claims, **snapshot.claims}
    earlier: dict[str, list[Earlier] | msgspec.Raw] = {**carried.earlier, **(snapshot.earlier or {})}
    versions = {**carried.versions, **{c: kept.version for c, kept in snapshot.claims.items()}}
    # Apart: what every cut reads, what only an ``as_of`` cut does, and what tells which streams changed
    # between two snapshots (``decoded.following``) without decoding either.
    stored = {
        "state": _encoder.encode(_State(claims=claims, sources=snapshot.sources)),
        "earlier": _encoder.encode(earlier),
        "versions": _encoder.encode(versions),
    }
    values = {
        "subject_id": subject_id,
        "position": snapshot.position,
        "format": FORMAT,
        "chain_hash": chain_hash,
        **seal(subject_id, snapshot.position, chain_hash, stored),
        **stored,
    }
    # Two processes may store the same one (a leader that lost its lead while storing, and the next).
    await conn.execute(insert_into(conn, time_travel_snapshots).values(values).on_conflict_do_nothing())
    await prune(conn, subject_id)


def retained(positions: Sequence[int]) -> set[int]:
    """Which of a subject's snapshots (by position) to keep: the latest ``KEEP``, the oldest, and between
    them, walking back, the oldest one no farther behind the last kept than that one is behind the newest.

    Each snapshot holds the subject's whole state, so keeping every one grows the table with the square of
    the subject's events (1.49 GB for a log of 1,000,000). Kept this way, the gaps at least double every two
    steps back, so a subject keeps about ``KEEP`` + 2 log2(newest / spacing) rows, yet a cut ``d`` positions
    behind the newest snapshot starts from one at most ``d`` positions behind it (or as near as the
    snapshots ever were): recent cuts fold little, old ones at most as much as their age. Pruning again
    only removes more, and what it keeps still holds to this, as every age grows while gaps do not.
    """
    ordered = sorted(set(positions), reverse=True)
    kept = ordered[:KEEP]
    rest = ordered[KEEP:]
    i = 0
    while i < len(rest):
        last = kept[-1]
        reach = last - (ordered[0] - last)
        j = i  # the next older one, when none lies within reach
        while j + 1 < len(rest) and rest[j + 1] >= reach:
            j += 1
        kept.append(rest[j])
        i = j + 1
    return set(kept)


async def prune(conn: AsyncConnection, subject_id: str) -> None:
    """Delete the subject's snapshots ``retained`` does not keep, and any of another format (never used)."""
    s = time_travel_snapshots
    rows = (await conn.execute(sa.select(s.c.position, s.c.format).where(s.c.subject_id == subject_id))).all()
    keep_at = retained([at for at, fmt in rows if fmt == FORMAT])
    if dropped := [at for at, _ in rows if at not in keep_at]:
        await conn.execute(sa.delete(s).where(s.c.subject_id == subject_id, s.c.position.in_(dropped)))


class Taker:
    """An asynchronous projection that snapshots each subject after every ``every`` of its events.

    Which subject an event is about is decided from the log (a claim's ClaimMade; a correction may name a
    new one). The count since a subject's last snapshot came due is written with each batch
    (``time_travel_counts``), and a snapshot that came due is marked there until it is stored, so a
    restarted taker reads both back: a restart neither puts a snapshot off nor loses one that came due.
    That decides only when, never what."""

    name = "time_travel_snapshots"
    tables: tuple[sa.Table, ...] = (time_travel_snapshots, time_travel_counts)

    def __init__(self, db: Database, every: int | None = None) -> None:
        self.db = db
        self.every = EVERY if every is None else every
        self.pending: dict[str, int] = {}
        self.due: dict[str, int] = {}  # subject -> position to snapshot it at, once the batch is committed
        self.applied = 0  # the last position this process counted
        # The subject each claim stream was made about: its ClaimMade never changes, and without this the
        # projector asked the log for it in every batch (2.5% of a server's CPU under 32 HTTP writers,
        # bench/results-2026-12-04-write-plans.txt). Emptied once it holds SUBJECTS_KEPT.
        self.subject_of: dict[str, str] = {}

    async def apply(self, conn: AsyncConnection, batch: Sequence[RecordedEvent]) -> None:
        """Count the batch's events per subject; each subject that reached ``every`` comes due for a snapshot
        at the batch's last position (taken by ``after_commit``)."""
        if not self.applied or batch[0].position != self.applied + 1:
            # A new process, a reset projection (a rebuild), a batch counted here that did not commit, or
            # batches another process led meanwhile: what is committed is what counts. Snapshots that came
            # due and were never stored are taken now.
            self.pending.clear()
            self.subject_of.clear()
            self.due = await _undone(conn)
        self.applied = batch[-1].position
        counts = await self._per_subject(conn, batch)
        if not counts:
            return
        if new := [subject_id for subject_id in counts if subject_id not in self.pending]:
            self.pending.update(await _counted(conn, new))
        for subject_id, count in counts.items():
            self.pending[subject_id] += count
            if self.pending[subject_id] >= self.every:
                self.due[subject_id] = batch[-1].position
                self.pending[subject_id] = 0
        insert = insert_into(conn, time_travel_counts)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["subject_id"],
                # A mark is cleared only once its snapshot is stored (``after_commit``), never by a count.
                set_={
                    "events": insert.excluded.events,
                    "due_at": sa.func.coalesce(insert.excluded.due_at, time_travel_counts.c.due_at),
                },
            ),
            [{"subject_id": s, "events": self.pending[s], "due_at": self.due.get(s)} for s in counts],
        )

    async def _per_subject(self, conn: AsyncConnection, batch: Sequence[RecordedEvent]) -> dict[str, int]:
        # How many of the batch's events are about each subject.
        subjects = self.subject_of  # claim stream -> subject
        if len(subjects) >= SUBJECTS_KEPT:
            subjects.clear()
        unknown: set[str] = set()
        for e in batch:
            if isinstance(e.event, ClaimMade):
                subjects[e.stream_id] = e.event.subject_id
            elif isinstance(e.event, ClaimEvent) and e.stream_id not in subjects:
                unknown.add(e.stream_id)
        subjects.update(await queries.subjects_of_claims(conn, {s for s in unknown if s not in subjects}))
        counts: dict[str, int] = {}
        for e in batch:
            if not isinstance(e.event, ClaimEvent):
                continue
            named = [subjects.get(e.stream_id)]
            if isinstance(e.event, RecordCorrected) and e.event.changes.subject_id is not None:
                named.append(e.event.changes.subject_id)
            for subject_id in filter(None, named):
                counts[subject_id] = counts.get(subject_id, 0) + 1
        return counts

    async def after_commit(self) -> None:
        """Take the snapshots that came due: each folded in a read transaction, then stored (and the
        subject's older ones pruned, and its mark as due cleared) in a short transaction of its own, so no
        lock a writer waits for is held while folding (on SQLite the projector's batch holds the file's
        write lock)."""
        from timeline.store import travel  # noqa: PLC0415 (travel reads snapshots through this module)

        c = time_travel_counts.c
        # Each leaves ``due`` once stored: after a failure the rest are taken after the next batch.
        for subject_id, position in sorted(self.due.items()):
            async with self.db.read() as conn:
                snapshot = await travel.take(conn, subject_id, position)
            async with self.db.serial() as conn:
                await keep(conn, subject_id, snapshot)
                await conn.execute(
                    sa.update(time_travel_counts)
                    .where(c.subject_id == subject_id, c.due_at == position)
                    .values(due_at=None)
                )
            if self.due.get(subject_id) == position:
                del self.due[subject_id]


async def _counted(conn: AsyncConnection, subject_ids: Sequence[str]) -> dict[str, int]:
    """Each subject's count as the taker last committed it (none: 0)."""
    c = time_travel_counts.c
    found = dict.fromkeys(subject_ids, 0)
    for chunk in chunked(subject_ids):
        result = await conn.execute(sa.select(c.subject_id, c.events).where(c.subject_id.in_(chunk)))
        found.update({subject_id: int(events) for subject_id, events in result})
    return found


async def _undone(conn: AsyncConnection) -> dict[str, int]:
    """The snapshots that came due in a committed batch and were not stored (the process stopped first)."""
    c = time_travel_counts.c
    result = await conn.execute(sa.select(c.subject_id, c.due_at).where(c.due_at.is_not(None)))
    return {subject_id: int(at) for subject_id, at in result}
