"""Time travel on the generated log's hot subject (subject-0: 1.1% of the claims, over 10,000 events in a log
of 1,000,000): p50 of ``known_at`` cuts and of ``as_of`` dates, read and folded in process, starting from
the snapshots the projector keeps (caught up first, untimed but reported) and, as the baseline, folded
from the log alone."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import time
from pathlib import Path

import msgspec
import sqlalchemy as sa

from timeline import timetravel
from timeline.store import eventlog, projector, snapshots, travel
from timeline.store.database import Database

HOT = "subject-0"


def _server_cpu_ms(pid: int | None) -> float:
    """CPU milliseconds a local PostgreSQL backend has used so far (0 when not local or not PostgreSQL)."""
    stat = Path(f"/proc/{pid}/stat")
    if pid is None or not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _timed_ms(
    db: Database, position: int, valid_until: dt.date | None, *, snapshots: bool
) -> tuple[float, float, float]:
    """Wall and CPU milliseconds of one cut: this process's CPU (on a shared machine, wall time also
    counts waiting for a core) and, on a PostgreSQL server on this machine, its backend's (in ticks of
    10 ms: meaningful summed over the cuts, not one by one)."""
    start, cpu = time.perf_counter(), time.process_time()
    async with db.read() as conn:
        pid = None  # asked inside the timed span (a fraction of a millisecond), as it is the cut's connection
        if db.dialect == "postgresql":
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        server = _server_cpu_ms(pid)
        await travel.subject_views(conn, HOT, position, valid_until, from_snapshots=snapshots)
        server = _server_cpu_ms(pid) - server
    return (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000, server


class Cuts(msgspec.Struct, frozen=True, kw_only=True):
    """Times (ms) of one kind of cut on the hot subject."""

    kind: str
    ms: list[float]
    cpu_ms: list[float]
    # A local PostgreSQL backend's CPU per cut (10 ms ticks; 0 on SQLite).
    server_cpu_ms: list[float]
    log_only: list[float]
    size: int
    head: int
    # Seconds the projector took to snapshot the whole log (every subject), before the cuts.
    catch_up: float


async def time_cuts(url: str, cuts: int = 15, *, log_only: bool = True) -> list[Cuts]:
    """``known_at`` at random positions in the log's second half, and ``as_of`` random 2024 dates at the
    head, on the hot subject (which the generator's dates all fall in)."""
    rng = random.Random(14)
    db = Database(url)
    try:
        start = time.perf_counter()
        await projector.catch_up(db, snapshots.Taker(db), size=5000)
        catch_up = time.perf_counter() - start
        async with db.read() as conn:
            head = await eventlog.head_position(conn)
            whole = await travel.subject_views(conn, HOT, head, None)
        size = sum(r.claim.version for r in whole.claims.values())
        positions = [rng.randint(head // 2, head) for _ in range(cuts)]
        dates = [timetravel.period_end(f"2024-{rng.randint(1, 12):02}") for _ in range(cuts)]
        timed: dict[bool, tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]] = {}
        for kept in (True, False) if log_only else (True,):
            known = [await _timed_ms(db, at, None, snapshots=kept) for at in positions]
            as_of = [await _timed_ms(db, head, date, snapshots=kept) for date in dates]
            timed[kept] = (known, as_of)
    finally:
        await db.dispose()
    return [
        Cuts(
            kind=kind,
            ms=[wall for wall, _, _ in timed[True][i]],
            cpu_ms=[cpu for _, cpu, _ in timed[True][i]],
            server_cpu_ms=[server for _, _, server in timed[True][i]],
            log_only=[wall for wall, _, _ in timed[False][i]] if log_only else [],
            size=size,
            head=head,
            catch_up=catch_up,
        )
        for i, kind in enumerate(("known_at", "as_of"))
    ]


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[round(0.95 * (len(ordered) - 1))]


async def _report(url: str, cuts: int, json_path: str | None, log_only: bool) -> None:
    results = await time_cuts(url, cuts, log_only=log_only)
    if json_path is not None:
        Path(json_path).write_bytes(msgspec.json.format(msgspec.json.encode(results)))  # noqa: ASYNC240
    for timed in results:
        print(
            f"{timed.kind}: p50 {statistics.median(timed.ms):.1f} ms, p95 {_p95(timed.ms):.1f} ms, "
            f"CPU p50 {statistics.median(timed.cpu_ms):.1f} ms (+ server mean "
            f"{statistics.mean(timed.server_cpu_ms):.1f} ms) "
            f"(from the log alone: p50 {statistics.median(timed.log_only or [0]):.1f} ms); subject of "
            f"{timed.size:,} events, log of {timed.head:,}, {len(timed.ms)} cuts, snapshots caught up in "
            f"{timed.catch_up:.0f} s"
        )


def main() -> None:
    """``python -m timeline_bench.travel URL``: the time-travel cuts on a log seeded already (say, of
    1,000,000 events, which takes minutes to build and to snapshot: built once, measured many times)."""
    parser = argparse.ArgumentParser(prog="python -m timeline_bench.travel", description=main.__doc__)
    parser.add_argument("url", help="a timeline database (sqlite+aiosqlite:///... or postgresql://...)")
    parser.add_argument("--cuts", type=int, default=15)
    parser.add_argument("--json", help="also write every cut's times to this file")
    parser.add_argument("--no-log-only", action="store_true", help="skip the cuts folded from the log alone")
    arguments = parser.parse_args()
    asyncio.run(_report(arguments.url, arguments.cuts, arguments.json, not arguments.no_log_only))


if __name__ == "__main__":
    main()
