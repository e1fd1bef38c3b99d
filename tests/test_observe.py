"""What operators see: request ids, one log format for access and application lines, /metrics with the
domain's own numbers, and OpenTelemetry spans when tracing is on."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from timeline import logs
from timeline.api.app import create_app
from timeline.api.cache import ResponseCache
from timeline.api.fanout import Filter, Hub
from timeline.api.observe import Metrics
from timeline.store import clock
from timeline.store.database import Database

from .helpers import logging_restored

Client = AsyncTestClient  # type: ignore[type-arg]
NIS = "nis-1500-soldiers-sent-for-training"
DOC = "000-16630df2654ec508"
ESTIMATES = "/subjects/dprk-troops-to-russia/estimates"


@pytest.fixture
async def client(database_url: str, token: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(Database(database_url))) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process's log lines, as ``timeline serve --log-format json`` writes them."""
    out = io.StringIO()
    with logging_restored():
        logs.configure("json", "info", stream=out)
        yield out


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _revise(value: int) -> dict[str, Any]:
    return {
        "statement": f"Now about {value}.",
        "stated_on": "2024-10-25",
        "document_ids": [DOC],
        "quantity": {"comparator": "about", "value": value, "unit": "soldiers"},
    }


async def test_request_ids_are_kept_or_made_and_always_returned(client: Client) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = await client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    # An id that could garble a log line is replaced, not echoed.
    odd = await client.get("/health", headers={"X-Request-ID": "a b\tc"})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    # Unrouted paths get one too.
    missing = await client.get("/no-such-page", headers={"X-Request-ID": "lost-1"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "lost-1"


async def test_access_and_application_lines_share_one_json_format(
    client: Client, captured: io.StringIO
) -> None:
    await client.get(ESTIMATES, headers={"X-Request-ID": "read-1"})
    logging.getLogger("timeline.somewhere").warning("something to say %s", "here")
    by_logger = {line["logger"]: line for line in _lines(captured)}  # (the test client logs too)
    access, app_line = by_logger["timeline.access"], by_logger["timeline.somewhere"]
    assert access["event"] == "request"
    assert access["request_id"] == "read-1"
    assert (access["method"], access["path"], access["status"]) == ("GET", ESTIMATES, 200)
    assert access["duration_ms"] >= 0
    assert app_line["event"] == "something to say here"
    assert app_line["logger"] == "timeline.somewhere"
    for line in (access, app_line):
        assert {"timestamp", "level", "logger", "event"} <= line.keys()


async def test_lines_logged_while_a_request_runs_carry_its_id(client: Client, captured: io.StringIO) -> None:
    await client.post(f"/claims/{NIS}/revisions", json=_revise(2000), headers={"X-Request-ID": "write-7"})
    # Every line of that request, the access line among them, names it.
    mine = [line for line in _lines(captured) if line.get("request_id") == "write-7"]
    assert [line["event"] for line in mine][-1] == "request"


def _requests(text: str, status: str, **labels: str) -> float:
    """Requests counted under ``status`` and ``labels`` (0 before the first)."""
    try:
        return _sample(text, "timeline_http_requests_total", status_code=status, **labels)
    except AssertionError:
        return 0


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus' text format."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if metric == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"{name} {labels} not in /metrics")


async def test_metrics_count_http_requests_and_the_domain(client: Client) -> None:
    before = (await client.get("/metrics")).text
    assert _sample(before, "timeline_events_appended_total") == 0
    assert _sample(before, "timeline_log_head_position") == 29
    await client.get(ESTIMATES)
    await client.get(ESTIMATES)  # from the cache
    written = await client.post(f"/claims/{NIS}/revisions", json=_revise(2000))
    assert written.status_code == 201, written.text
    await client.get(f"/claims/{NIS}")
    await client.get("/no-such-page")
    refused = await client.post(
        f"/claims/{NIS}/revisions", json=_revise(3000), headers={"Authorization": "Bearer tl_wrong"}
    )
    assert refused.status_code == 401
    await client.get("/metrics")

    after = await client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert _sample(text, "timeline_events_appended_total") == 1
    assert _sample(text, "timeline_log_head_position") == 30
    assert _sample(text, "timeline_group_commit_batch_size_count") == 1
    assert _sample(text, "timeline_group_commit_batch_size_bucket", le="1.0") == 1
    # The views follow the log in the write's transaction: no lag.
    assert _sample(text, "timeline_projection_lag_events", projection="views") == 0
    assert _sample(text, "timeline_response_cache_hits_total") == 1
    assert _sample(text, "timeline_response_cache_misses_total") == 2
    assert _sample(text, "timeline_response_cache_hit_ratio") == pytest.approx(1 / 3)
    assert _sample(text, "timeline_sse_subscribers") == 0
    # The series Litestar's middleware gives, one per route template rather than per URL.
    claim = {"method": "GET", "path": "/claims/{claim_id}", "app_name": "timeline"}
    assert _sample(text, "timeline_http_requests_total", status_code="200", **claim) >= 1
    assert _sample(text, "timeline_http_request_duration_seconds_count", status_code="200", **claim) >= 1
    assert _sample(text, "timeline_http_requests_in_progress", status_code="200", **claim) == 0
    # The HTTP series are the process's (other tests' requests are in them too): by how much they grew.
    revised = {"method": "POST", "path": "/claims/{claim_id}/revisions"}
    for status in ("201", "401"):  # a request the token check refuses counts by the status it was given
        grew = _requests(text, status, **revised) - _requests(before, status, **revised)
        assert grew == 1, status
    # /metrics does not count itself, and a URL no route serves is not a series.
    assert "/metrics" not in re.findall(r'path="([^"]*)"', text)
    assert "/no-such-page" not in text


async def test_metrics_count_open_event_streams(db: Database) -> None:
    hub = Hub(db)
    metrics = Metrics(db, hub, ResponseCache(clock.for_database(db), 0))
    subscriber = hub.subscribe(Filter())
    try:
        assert _sample((await metrics.render()).decode(), "timeline_sse_subscribers") == 1
    finally:
        hub.unsubscribe(subscriber)
        await hub.close()
    assert _sample((await metrics.render()).decode(), "timeline_sse_subscribers") == 0


async def test_tracing_gives_each_request_a_span(database_url: str, token: str) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is part of the development install")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    traced = TracerProvider()
    traced.add_span_processor(SimpleSpanProcessor(spans))
    async with AsyncTestClient(app=create_app(Database(database_url), tracer_provider=traced)) as client:
        assert (await client.get(ESTIMATES)).status_code == 200
        await client.get("/metrics")
    names = [s.name for s in spans.get_finished_spans() if s.parent is None]
    assert names == ["GET /subjects/{subject_id}/estimates"]


async def test_tracing_is_off_unless_asked_for(database_url: str) -> None:
    db = Database(database_url)
    try:
        plain = create_app(db)
        assert not [p for p in plain.plugins if type(p).__name__ == "OpenTelemetryPlugin"]
    finally:
        await db.dispose()


async def test_serve_writes_every_line_as_json_with_the_request_id(database_url: str, tmp_path: Path) -> None:
    """`timeline serve --log-format json` (here through TIMELINE_LOG_FORMAT): uvicorn's lines and the access
    lines in one format, and no second access line of uvicorn's own."""
    from .test_processes import Server

    log = tmp_path / "server.log"
    server = Server(database_url, log, TIMELINE_LOG_FORMAT="json", TIMELINE_LOG_LEVEL="info")
    try:
        await server.ready()
        async with httpx.AsyncClient() as client:
            answered = await client.get(f"{server.base}/subjects", headers={"X-Request-ID": "from-curl"})
        assert answered.headers["x-request-id"] == "from-curl"
    finally:
        server.stop()
    lines = log.read_text().splitlines()
    # The command's own report comes first, on standard output; every logged line after it is JSON.
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(line["logger"] == "uvicorn.error" for line in logged)
    access = [line for line in logged if line.get("request_id") == "from-curl"]
    assert [(a["logger"], a["path"], a["status"]) for a in access] == [("timeline.access", "/subjects", 200)]
    assert not [line for line in lines if '"GET /subjects HTTP/1.1"' in line]


async def test_a_task_started_while_serving_a_request_does_not_log_its_id(captured: io.StringIO) -> None:
    """The group commit's task, say, is started by the first write and outlives it: its lines must not
    carry that request's id forever."""

    async def background() -> None:
        logging.getLogger("timeline.background").info("later")

    with logs.request("first-write"):
        logging.getLogger("timeline.handler").info("serving")
        await asyncio.create_task(background())
    by_event = {line["event"]: line for line in _lines(captured)}
    assert by_event["serving"]["request_id"] == "first-write"
    assert "request_id" not in by_event["later"]


async def test_serve_counts_the_events_its_start_up_import_appended(
    database_url: str, tmp_path: Path
) -> None:
    """`timeline serve` imports the fixtures not yet recorded, in the process that then serves: its counter
    of events appended starts with them, and a second start, which imports nothing, counts none."""
    from .test_processes import Server

    for expected in (29, 0):
        server = Server(database_url, tmp_path / f"server-{expected}.log")
        try:
            await server.ready()
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{server.base}/metrics")).text
        finally:
            server.stop()
        assert _sample(text, "timeline_events_appended_total") == expected
        assert _sample(text, "timeline_log_head_position") == 29
