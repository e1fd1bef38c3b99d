"""An asynchronous projection: how many claims, statements, denials, withdrawn denials, confirmations and
pieces of evidence each source has on record. It lags the log by a moment and is run by one leader process
(see ``projector``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.activity import activity_counts
from timeline.store.eventlog import RecordedEvent
from timeline.store.schema import source_activity

name: str = "source_activity"
tables: tuple[sa.Table, ...] = (source_activity,)
COUNTERS = ("claims_made", "statements", "denials", "denials_withdrawn", "confirmations", "evidence")


async def apply(conn: AsyncConnection, events: Sequence[RecordedEvent]) -> None:
    """Add a batch's counts to each source's row."""
    totals: dict[str, dict[str, int]] = {}
    last: dict[str, int] = {}
    for e in events:
        for source_id, counter in activity_counts(e.event):
            row = totals.setdefault(source_id, dict.fromkeys(COUNTERS, 0))
            row[counter] += 1
            last[source_id] = e.position
    if not totals:
        return
    result = await conn.execute(sa.select(source_activity).where(source_activity.c.source_id.in_(totals)))
    existing = {row["source_id"]: row for row in result.mappings()}
    for source_id, counts in totals.items():
        before = existing.get(source_id)
        values = {c: (before[c] if before else 0) + counts[c] for c in COUNTERS}
        values["last_position"] = last[source_id]
        if before is None:
            await conn.execute(sa.insert(source_activity).values(source_id=source_id, **values))
        else:
            await conn.execute(
                sa.update(source_activity).where(source_activity.c.source_id == source_id).values(**values)
            )


async def of(conn: AsyncConnection, source_id: str) -> dict[str, int] | None:
    """A source's counts, or None if it has none yet."""
    result = await conn.execute(sa.select(source_activity).where(source_activity.c.source_id == source_id))
    row = result.mappings().one_or_none()
    return {k: int(row[k]) for k in (*COUNTERS, "last_position")} if row else None
