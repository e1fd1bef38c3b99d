"""``python -m timeline_bench.metrics_cost``: what counting HTTP metrics adds to one request.

Three apps with one trivial route, one bare, one with the middleware ``timeline.api.observe`` counts with, one
with Litestar's Prometheus middleware (the same series, which timeline used until 2026-12), are called in
process through ASGI (no server, no socket, so nothing else is measured); rounds alternate between them and
the median of each is compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from litestar import Litestar, get
from litestar.plugins.prometheus import PrometheusConfig

from timeline.api.observe import http_metrics

# Litestar's, labelled as timeline's used to be, under a prefix of its own: the series' names are taken.
LITESTAR_METRICS = PrometheusConfig(app_name="bench", prefix="bench_litestar", group_path=True)


@get("/ping", sync_to_thread=False)
def ping() -> str:
    """A route that does nothing."""
    return "pong"


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ping",
        "raw_path": b"/ping",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_message: Any) -> None:
    return None


async def _round(app: Litestar, requests: int) -> float:
    """Microseconds per request over ``requests`` calls."""
    started = time.perf_counter()
    for _ in range(requests):
        await app(_scope(), _receive, _send)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / requests * 1e6


async def measure(requests: int = 5000, rounds: int = 7) -> dict[str, float]:
    """Median microseconds per request: bare, with timeline's middleware, with Litestar's."""
    apps = {
        "without metrics": Litestar([ping], logging_config=None),
        "timeline's": Litestar([ping], middleware=[http_metrics], logging_config=None),
        "Litestar's": Litestar([ping], middleware=[LITESTAR_METRICS.middleware], logging_config=None),
    }
    for app in apps.values():  # warm each up
        await _round(app, 500)
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            times[name].append(await _round(app, requests))
    return {name: statistics.median(each) for name, each in times.items()}


def main() -> None:
    """Print each median and what the middleware adds to the bare route."""
    medians = asyncio.run(measure())
    bare = medians["without metrics"]
    print(f"| {'middleware':<16} | {'µs/request':>10} | {'added':>8} |")
    print(f"|{'-' * 18}|{'-' * 12}|{'-' * 10}|")
    for name, median in medians.items():
        added = "" if name == "without metrics" else f"{median - bare:+.1f}"
        print(f"| {name:<16} | {median:>10.1f} | {added:>8} |")


if __name__ == "__main__":
    main()
