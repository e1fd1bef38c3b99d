"""Exporting the log and restoring an export."""

from __future__ import annotations

import time

from timeline.store import backup
from timeline.store.database import Database
from timeline_bench.measure import Databases, Result, Stats


async def bench_archive(dbs: Databases, dialect: str, url: str) -> list[Result]:
    """Export the log (streamed) and restore it into an empty database."""
    exports, restores = [], []
    for _ in range(dbs.config.repeats):
        db = Database(url)
        try:
            start = time.perf_counter()
            lines: list[bytes] = []
            async with db.read() as conn:
                async for line in backup.export(conn):
                    lines.append(line)
            exports.append(len(lines) / (time.perf_counter() - start))
        finally:
            await db.dispose()
        target = Database(await dbs.fresh(dialect))
        try:
            start = time.perf_counter()
            async with target.write() as conn:
                count = await backup.restore(conn, lines)
            restores.append(count / (time.perf_counter() - start))
        finally:
            await target.dispose()
    exported = Stats.of(exports)
    return [
        Result(
            benchmark="export the log",
            database=dialect,
            unit="events/s",
            timeline=exported,
            baselines={},
            target=">= 100,000 events/s",
            ratio=exported.median / 100_000,
            met=exported.median >= 100_000,
        ),
        Result(
            benchmark="restore an export (chain checked)",
            database=dialect,
            unit="events/s",
            timeline=Stats.of(restores),
            baselines={},
            target="-",
            ratio=None,
            met=None,
        ),
    ]
