"""An asynchronous projection: how many claims, statements, denials, withdrawn denials, confirmations and
pieces of evidence each source has on record. It lags the log by a moment and is run by one leader process
(see ``projector``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
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
    for e in events:
        for source_id, counter in activity_counts(e.event):
            row = totals.setdefault(source_id, dict.fromkeys(COUNTERS, 0))
            row[counter] += 1
            row["last_position"] = e.position
    if not totals:
        return
    # One INSERT ... ON CONFLICT statement, sent with every source's counts at once: a read of the rows and
    # a statement per source had been 4% of a server's CPU under 32 concurrent HTTP writers (py-spy,
    # bench/results-2026-12-04-write-plans.txt).
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(source_activity)
    added = {c: source_activity.c[c] + insert.excluded[c] for c in COUNTERS}
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[source_activity.c.source_id],
            set_={**added, "last_position": insert.excluded.last_position},
        ),
        [{"source_id": source_id, **row} for source_id, row in totals.items()],
    )


async def of(conn: AsyncConnection, source_id: str) -> dict[str, int] | None:
    """A source's counts, or None if it has none yet."""
    result = await conn.execute(sa.select(source_activity).where(source_activity.c.source_id == source_id))
    row = result.mappings().one_or_none()
    return {k: int(row[k]) for k in (*COUNTERS, "last_position")} if row else None
