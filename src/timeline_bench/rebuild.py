"""Rebuilding every view from the log."""

from __future__ import annotations

import time

from timeline.store import views
from timeline.store.database import Database
from timeline_bench.baselines import peer_events, peer_insert, peer_recorder, peer_replay
from timeline_bench.measure import Databases, Result, Stats, peak_rss_mb


def _rss_of_rebuild(url: str) -> float:
    """Peak RSS (MB) of `timeline rebuild` as its own process."""
    return peak_rss_mb("timeline", ["--database-url", url, "rebuild"])


async def bench_rebuild(dbs: Databases, dialect: str, url: str, count: int) -> Result:
    """Refolding every view from the log, against the peer reading back (and decoding) the same events."""
    ours, peer = [], []
    recorder = peer_recorder(dialect, url)
    peer_insert(recorder, peer_events(count, "replay"), 1000)
    for _ in range(dbs.config.repeats):
        db = Database(url)
        try:
            start = time.perf_counter()
            replayed = await views.rebuild_online(db)
            ours.append(replayed / (time.perf_counter() - start))
        finally:
            await db.dispose()
        start = time.perf_counter()
        peer.append(peer_replay(recorder) / (time.perf_counter() - start))
    rss = _rss_of_rebuild(url)
    mine, theirs = Stats.of(ours), Stats.of(peer)
    ratio = mine.median / theirs.median
    return Result(
        benchmark=f"rebuild all views from {count:,} events",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={"eventsourcing replay": theirs},
        target=">= 4x eventsourcing replay",
        ratio=ratio,
        met=ratio >= 4,
        note=f"peak RSS of `timeline rebuild` {rss:.0f} MB",
    )
