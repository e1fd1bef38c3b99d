"""The live-updates benchmark: what N open event streams cost a server's writes and its /health."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
import uuid
from collections.abc import Callable

import httpx
import msgspec

from timeline_bench.measure import Config, Databases, Result, Stats, cpu_seconds
from timeline_bench.seed import seed_log
from timeline_bench.wrk import Load, Server, revisions, run_wrk, write_token

# Streams on a subject no write touches: open, authorised, waiting (as a page left open on a quiet story).
QUIET = "/events/stream?subject=subject-nobody-writes"
WHOLE = "/events/stream"


async def _subscribe(port: int, path: str, count: int) -> list[asyncio.Task[None]]:
    """Open ``count`` streams and read them in the background, discarding what arrives."""
    opened = asyncio.Event()
    ready = 0

    async def one() -> None:
        nonlocal ready
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        try:
            await reader.readuntil(b"\r\n\r\n")  # the response head: the stream is open
            ready += 1
            if ready == count:
                opened.set()
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(one()))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # not all 1,000 in one burst of the listen backlog
    await asyncio.wait_for(opened.wait(), 60)
    return tasks


async def _close(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks, return_exceptions=True)


class Round(msgspec.Struct, frozen=True):
    """One measurement: the write load, /health beside it, and the server's CPU time per write."""

    writes: Load
    health: Load
    cpu_ms: float


async def _round(server: Server, token: str, seconds: float, connections: int) -> Round:
    """Writes under wrk and, at the same time, /health asked on one connection."""
    script = revisions(token, 300)
    before = cpu_seconds(server.proc.pid)
    writes, health = await asyncio.gather(
        asyncio.to_thread(run_wrk, server.base, "/", connections, seconds, script),
        asyncio.to_thread(run_wrk, server.base, "/health", 1, seconds),
    )
    used = cpu_seconds(server.proc.pid) - before
    return Round(writes, health, 1000 * used / max(1.0, writes.rate * seconds))


# Writes made through one server while a stream is open on another, spaced at random so they fall anywhere in
# the streaming server's look at the log (SQLite has no notifications across processes).
CROSSINGS = 20


async def _next_id(reader: asyncio.StreamReader) -> int:
    """The position of the next event on an open stream (chunk-size lines and keep-alives skipped)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("the stream ended")
        if line.startswith(b"id: "):
            return int(line[4:])


async def _crossings(streaming: Server, writing: Server, token: str) -> list[float]:
    """Milliseconds from sending each write to ``writing`` to its event arriving on a stream of
    ``streaming``: an upper bound of commit-to-delivery, the write's own time included."""
    reader, writer = await asyncio.open_connection("127.0.0.1", streaming.port)
    writer.write(b"GET /events/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    run = uuid.uuid4().hex[:8]
    taken = []
    try:
        async with httpx.AsyncClient(base_url=writing.base, timeout=30) as client:
            for n in range(CROSSINGS):
                await asyncio.sleep(random.uniform(0.05, 0.5))
                body = {
                    "statement": "new",
                    "stated_on": "2024-10-25",
                    "document_ids": ["bench-doc"],
                    "revision_id": f"cross-{run}-{n}",
                }
                started = time.perf_counter()
                written = await client.post(
                    f"/claims/c{n}/revisions", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                written.raise_for_status()
                await asyncio.wait_for(_next_id(reader), 30)
                taken.append(1000 * (time.perf_counter() - started))
    finally:
        writer.close()
        # Closed before the servers are stopped: a stopping server waits for its open streams to end.
        await writer.wait_closed()
    return taken


async def cross_process(url: str, dialect: str, token: str, log: Callable[[str], None]) -> Result:
    """How soon a stream on one server process delivers a write made through another, on one database."""
    log(f"{dialect}: live, a stream on one process, writes through another")
    streaming, writing = Server(url), Server(url)
    try:
        await asyncio.gather(streaming.ready(), writing.ready())
        taken = await _crossings(streaming, writing, token)
    finally:
        streaming.stop()
        writing.stop()
    slowest = max(taken)
    return Result(
        benchmark="a write through another process, seen on a stream",
        database=dialect,
        unit="ms",
        timeline=Stats.of(taken),
        baselines={},
        target="every one < 1,000 ms",
        ratio=None,
        met=slowest < 1000,
        note=f"{len(taken)} writes, each sent at random 50-500 ms after the last arrived; from sending the "
        "write to its event arriving (the write's own time included)",
    )


async def bench_live(
    dbs: Databases, dialect: str, log: Callable[[str], None], subscribers: int = 1000
) -> list[Result]:
    """Write rate and /health p50 with no streams open (before and after), with ``subscribers`` idle
    streams (on a quiet subject) and with as many streams of the whole log. On a shared machine the
    rates move with other load; the server's CPU time per write shows what the streams themselves cost."""
    config = dbs.config
    url = await dbs.fresh(dialect)
    await seed_log(url, 2_000)
    token = await write_token(url)
    seconds, connections = config.http_seconds, 8
    server = Server(url)
    rounds: dict[str, list[Round]] = {"alone": [], QUIET: [], WHOLE: []}
    try:
        await server.ready()
        for _ in range(config.repeats):
            log(f"{dialect}: live, no streams open")
            rounds["alone"].append(await _round(server, token, seconds, connections))
            for path in (QUIET, WHOLE):
                log(f"{dialect}: live, {subscribers:,} streams of {path}")
                tasks = await _subscribe(server.port, path, subscribers)
                try:
                    rounds[path].append(await _round(server, token, seconds, connections))
                finally:
                    await _close(tasks)
        rounds["alone"].append(await _round(server, token, seconds, connections))
    finally:
        server.stop()
    crossing = await cross_process(url, dialect, token, log)
    alone = rounds["alone"]
    base_rate = statistics.median(r.writes.rate for r in alone)
    base_cpu = statistics.median(r.cpu_ms for r in alone)
    base_health = statistics.median(r.health.p50 for r in alone)
    results = []
    for path, name in ((QUIET, "idle streams (quiet subject)"), (WHOLE, "streams of the whole log")):
        measured = rounds[path]
        rates = [r.writes.rate for r in measured]
        health = statistics.median(r.health.p50 for r in measured)
        cpu = statistics.median(r.cpu_ms for r in measured)
        errors = sum(r.writes.errors for r in measured)
        ratio = statistics.median(rates) / base_rate if base_rate else 0.0
        idle = path == QUIET
        results.append(
            Result(
                benchmark=f"HTTP writes with {subscribers:,} {name}",
                database=dialect,
                unit="events/s",
                timeline=Stats.of(rates),
                baselines={"no streams open": Stats.of([r.writes.rate for r in alone])},
                target=">= 0.8x, /health p50 < 10 ms" if idle else "-",
                ratio=ratio,
                met=(ratio >= 0.8 and health < 10 and errors == 0) if idle else None,
                note=f"/health p50 {health:.1f} ms (no streams {base_health:.1f} ms); server CPU per write "
                f"{cpu:.2f} ms (no streams {base_cpu:.2f} ms); {errors} errors; {connections} writers",
            )
        )
    results.append(crossing)
    return results


async def run_live(config: Config, dialects: list[str], log: Callable[[str], None]) -> list[Result]:
    """The live-updates benchmark on every database."""
    dbs = Databases(config)
    results: list[Result] = []
    try:
        for dialect in dialects:
            results.extend(await bench_live(dbs, dialect, log))
    finally:
        await dbs.drop_all()
    return results
