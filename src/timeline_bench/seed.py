"""The benchmark logs: a generated log appended straight to the store, and the claim appends write."""

from __future__ import annotations

import datetime as dt
import itertools

import sqlalchemy as sa

from timeline.app import maintenance
from timeline.domain.events import ClaimMade, Quantity, StatedDate
from timeline.domain.streams import stream_of
from timeline.domain.values import valid_from
from timeline.store import eventlog
from timeline.store.database import Database
from timeline.store.eventlog import Metadata, NewEvent
from timeline_bench.generator import generate

SEED_CHUNK = 50_000  # events a seed transaction appends


def claim_made(i: int, tag: str) -> ClaimMade:
    """The ``i``-th claim the append benchmarks write (on subject-0, by source-0)."""
    return ClaimMade(
        claim_id=f"{tag}-{i}",
        subject_id="subject-0",
        source_id="source-0",
        statement="Some figure was given.",
        modality="asserted",
        stated_on=StatedDate(date="2024-10-21", precision="day"),
        document_ids=("bench-doc",),
        metric="soldiers",
        quantity=Quantity(comparator="about", value=i, unit="soldiers"),
    )


async def seed_log(url: str, count: int) -> int:
    """Fill a timeline database with ``count`` generated events (untimed setup): the log is appended
    straight through ``eventlog.Batch`` (positions, hash chain), then rebuilt from as ``timeline rebuild``
    does it (the views, then the asynchronous projections caught up: a server started over it is in the
    state a live server's log would be, not taking every snapshot of the log while it is measured). The
    rules are not asked, which is what makes 1,000,000 events take minutes rather than half an hour; the
    generator's events pass them (tests check this path against the write path)."""
    db = Database(url)
    try:
        versions: dict[str, int] = {}
        metadata = Metadata(recorded_by="bench", origin="seed")
        events = generate(count)
        appended = 0
        while True:
            async with db.write() as conn:
                batch = await eventlog.Batch.start(conn, dt.datetime.now(dt.UTC))
                for event in itertools.islice(events, SEED_CHUNK):
                    stream_id = stream_of(event)
                    versions[stream_id] = version = versions.get(stream_id, 0) + 1
                    batch.add(
                        stream_id,
                        version,
                        NewEvent(event=event, valid_from=valid_from(event), metadata=metadata),
                    )
                added = len(batch.rows)
                await batch.flush(conn)
            appended += added
            if added < SEED_CHUNK:
                break
        await maintenance.rebuild_all(db)
        if db.dialect == "postgresql":
            # Statistics and the visibility map, as autovacuum would have by now on a live server (it may be
            # off here); without the map, PostgreSQL cannot answer from an index alone.
            async with db.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(sa.text("VACUUM ANALYZE"))
        return appended
    finally:
        await db.dispose()
