"""Loading and saving the projection tables, and rebuilding them from the log.

The folding itself is ``timeline.projections.apply``; this module only moves rows in and out, so the live
path (``project``) and ``rebuild`` share every decision.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain.claims import Claim, ClaimEvent, Registration, evolve
from timeline.domain.events import (
    DocumentAmended,
    DomainEvent,
    SourceAmended,
    SubjectAmended,
)
from timeline.projections import (
    ClaimRecord,
    EstimateKey,
    TimelineEntry,
    Views,
    apply,
    estimate_key,
    occurred_on,
    rank_can_drop,
    registration_stream,
)
from timeline.store import projector
from timeline.store.database import Database
from timeline.store.eventlog import RecordedEvent, read_all
from timeline.store.eventlog import head_position as eventlog_head
from timeline.store.schema import checkpoints, claims, estimates, registrations, timeline

CHECKPOINT = "views"
_encoder = msgspec.json.Encoder()
_claim_decoder = msgspec.json.Decoder(ClaimRecord)
_entry_decoder = msgspec.json.Decoder(TimelineEntry)
_registration_decoder: msgspec.json.Decoder[Registration] = msgspec.json.Decoder(Registration)


def claim_from_row(row: sa.RowMapping) -> ClaimRecord:
    """Turn a ``claims`` row back into the folded record."""
    return _claim_decoder.decode(row["state"])


def entry_from_row(row: sa.RowMapping) -> TimelineEntry:
    """Turn a ``timeline`` row back into its entry."""
    return _entry_decoder.decode(row["entry"])


def registration_from_row(row: sa.RowMapping) -> tuple[int, Registration]:
    """Turn a ``registrations`` row back into (position, definition)."""
    return row["position"], _registration_decoder.decode(row["definition"])


async def load_for(
    conn: AsyncConnection,
    new_events: Sequence[DomainEvent],
    *,
    before: Mapping[str, Claim | None] | None = None,
) -> Views:
    """Load every row the given events can change: their claims and those claims' estimate neighbours
    (under every key the claims pass through), and the definitions being amended.

    ``before``, the writer's own fold of each claim the events touch (None: not made yet), lets every claim
    row come in one query; the rows read are checked against it, and a wrong guess costs another query.
    """
    views = Views()
    amended = [
        registration_stream(e)
        for e in new_events
        if isinstance(e, SubjectAmended | SourceAmended | DocumentAmended)
    ]
    for chunk in chunked(set(amended)):
        result = await conn.execute(sa.select(registrations).where(registrations.c.stream_id.in_(chunk)))
        for row in result.mappings():
            views.registrations[row["stream_id"]] = registration_from_row(row)
    claim_events = [e for e in new_events if isinstance(e, ClaimEvent)]
    if not claim_events:
        return views
    ids = {e.claim_id for e in claim_events}
    if before is not None and ids <= before.keys():
        guessed = {cid: state for cid, state in before.items() if cid in ids and state is not None}
        try:
            full, light = _keys_touched(guessed, claim_events)
        except ValueError:  # the guess cannot even be folded (a claim event before its ClaimMade)
            pass
        else:
            await _load_claims(conn, views, ids, full, light)
            if {cid: r.claim for cid, r in views.claims.items() if cid in ids} == guessed:
                return views
            views = Views(registrations=views.registrations)  # the guess was wrong: read them again
    await _load_claims(conn, views, ids, set(), set())
    states = {cid: r.claim for cid, r in views.claims.items()}
    full, light = _keys_touched(states, claim_events)
    await _load_claims(conn, views, set(), full, light)
    return views


def _keys_touched(
    states: dict[str, Claim], claim_events: Sequence[ClaimEvent]
) -> tuple[set[EstimateKey], set[EstimateKey]]:
    """The estimate keys whose claims must all be loaded (full) and those needing only the chosen claim
    (light), given the claims' states before the events."""
    # Fold the batch ahead to learn every (subject, metric, source) it touches, corrections included. An
    # event that can only raise a claim's rank needs just the claim currently chosen for its key; one that
    # can lower it (an earlier date, a retraction) or move it to another key needs every claim under both.
    states = dict(states)
    light: set[EstimateKey | None] = {estimate_key(c) for c in states.values()}
    full: set[EstimateKey | None] = set()
    for event in claim_events:
        earlier = states.get(event.claim_id)
        before = estimate_key(earlier) if earlier is not None else None
        states[event.claim_id] = now = evolve(earlier, event)
        after = estimate_key(now)
        can_drop = rank_can_drop(earlier, now) or before not in (None, after)
        (full if can_drop else light).update({before, after})
    full.discard(None)
    light -= full
    light.discard(None)
    return {k for k in full if k is not None}, {k for k in light if k is not None}


