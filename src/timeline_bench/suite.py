"""The benchmarks: timeline beside the raw database and the `eventsourcing` library, in one run.

Each group lives in its own module; this one runs the groups asked for on every database.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from timeline_bench.appends import bench_appends, bench_concurrent, bench_signing
from timeline_bench.archive import bench_archive
from timeline_bench.http import bench_http
from timeline_bench.imports import bench_import
from timeline_bench.measure import Config, Databases, Result, Stats
from timeline_bench.rebuild import bench_rebuild
from timeline_bench.seed import seed_log
from timeline_bench.travel import Cuts, time_cuts
from timeline_bench.wrk import write_token


def _travel_result(dialect: str, cuts: Cuts) -> Result:
    """One kind of time-travel cut as a row of the table."""
    p50 = statistics.median(cuts.ms)
    return Result(
        benchmark=f"time travel, {cuts.kind} on a subject of {cuts.size:,} events",
        database=dialect,
        unit="ms",
        timeline=Stats.of(cuts.ms),
        baselines={"folded from the log alone": Stats.of(cuts.log_only)},
        target="p50 < 50 ms",
        ratio=None,
        met=p50 < 50,
        note=f"log of {cuts.head:,} events, {len(cuts.ms)} cuts, in process (CPU p50 "
        f"{statistics.median(cuts.cpu_ms):.0f} ms), from snapshots "
        f"(the projector kept them for every subject in {cuts.catch_up:.0f} s first)",
    )


# "live" is run by timeline_bench.live, in a run of its own.
GROUPS = ("appends", "import", "rebuild", "timetravel", "archive", "http", "live")


async def run(
    config: Config, dialects: list[str], log: Callable[[str], None], only: tuple[str, ...] = GROUPS
) -> list[Result]:
    """Every benchmark (of the ``only`` groups) on every database."""
    dbs = Databases(config)
    results: list[Result] = []
    try:
        for dialect in dialects:
            if "appends" in only:
                log(f"{dialect}: appends")
                results.append(await bench_appends(dbs, dialect, 1, config.singles))
                results.append(await bench_appends(dbs, dialect, 100, config.batches * 100))
                log(f"{dialect}: signing checkpoints")
                results.append(await bench_signing(dbs, dialect))
                if dialect == "postgresql":
                    log(f"{dialect}: concurrent appends")
                    results.append(await bench_concurrent(dbs))
            if "import" in only:
                log(f"{dialect}: import")
                results.append(await bench_import(dbs, dialect))
            if not {"rebuild", "timetravel", "archive", "http"} & set(only):
                continue
            log(f"{dialect}: building a log of {config.events:,} events")
            url = await dbs.fresh(dialect)
            count = await seed_log(url, config.events)
            if "rebuild" in only:
                log(f"{dialect}: rebuild")
                results.append(await bench_rebuild(dbs, dialect, url, count))
            if "timetravel" in only:
                log(f"{dialect}: time travel")
                results.extend(_travel_result(dialect, cuts) for cuts in await time_cuts(url))
            if "archive" in only:
                log(f"{dialect}: export and restore")
                results.extend(await bench_archive(dbs, dialect, url))
            if "http" in only:
                log(f"{dialect}: HTTP")
                results.extend(await bench_http(dbs, dialect, url, await write_token(url)))
    finally:
        await dbs.drop_all()
    return results
