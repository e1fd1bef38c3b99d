"""What the service tells its operators: a request id and one access line per request, and /metrics.

/metrics holds Litestar's HTTP metrics (its Prometheus middleware, in the process-wide registry) and this
app's domain metrics (a registry of its own, so that several apps in one process, as in the tests, each count
their own): events appended, group-commit batch sizes, projection lag, the response cache's hits and misses,
live-stream subscribers. Each process counts for itself; with ``--workers N`` a scrape reaches one of them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from timeline import logs
from timeline.store import eventlog, projector

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Send

    from timeline.api.cache import ResponseCache
    from timeline.api.fanout import Hub
    from timeline.store.database import Database

# A stdlib logger, its fields passed as extras: lines look the same whether or not timeline.logs set up
# the process (the tests do not).
_access = logging.getLogger("timeline.access")

# A caller's id is kept if it is short and plain (it goes into logs and into the events a write records);
# anything else is replaced by one of ours rather than refused.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_HEADER = b"x-request-id"

# What Litestar's middleware costs: about 110-135 µs per request (a trivial route goes from ~95 to ~220 µs,
# measured in process through ASGI on a shared 2-core machine under load; `python -m
# timeline_bench.metrics_cost` measures it again). Against the 1-15 ms of a real read or write that is 1-10%.
HTTP_METRICS = PrometheusConfig(
    app_name="timeline",
    prefix="timeline_http",
    # Label by route template, not by path: one series per route, whatever the ids in the URLs.
    group_path=True,
    exclude=["^/metrics$"],
)


def request_id(scope: HTTPScope) -> tuple[str, bool]:
    """The request's id: the caller's X-Request-ID if acceptable, else a new one; and whether it is new."""
    for name, value in scope["headers"]:
        if name == _HEADER:
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text, False
            break
    return uuid.uuid4().hex, True


async def handle(app: ASGIApp, scope: HTTPScope, receive: Receive, send: Send) -> None:
    """Run one HTTP request through ``app`` with its id bound to every log line, returned in X-Request-ID,
    and one access line at its end (in the same format as every other line)."""
    rid, new = request_id(scope)
    if new:
        # Downstream (the write path records it in each event's metadata) sees the id the caller gets back.
        scope["headers"] = [*[(k, v) for k, v in scope["headers"] if k != _HEADER], (_HEADER, rid.encode())]
    status = 500
    started = time.perf_counter()

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message["headers"] = [*message.get("headers", ()), (_HEADER, rid.encode())]
        await send(message)

    with logs.request(rid):
        try:
            await app(scope, receive, sending)
        finally:
            client = scope.get("client")
            _access.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope["query_string"].decode("latin-1") or None,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": client[0] if client else None,
                },
            )


class Metrics:
    """The domain's metrics for one app."""

    def __init__(self, db: Database, hub: Hub, responses: ResponseCache) -> None:
        self.db = db
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_appended = Counter(
            "timeline_events_appended",
            "Events this process appended to the log (writes and imports)",
            registry=self.registry,
        )
        self.batch_units = Histogram(
            "timeline_group_commit_batch_size",
            "Write requests committed together in one transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.head = Gauge("timeline_log_head_position", "The log's last position", registry=self.registry)
        self.lag = Gauge(
            "timeline_projection_lag_events",
            "Events of the log a projection has yet to apply",
            ["projection"],
            registry=self.registry,
        )
        self.registry.register(_Live(hub, responses))

    def committed(self, units: int, events: int) -> None:
        """One group-commit transaction committed ``units`` write requests that appended ``events``."""
        self.batch_units.observe(units)
        self.events_appended.inc(events)

    async def render(self) -> bytes:
        """The exposition text: Litestar's HTTP metrics, then ours, the lag read from the database now."""
        async with self.db.read() as conn:
            head = await eventlog.head_position(conn)
            seen = await projector.all_checkpoints(conn)
        self.head.set(head)
        for name, position in seen.items():
            self.lag.labels(projection=name).set(max(head - position, 0))
        return generate_latest(REGISTRY) + generate_latest(self.registry)


class _Live(Collector):
    """Values read when scraped: the live streams open now and the response cache's counts."""

    def __init__(self, hub: Hub, responses: ResponseCache) -> None:
        self.hub = hub
        self.responses = responses

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "timeline_sse_subscribers", "Live event streams open in this process", value=self.hub.subscribers
        )
        hits, misses = self.responses.hits, self.responses.misses
        yield CounterMetricFamily("timeline_response_cache_hits", "Reads answered from the cache", value=hits)
        yield CounterMetricFamily(
            "timeline_response_cache_misses", "Reads built from the views", value=misses
        )
        yield GaugeMetricFamily(
            "timeline_response_cache_hit_ratio",
            "Hits over hits and misses since the process started (0 before any read)",
            value=hits / (hits + misses) if hits + misses else 0.0,
        )


@get("/metrics", operation_id="getMetrics", include_in_schema=False, cache_control=None)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus' text exposition format."""
    own: Metrics = request.app.state.metrics
    return Response(
        await own.render(),
        media_type="text/plain; version=0.0.4",  # Litestar adds the charset (twice if given here)
        headers={"Cache-Control": "no-store"},
    )


ROUTES = [metrics]