_BY_ID, _BY_KEY, _CHOSEN = 0, 1, 2
# Ids or keys a statement: both drivers refuse a statement of more than 32,767 parameters (a key takes three),
# which one import of a big fixture reaches.
_CHUNK = 1000


_Item = TypeVar("_Item", str, int, EstimateKey)


def chunked(items: Iterable[_Item]) -> list[list[_Item]]:
    """The distinct items, sorted, a thousand to a list: what one statement can take as parameters."""
    ordered = sorted(set(items))
    return [ordered[start : start + _CHUNK] for start in range(0, len(ordered), _CHUNK)]


async def _load_claims(
    conn: AsyncConnection, views: Views, ids: set[str], full: set[EstimateKey], light: set[EstimateKey]
) -> None:
    """Read the claims by id, every claim under the ``full`` keys and the chosen claim under the ``light``
    keys (recording which one is chosen): in one query, or one per thousand ids or keys."""
    # No estimate row under a key means no live figure under it: a new one simply wins.
    views.estimates.update(dict.fromkeys(light))
    id_chunks, full_chunks, light_chunks = chunked(ids), chunked(full), chunked(light)
    for i in range(max(len(id_chunks), len(full_chunks), len(light_chunks))):
        await _load_claims_once(
            conn,
            views,
            id_chunks[i] if i < len(id_chunks) else [],
            full_chunks[i] if i < len(full_chunks) else [],
            light_chunks[i] if i < len(light_chunks) else [],
        )


async def _load_claims_once(
    conn: AsyncConnection,
    views: Views,
    ids: list[str],
    full: list[EstimateKey],
    light: list[EstimateKey],
) -> None:
    key_columns = sa.tuple_(claims.c.subject_id, claims.c.metric, claims.c.source_id)
    parts: list[sa.Select[tuple[object, ...]]] = []
    if ids:
        parts.append(
            sa.select(claims, sa.literal_column(str(_BY_ID)).label("part")).where(claims.c.claim_id.in_(ids))
        )
    if full:
        parts.append(
            sa.select(claims, sa.literal_column(str(_BY_KEY)).label("part")).where(key_columns.in_(full))
        )
    if light:
        chosen = sa.tuple_(estimates.c.subject_id, estimates.c.metric, estimates.c.source_id)
        parts.append(
            sa.select(claims, sa.literal_column(str(_CHOSEN)).label("part"))
            .join(estimates, estimates.c.claim_id == claims.c.claim_id)
            .where(chosen.in_(light))
        )
    if not parts:
        return
    query = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    for row in (await conn.execute(query)).mappings():
        record = views.claims.setdefault(row["claim_id"], claim_from_row(row))
        if row["part"] == _CHOSEN and (key := estimate_key(record.claim)) is not None:
            views.estimates[key] = record.claim.claim_id


