"""Time travel on the generated log's hot subject (subject-0: 1.1% of the claims, over 10,000 events in a log
of 1,000,000): p50 of ``known_at`` cuts and of ``as_of`` dates, read and folded in process."""

from __future__ import annotations

import datetime as dt
import random
import time

import msgspec

from timeline import timetravel
from timeline.store import eventlog, travel
from timeline.store.database import Database

HOT = "subject-0"


async def _timed_ms(db: Database, position: int, valid_until: dt.date | None) -> float:
    start = time.perf_counter()
    async with db.read() as conn:
        await travel.subject_views(conn, HOT, position, valid_until)
    return (time.perf_counter() - start) * 1000


class Cuts(msgspec.Struct, frozen=True, kw_only=True):
    """Times (ms) of one kind of cut on the hot subject."""

    kind: str
    ms: list[float]
    size: int
    head: int


async def time_cuts(url: str, cuts: int = 15) -> list[Cuts]:
    """``known_at`` at random positions in the log's second half, and ``as_of`` random 2024 dates at the
    head, on the hot subject (which the generator's dates all fall in)."""
    rng = random.Random(14)
    db = Database(url)
    try:
        async with db.read() as conn:
            head = await eventlog.head_position(conn)
            whole = await travel.subject_views(conn, HOT, head, None)
        size = sum(r.claim.version for r in whole.claims.values())
        known = [await _timed_ms(db, rng.randint(head // 2, head), None) for _ in range(cuts)]
        dates = [timetravel.period_end(f"2024-{rng.randint(1, 12):02}") for _ in range(cuts)]
        as_of = [await _timed_ms(db, head, date) for date in dates]
    finally:
        await db.dispose()
    return [
        Cuts(kind="known_at", ms=known, size=size, head=head),
        Cuts(kind="as_of", ms=as_of, size=size, head=head),
    ]
