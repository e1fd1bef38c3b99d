"""Reading what time travel folds, from the log alone: a subject's or a claim's events up to a cut, and
the registrations of the sources they name. No view table is consulted, so none can change an answer.

A subject's fold starts from its latest snapshot at or before the cut (``store.snapshots``, decoded once
a process by ``store.decoded``), once the log has confirmed it: only the events after it are read, through
the (stream, version) key (only on streams whose version differs in the next snapshot, which its small
versions part says; and only once a process: ``decoded.after`` keeps them with the snapshot), and folded
on top by the same code, onto a copy of the views the snapshot's claims show (``resumed.base``, made once
per snapshot).
Snapshots are cut by log position, so they serve ``known_at`` directly. Valid time can precede recorded
time (a source's statement about 2020 may be recorded last), so a snapshot holds events of every date, and
keeps each claim also as it stood at every earlier valid time
(``timetravel.earlier_states``): ``as_of`` takes each claim from it as of its date (``timetravel.as_of``).
A claim corrected after the snapshot (at a valid time, also one with a denial withdrawn after it) is
refolded from its whole stream in the log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import timetravel
from timeline.domain.events import DenialWithdrawn, RecordCorrected
from timeline.domain.streams import claim_stream, source_stream, sources_named, subject_stream
from timeline.projections import Views, current
from timeline.resumed import Folded
from timeline.store import decoded, queries, snaprows, snapshots


async def stream_views(
    conn: AsyncConnection, stream_id: str, position: int, valid_until: dt.date | None
) -> Views:
    """The views one stream's events up to ``position`` fold into, as of ``valid_until``."""
    logged = await queries.logged_until(conn, [stream_id], position=position, valid_until=valid_until)
    with decoded.no_collection():
        return timetravel.views_at(logged, valid_until)


async def subject_views(
    conn: AsyncConnection,
    subject_id: str,
    position: int,
    valid_until: dt.date | None,
    *,
    from_snapshots: bool = True,
) -> Views:
    """The views of a subject at a cut: its claims (all that were ever about it), their events up to
    ``position`` as of ``valid_until``, and the registrations of the sources they name (for names).
    Claims hold their state at the cut, not their history (which a snapshot does not keep). With
    ``from_snapshots`` false, everything is folded from the log (what tests compare the snapshots with)."""
    snapshot = await decoded.latest(conn, subject_id, position) if from_snapshots else None
    earlier = None
    # What the snapshot's claims showed at earlier valid times (for an ``as_of`` cut); failing its hash,
    # the cut folds from the log alone.
    if snapshot is not None and valid_until is not None:
        earlier = await decoded.earlier(conn, subject_id, snapshot)
        snapshot = snapshot if earlier is not None else None
    views = await _fold(conn, subject_id, position, valid_until, snapshot, earlier or {})
    # Only claims folded from their stream carry a history (those from a snapshot have none).
    history = [(c, record) for c, record in views.claims.items() if record.positions or record.claim.recorded]
    views.claims.update((claim_id, current(record)) for claim_id, record in history)
    return views


async def take(conn: AsyncConnection, subject_id: str, position: int) -> snapshots.Snapshot:
    """A snapshot of the subject at ``position``, folded from the log alone: from the subject's latest
    snapshot before it that the log confirms, only the claims with events since are folded again."""
    previous = await snaprows.encoded(conn, subject_id, position)
    if previous is None or previous.carried is None:
        return await _take_whole(conn, subject_id, position)
    return await _take_since(
        conn, subject_id, position, previous.position, previous.sources, previous.carried
    )


async def _take_whole(conn: AsyncConnection, subject_id: str, position: int) -> snapshots.Snapshot:
    """A snapshot of the subject at ``position`` with every claim folded from the log."""
    return await _take_since(conn, subject_id, position, 0, [], _NOTHING_CARRIED)


_NOTHING_CARRIED = snapshots.Carried(claims={}, earlier={}, versions={})