async def save(conn: AsyncConnection, views: Views) -> None:
    """Write back the rows ``apply`` changed, and the position the views now reflect."""
    if views.changed_claims:
        await _upsert(
            conn,
            claims,
            [
                {
                    "claim_id": r.claim.claim_id,
                    "subject_id": r.claim.subject_id,
                    "source_id": r.claim.source_id,
                    "metric": r.claim.metric,
                    "status": r.claim.status,
                    "version": r.claim.version,
                    "made_position": r.made_position,
                    "updated_position": r.updated_position,
                    "state": _encoder.encode(r).decode(),
                }
                for r in (views.claims[c] for c in sorted(views.changed_claims))
            ],
        )
    if views.changed_estimates:
        keys = sorted(views.changed_estimates)
        for gone in chunked(k for k in keys if views.estimates[k] is None):
            await conn.execute(
                sa.delete(estimates).where(
                    sa.tuple_(estimates.c.subject_id, estimates.c.metric, estimates.c.source_id).in_(gone)
                )
            )
        await _upsert(
            conn,
            estimates,
            [
                {"subject_id": s, "metric": m, "source_id": src, "claim_id": chosen}
                for (s, m, src) in keys
                if (chosen := views.estimates[(s, m, src)]) is not None
            ],
        )
    if views.changed_registrations:
        streams = sorted(views.changed_registrations)
        await _upsert(
            conn,
            registrations,
            [
                {
                    "stream_id": stream,
                    "kind": stream.split("-", 1)[0],
                    "position": views.registrations[stream][0],
                    "definition": _encoder.encode(views.registrations[stream][1]).decode(),
                }
                for stream in streams
            ],
        )
    await _save_timeline(conn, views)
    await projector.save_checkpoint(conn, CHECKPOINT, views.position)


async def _upsert(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, object]]) -> None:
    """Insert rows, replacing those with the same primary key: one statement per chunk on both databases."""
    if not rows:
        return
    statement = _upsert_statement(conn.dialect.name, table)
    for start in range(0, len(rows), 500):
        await conn.execute(statement, rows[start : start + 500])


@functools.cache
def _upsert_statement(dialect: str, table: sa.Table) -> sa.Insert:
    # Built once: making ``excluded`` costs more than the database's work for a row or two.
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    keys = [c.name for c in table.primary_key.columns]
    statement = dialect_insert(table)
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys},
    )


async def _save_timeline(conn: AsyncConnection, views: Views) -> None:
    if not views.timeline:
        return
    for gone in chunked(p for p, e in views.timeline.items() if e is None):
        await conn.execute(sa.delete(timeline).where(timeline.c.position.in_(gone)))
    rows: list[dict[str, object]] = [
        {
            "position": e.position,
            "subject_id": e.subject_id,
            "occurred_on": occurred_on(e),
            "source_id": e.source_id,
            "kind": e.kind,
            "entry": _encoder.encode(e).decode(),
        }
        for e in views.timeline.values()
        if e is not None
    ]
    await _upsert(conn, timeline, rows)


async def project(
    conn: AsyncConnection,
    recorded: Sequence[RecordedEvent],
    *,
    before: Mapping[str, Claim | None] | None = None,
) -> None:
    """Bring the views up to date with events just appended in this transaction (``before``: see
    ``load_for``)."""
    if not recorded:
        return
    views = await load_for(conn, [r.event for r in recorded], before=before)
    for r in recorded:
        apply(views, r.position, r.event)
    await save(conn, views)


async def checkpoint(conn: AsyncConnection) -> int:
    """The log position the views reflect."""
    return await projector.checkpoint(conn, CHECKPOINT)


async def freshness(conn: AsyncConnection) -> tuple[int, dt.datetime | None]:
    """The position the views reflect and when they last changed (for ETag and Last-Modified)."""
    result = await conn.execute(
        sa.select(checkpoints.c.position, checkpoints.c.updated_at).where(checkpoints.c.name == CHECKPOINT)
    )
    row = result.first()
    if row is None:
        return 0, None
    updated = row[1]
    return int(row[0]), updated.replace(tzinfo=dt.UTC) if updated and updated.tzinfo is None else updated


TABLES = (claims, estimates, registrations, timeline)


async def catch_up(db: Database) -> int:
    """Apply whatever the log holds beyond the views' checkpoint (after a crash or a migration)."""
    async with db.write() as conn:
        after = await checkpoint(conn)
        if after == 0:
            return await rebuild(conn)
        applied = 0
        while behind := await read_all(conn, after=after, limit=1000):
            await project(conn, behind)
            applied += len(behind)
            after = behind[-1].position
        return applied


