"""HTTP reads (cached and not), time travel over HTTP and concurrent writes, under wrk."""

from __future__ import annotations

import asyncio
import os

import httpx
import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from timeline.store import schema
from timeline.store.database import Database
from timeline_bench.measure import (
    Databases,
    Result,
    Stats,
    children_cpu_seconds,
    cpu_seconds,
    offspring_cpu_seconds,
    postgres_cpu_seconds,
)
from timeline_bench.wrk import Load, Server, distinct, revisions, run_wrk, signed_key


async def _subject_events(url: str, subject_id: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.timeline)
                .where(schema.timeline.c.subject_id == subject_id)
            )
            return int(result.scalar_one())
    finally:
        await db.dispose()


READ_ROUTES = {
    "timeline page of 50": "/subjects/subject-0/timeline?limit=50",
    "estimates view": "/subjects/subject-0/estimates",
    "claim history": "/claims/c1/history",
}


# The HTTP write target, events/s.
WRITES_TARGET = 2000


class Cost(msgspec.Struct, frozen=True):
    """The CPU time a request cost each process on this machine, in ms (PostgreSQL's None when it runs
    elsewhere)."""

    server: float
    postgres: float | None
    wrk: float
    # The server's projection process (`timeline project`, started by `serve` on PostgreSQL).
    projections: float = 0.0


async def _costed(
    server: Server, path: str, connections: int, seconds: float, script: str | None = None
) -> tuple[Load, Cost]:
    """A wrk run and what each request of it cost the server, PostgreSQL (when it runs on this machine)
    and wrk in CPU time."""
    local = make_url(server.url).host in ("127.0.0.1", "localhost", "::1", None)
    pid = server.proc.pid

    def used() -> tuple[float, float | None, float, float]:
        # The server is the process serve runs in and, with --workers N, the API processes it started.
        api = cpu_seconds(pid) + offspring_cpu_seconds(pid, projections=False)
        return api, _postgres(local), children_cpu_seconds(), offspring_cpu_seconds(pid)

    before = used()
    load = await asyncio.to_thread(run_wrk, server.base, path, connections, seconds, script)
    after = used()
    # wrk's rate is of the requests completed over its run, which lasts whole seconds.
    done = max(1.0, load.rate * max(1, round(seconds)))
    pg = None if before[1] is None or after[1] is None else 1000 * (after[1] - before[1]) / done
    server_ms, wrk_ms = 1000 * (after[0] - before[0]) / done, 1000 * (after[2] - before[2]) / done
    return load, Cost(server_ms, pg, wrk_ms, 1000 * (after[3] - before[3]) / done)


def _postgres(local: bool) -> float | None:
    # PostgreSQL on another machine is not this one's to count.
    return postgres_cpu_seconds() if local else None


def _budget(cost: Cost, floor: Cost, target: float, workers: int = 1) -> str:
    """What a write cost the machine's processes beside what the machine has for one at ``target``/s, and
    the cost of a request that does nothing (the constant route's)."""
    cores = os.cpu_count() or 1
    postgres = f"PostgreSQL {cost.postgres:.2f} ms, " if cost.postgres is not None else ""
    projections = f"projection process {cost.projections:.2f} ms, " if cost.projections else ""
    total = cost.server + cost.projections + (cost.postgres or 0.0) + cost.wrk
    return (
        f"CPU a write: server {cost.server:.2f} ms"
        + (f" ({workers} API processes)" if workers > 1 else "")
        + f", {projections}{postgres}wrk {cost.wrk:.2f} ms, "
        f"{total:.2f} ms in all; "
        f"{target:,.0f} writes/s on {cores} cores leave {1000 * cores / target:.2f} ms a write; "
        f"a constant-route request costs server {floor.server:.2f} + wrk {floor.wrk:.2f} ms"
    )