async def _take_since(
    conn: AsyncConnection,
    subject_id: str,
    position: int,
    since: int,
    sources: Sequence[str],
    before: snapshots.Carried,
) -> snapshots.Snapshot:
    """A snapshot of the subject at ``position`` from what a snapshot at ``since`` holds (``sources``, and
    its claims as stored: ``before``; none at 0)."""
    # Each claim is folded from its own stream alone (``timetravel.views_at``), so a claim with no event
    # since is carried over as the previous snapshot stored it; those with events since, and those made
    # (or moved here) since, are folded again from their whole stream. On the bench's log of 1,000,000
    # events a snapshot of a subject of 2,218 claims had folded all 4,953 of its events each time, and the
    # projection process spent most of its time doing so (bench/results-2026-12-05-snapshot-takes.txt).
    streams = {claim_stream(claim_id): version for claim_id, version in before.versions.items()}
    moved_on = {e.stream_id for e in await queries.logged_after(conn, streams, position=position)}
    unchanged = set(streams) - moved_on
    claimed, named = await _claimed(conn, subject_id, position, None, unchanged, since, moved_on)
    with decoded.no_collection():
        views = timetravel.views_at(claimed, None)
        refolded = timetravel.folded_claims(claimed, views)
        earlier = timetravel.earlier_states(claimed, refolded)
    kept = [claim_id for claim_id in before.claims if claim_id not in refolded]
    carried = snapshots.Carried(
        claims={c: before.claims[c] for c in kept},
        earlier={c: before.earlier[c] for c in kept if c in before.earlier},
        versions={c: before.versions[c] for c in kept},
    )
    return snapshots.Snapshot(
        position=position,
        claims=refolded,
        sources=sorted({*sources, *named}),
        earlier=earlier,
        carried=carried,
    )


async def _fold(
    conn: AsyncConnection,
    subject_id: str,
    position: int,
    valid_until: dt.date | None,
    snapshot: snapshots.Snapshot | None,
    earlier: Mapping[str, Sequence[timetravel.Earlier]],
) -> Views:
    kept: Mapping[str, Folded | None] = {}
    after: list[timetravel.Logged] = []
    named: set[str] = set()
    skip: set[str] = set()  # the snapshot's streams that are not refolded (only their tail is read)
    left: set[str] = set()  # its streams that are
    if snapshot is not None:
        kept = snapshot.claims
        if valid_until is not None:
            kept = {c: timetravel.as_of(f, earlier.get(c, ()), valid_until) for c, f in kept.items()}
        after = await decoded.after(conn, subject_id, snapshot, position)
        # A correction can change any earlier event of its claim, and a withdrawal shows only with its
        # denial: such claims are refolded from their whole stream.
        refold = (RecordCorrected, DenialWithdrawn) if valid_until is not None else (RecordCorrected,)
        if refolded := {e.event.claim_id for e in after if isinstance(e.event, refold)}:
            left = {claim_stream(claim_id) for claim_id in refolded}
            kept = {c: folded for c, folded in kept.items() if c not in refolded}
            after = [e for e in after if e.stream_id not in left]
        skip = set(snapshot.versions) - left
        named = {*snapshot.sources, *(source_stream(s) for e in after for s in sources_named(e.event))}
    # The log is asked only for claims made after the snapshot; those it holds and left to refold are known.
    since = snapshot.position if snapshot is not None else 0
    claimed, more = await _claimed(conn, subject_id, position, valid_until, skip, since, left)
    registered = await queries.logged_until(conn, named | more, position=position)
    with decoded.no_collection():
        logged = sorted([*after, *claimed, *registered], key=lambda e: e.position)
        base = None if snapshot is None else decoded.base(snapshot)
        return timetravel.views_at(logged, valid_until, kept, base)


async def _claimed(
    conn: AsyncConnection,
    subject_id: str,
    position: int,
    valid_until: dt.date | None,
    skip: set[str],
    since: int = 0,
    known: set[str] | None = None,
) -> tuple[list[timetravel.Logged], set[str]]:
    """The events of every claim that was about the subject up to ``position`` (but the ``skip`` streams)
    and the streams of the sources they name."""
    found = {*await queries.claim_streams_of_subject(conn, subject_id, position, since), *(known or ())}
    streams = sorted(s for s in found if s not in skip)
    # The subject's own stream holds its statements (no snapshot keeps them: it is always read).
    streams.append(subject_stream(subject_id))
    claimed = await queries.logged_until(conn, streams, position=position, valid_until=valid_until)
    return claimed, {source_stream(source) for e in claimed for source in sources_named(e.event)}