async def rebuild_online(
    db: Database, progress: Callable[[int, int], Awaitable[None] | None] | None = None, *, batch: int = 2_000
) -> int:
    """Refold the views while the old ones keep serving, in memory bounded by one batch: fold a snapshot of
    the log into temporary copies of the view tables without blocking writers, then briefly take the write
    lock to fold what arrived meanwhile and copy the new rows over the old."""
    # A batch loads every claim under each estimate key its revisions touch, a set that grows with the log:
    # 10,000 events a batch peaked at ~1 GB at 1,000,000 events; 2,000 costs ~7% more time.
    done = 0
    async with db.session() as session:
        async with session.snapshot() as conn:
            await _create_shadows(conn)
            head = await eventlog_head(conn)
            after = 0
            while chunk := await read_all(conn, after=after, limit=batch):
                await project(conn, chunk)  # into the shadows, which hide the live tables on this connection
                after = chunk[-1].position
                done += len(chunk)
                if progress is not None and (waiting := progress(done, head)) is not None:
                    await waiting
        async with session.write() as conn:
            while chunk := await read_all(conn, after=after, limit=batch):
                await project(conn, chunk)
                after = chunk[-1].position
                done += len(chunk)
            position = await checkpoint(conn)
            await _swap_in_shadows(conn)
            await projector.save_checkpoint(conn, CHECKPOINT, position)
    return done


# A temporary table is private to its connection and, on both databases, found before a shared table of the
# same name; so on the rebuild's connection the same queries that maintain the views fill the shadows.
_SHADOWED = (claims, estimates, registrations, timeline, checkpoints)


async def _create_shadows(conn: AsyncConnection) -> None:
    if conn.dialect.name == "sqlite":
        # On disk, not in memory: the shadows grow to the size of the views; the connection dies after.
        await conn.execute(sa.text("PRAGMA temp_store = FILE"))
    for table in _SHADOWED:
        create = str(sa.schema.CreateTable(table).compile(dialect=conn.dialect))
        await conn.execute(sa.text(create.replace("CREATE TABLE", "CREATE TEMPORARY TABLE", 1)))
        for index in table.indexes:
            columns = ", ".join(c.name for c in index.columns)
            await conn.execute(sa.text(f"CREATE INDEX shadow_{index.name} ON {table.name} ({columns})"))


async def _swap_in_shadows(conn: AsyncConnection) -> None:
    """Put the shadows' rows in place of the live views' and drop the shadows (not the checkpoint)."""
    live = (
        "main"
        if conn.dialect.name == "sqlite"
        else str((await conn.execute(sa.text("SELECT current_schema()"))).scalar_one())
    )
    shadow = "temp" if conn.dialect.name == "sqlite" else "pg_temp"
    for table in TABLES:
        columns = ", ".join(c.name for c in table.columns)
        await conn.execute(sa.text(f"DELETE FROM {live}.{table.name}"))
        await conn.execute(
            sa.text(
                f"INSERT INTO {live}.{table.name} ({columns}) SELECT {columns} FROM {shadow}.{table.name}"
            )
        )
    for table in _SHADOWED:
        await conn.execute(sa.text(f"DROP TABLE {shadow}.{table.name}"))


async def rebuild(conn: AsyncConnection, *, batch: int = 1000) -> int:
    """Drop every view row and fold the whole log again, in the caller's transaction; returns the number
    of events replayed."""
    for table in TABLES:
        await conn.execute(sa.delete(table))
    views = Views()
    after = replayed = 0
    while chunk := await read_all(conn, after=after, limit=batch):
        for r in chunk:
            apply(views, r.position, r.event)
        after = chunk[-1].position
        replayed += len(chunk)
        # Flush timeline rows as we go so memory holds only claims; a later correction rewrites its rows.
        await _save_timeline(conn, views)
        views.timeline.clear()
    await save(conn, views)
    return replayed
