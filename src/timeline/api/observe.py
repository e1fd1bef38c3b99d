"""What the service tells its operators: a request id and one access line per request, and /metrics.

/metrics holds the HTTP metrics (the series Litestar's Prometheus middleware gives, counted here; in the
process-wide registry) and this app's domain metrics (a registry of its own, so that several apps in one
process, as in the tests, each count their own): events appended, group-commit batch sizes, projection lag,
the response cache's hits and misses, live-stream subscribers. Each process counts for itself; with
``--workers N`` a scrape reaches one of them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from litestar import Request, Response, get
from litestar.enums import ScopeType
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from timeline import logs
from timeline.api.conventions import header
from timeline.store import eventlog, projector

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

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

# Litestar's Prometheus middleware's four series (names, labels and help as it gives them), counted by a
# middleware of our own: Litestar's cost 25.8 µs a request in process, this one 7.2 (`python -m
# timeline_bench.metrics_cost`), and without Litestar's a write server wrote 6% more. Most of that went to
# finding each series' labelled child again; this one keeps the children it has found. The series exist from
# import on (Litestar's appeared at the first request).
_LABELS = ("method", "path", "status_code", "app_name")
_APP_NAME = "timeline"
_REQUESTS = Counter("timeline_http_requests_total", "Total requests", _LABELS)
_DURATION = Histogram("timeline_http_request_duration_seconds", "Request duration, in seconds", _LABELS)
_IN_PROGRESS = Gauge(
    "timeline_http_requests_in_progress",
    "Total requests currently in progress",
    _LABELS,
    multiprocess_mode="livesum",
)
_ERRORS = Counter("timeline_http_requests_error_total", "Total errors in requests", _LABELS)
# A route template's paths are excluded, as /metrics is from itself.
_UNCOUNTED = frozenset({"/metrics"})


class _Series:
    """The labelled children one route, method and status count into."""

    def __init__(self, method: str, path: str, status: int) -> None:
        values = (method, path, str(status), _APP_NAME)
        self.requests = _REQUESTS.labels(*values)
        self.duration = _DURATION.labels(*values)
        self.errors = _ERRORS.labels(*values) if status >= 500 else None


_series: dict[tuple[str, str, int], _Series] = {}
_in_progress: dict[tuple[str, str], Any] = {}


# Where ``http_metrics`` leaves a routed request's labels and start for ``handle`` to count it by.
_METERED = "timeline.metered"


def http_metrics(app: ASGIApp) -> ASGIApp:
    """Litestar middleware: counts a routed request in progress, and leaves its method and route template for
    ``handle``, which counts it once the response has gone, by its final status. Litestar's exception
    handler around the router answers for an exception raised outside the route's own (the token check's
    401 and 403, an unreachable database's 503): only from outside it is every status known."""

    async def metered(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path_template")
        if scope["type"] != ScopeType.HTTP or path is None or path in _UNCOUNTED:
            await app(scope, receive, send)
            return
        method: str = scope["method"]
        gauge = _in_progress.get((method, path))
        if gauge is None:
            # As Litestar's: the gauge is labelled before the status is known, with 200.
            gauge = _in_progress[method, path] = _IN_PROGRESS.labels(method, path, "200", _APP_NAME)
        cast("dict[str, Any]", scope)[_METERED] = (method, path, time.perf_counter())
        gauge.inc()
        try:
            await app(scope, receive, send)
        finally:
            gauge.dec()

    return metered


def _count(scope: HTTPScope, status: int) -> None:
    """Count a request ``http_metrics`` saw, by the status it was answered with."""
    metered = cast("dict[str, Any]", scope).get(_METERED)
    if metered is None:
        return
    method, path, started = metered
    series = _series.get((method, path, status))
    if series is None:
        series = _series[method, path, status] = _Series(method, path, status)
    if series.errors is not None:
        series.errors.inc()
    series.requests.inc()
    series.duration.observe(time.perf_counter() - started)


def request_id(scope: HTTPScope) -> tuple[str, bool]:
    """The request's id: the caller's X-Request-ID if acceptable, else a new one; and whether it is new."""
    text = header(scope, _HEADER)
    if text is not None and _REQUEST_ID.fullmatch(text):
        return text, False
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
            _count(scope, status)
            client = scope.get("client")
            logs.line(
                _access,
                "request",
                {
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
        """The exposition text: the HTTP metrics, then the domain's, the lag read from the database now."""
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