async def bench_http(dbs: Databases, dialect: str, url: str, token: str) -> list[Result]:
    """Reads against the app's constant route (with and without the response cache), time travel to
    distinct moments, and on PostgreSQL concurrent writes; all under wrk."""
    config = dbs.config
    connections, seconds = config.connections, config.http_seconds
    results = []
    uncached: dict[str, Load] = {}
    # The servers sign with a key that signed the seeded log, as a server over its own log does.
    key = await signed_key(url)
    # Without the response cache: the reads' own baseline, and time travel, which must be computed each time.
    server = Server(url, TIMELINE_RESPONSE_CACHE_BYTES="0", TIMELINE_SIGNING_KEY=key)
    try:
        await server.ready()
        for name, path in READ_ROUTES.items():
            uncached[name] = await asyncio.to_thread(run_wrk, server.base, path, connections, seconds)
        events = await _subject_events(url, "subject-0")
        head = config.events
        cuts = {
            "estimates as_of a date": (
                "/subjects/subject-0/estimates?",
                "as_of",
                [f"2024-{m:02}-{d:02}" for m in range(1, 13) for d in range(1, 29)],
            ),
            "estimates known_at a position": (
                "/subjects/subject-0/estimates?",
                "known_at",
                [str(p) for p in range(head, head // 2, -max(1, head // 2000))],
            ),
        }
        for name, (path, parameter, values) in cuts.items():
            script = distinct(path, parameter, values)
            load = await asyncio.to_thread(run_wrk, server.base, path, 1, seconds, script)
            results.append(
                Result(
                    benchmark=f"HTTP {name}",
                    database=dialect,
                    unit="requests/s",
                    timeline=Stats(load.rate, load.rate, load.rate),
                    baselines={},
                    target="p50 < 50 ms (subject of 10,000 events)",
                    ratio=None,
                    # The target is for a subject of 10,000 events; a smaller run's subject proves nothing.
                    met=load.p50 < 50 and load.errors == 0 if events >= 10_000 else None,
                    note=f"{load.note}; one connection, a different moment each request, no response cache, "
                    f"subject of {events:,} timeline entries"
                    + ("" if events >= 10_000 else " (too few to judge; `--full` has 10,000)"),
                )
            )
    finally:
        server.stop()
    server = Server(url, TIMELINE_SIGNING_KEY=key)
    try:
        await server.ready()
        ceiling, floor = await _costed(server, "/ping", connections, seconds)
        constant = {"constant route": Stats(ceiling.rate, ceiling.rate, ceiling.rate)}
        for name, path in READ_ROUTES.items():
            async with httpx.AsyncClient() as client:  # fill the cache: steady state is measured
                await client.get(server.base + path)
            load = await asyncio.to_thread(run_wrk, server.base, path, connections, seconds)
            ratio = load.rate / ceiling.rate
            results.append(
                Result(
                    benchmark=f"HTTP {name}",
                    database=dialect,
                    unit="requests/s",
                    timeline=Stats(load.rate, load.rate, load.rate),
                    baselines=constant,
                    target=">= 0.5x constant route, p99 < 25 ms",
                    ratio=ratio,
                    met=ratio >= 0.5 and load.p99 < 25 and load.errors == 0,
                    note=f"{load.note}, {connections} connections; constant route p99 {ceiling.p99:.1f} ms; "
                    f"without the response cache {uncached[name].rate:,.0f} requests/s "
                    f"(p99 {uncached[name].p99:.1f} ms)",
                )
            )
        if dialect == "postgresql":
            results.append(await _writes(server, token, config.events, connections, seconds, floor))
    finally:
        server.stop()
    # PostgreSQL is where timeline scales out: `serve --workers N`, an API process a core, writing in turn.
    cores = os.cpu_count() or 1
    if dialect == "postgresql" and cores > 1:
        server = Server(url, workers=cores, TIMELINE_SIGNING_KEY=key)
        try:
            await server.ready()
            results.append(await _writes(server, token, config.events, connections, seconds, floor, cores))
        finally:
            server.stop()
    return results


async def _writes(
    server: Server, token: str, events: int, connections: int, seconds: float, floor: Cost, workers: int = 1
) -> Result:
    """Concurrent revisions POSTed to ``server`` (serving with ``workers`` API processes)."""
    # Writers revise claims all over the log (as editors do), not 32 claims hundreds of times each: a
    # revision reads its claim's whole stream to check the rules.
    claims = max(32, events // 3)
    script = revisions(token, claims)
    if workers > 1:
        # The server answers once one worker does; the others may still be importing the app. Writes until
        # every one serves, as the single server has served the reads before its writes.
        await asyncio.to_thread(run_wrk, server.base, "/", connections, 3, script)
    load, cost = await _costed(server, "/", connections, seconds, script)
    return Result(
        benchmark="HTTP writes (POST a revision)" + (f", serve --workers {workers}" if workers > 1 else ""),
        database="postgresql",
        unit="events/s",
        timeline=Stats(load.rate, load.rate, load.rate),
        baselines={},
        target=f">= {WRITES_TARGET:,} events/s, no errors",
        ratio=load.rate / WRITES_TARGET,
        met=load.rate >= WRITES_TARGET and load.errors == 0,
        note=f"{load.note}, {connections} connections, round-robin over {claims:,} claims; "
        + _budget(cost, floor, WRITES_TARGET, workers),
    )
