"""Rebuilding every view from the log, against the peer's projection runner keeping a latest-estimate view
of the same events and against raw reading and decoding of the log."""

from __future__ import annotations

import asyncio
import time

from timeline import heap
from timeline.store import refold
from timeline.store.database import Database
from timeline_bench import peer
from timeline_bench.baselines import read_and_decode
from timeline_bench.measure import Databases, Result, Stats, peak_rss_mb

# The peer processes one event per transaction, a few thousand a second at best: it is given a prefix of
# the log this long, and a time budget per run (its rate is over what it processed; the view is smallest at
# the start, which favours it).
PEER_EVENTS = 50_000
PEER_SECONDS = 10.0


def _rss_of_rebuild(url: str) -> float:
    """Peak RSS (MB) of `timeline rebuild` as its own process."""
    return peak_rss_mb("timeline", ["--database-url", url, "rebuild"])


async def bench_rebuild(dbs: Databases, dialect: str, url: str, count: int) -> Result:
    """`rebuild_online` refolding all four views, in events/s; the peer's projection and raw read+decode of
    the same log as baselines; and, at 1,000,000 events, the whole rebuild's time and memory."""
    ours, seconds, raw, theirs = [], [], [], []
    last = await asyncio.to_thread(peer.load, dialect, url, min(count, PEER_EVENTS))
    for _ in range(dbs.config.repeats):
        db = Database(url)
        try:
            start = time.perf_counter()
            with heap.frozen():  # as `timeline rebuild` runs it
                replayed = await refold.rebuild_online(db)
            seconds.append(time.perf_counter() - start)
            ours.append(replayed / seconds[-1])
        finally:
            await db.dispose()
        events, reading = await read_and_decode(dialect, url)
        raw.append(events / reading)
        theirs.append(await asyncio.to_thread(peer.project, dialect, url, last, PEER_SECONDS))
    rss = _rss_of_rebuild(url)
    mine, projection, floor = Stats.of(ours), Stats.of(theirs), Stats.of(raw)
    ratio, raw_ratio = mine.median / projection.median, mine.median / floor.median
    took = max(seconds)
    met = ratio >= 1.5 and raw_ratio >= 0.5 and rss < 250
    target = ">= 1.5x eventsourcing projection, >= 0.5x raw read+decode, peak RSS < 250 MB"
    if count >= 1_000_000:
        target += ", < 60 s"
        met = met and took < 60
    return Result(
        benchmark=f"rebuild all views from {count:,} events",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={"eventsourcing projection": projection, "raw read+decode": floor},
        target=target,
        ratio=ratio,
        met=met,
        note=f"{raw_ratio:.2f}x raw read+decode; slowest rebuild {took:.1f} s; peak RSS of `timeline "
        f"rebuild` {rss:.0f} MB; the views were current, so each swap wrote no row; the peer keeps only "
        f"the estimates (claims' ranks, the chosen claim) and its "
        f"tracking, one transaction per event, over at most the first {min(count, PEER_EVENTS):,} events or "
        f"{PEER_SECONDS:.0f} s",
    )
