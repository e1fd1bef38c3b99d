"""``python -m timeline_bench.metrics_cost``: what Litestar's Prometheus middleware adds to one request.

Two apps with one trivial route, one with the middleware as ``timeline.api.observe`` configures it, are
called in process through ASGI (no server, no socket, so nothing else is measured); rounds alternate between
them and the median of each is compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from litestar import Litestar, get

from timeline.api.observe import HTTP_METRICS


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


async def measure(requests: int = 5000, rounds: int = 7) -> tuple[float, float]:
    """Median microseconds per request without and with the middleware."""
    bare = Litestar([ping], logging_config=None)
    metered = Litestar([ping], middleware=[HTTP_METRICS.middleware], logging_config=None)
    await _round(bare, 500)  # warm both up
    await _round(metered, 500)
    without, with_ = [], []
    for _ in range(rounds):
        without.append(await _round(bare, requests))
        with_.append(await _round(metered, requests))
    return statistics.median(without), statistics.median(with_)


def main() -> None:
    """Print both medians and the difference."""
    without, with_ = asyncio.run(measure())
    print(f"without metrics: {without:.1f} µs/request")
    print(f"with metrics:    {with_:.1f} µs/request")
    print(f"the middleware:  {with_ - without:+.1f} µs/request ({(with_ - without) / without:+.0%})")


if __name__ == "__main__":
    main()
