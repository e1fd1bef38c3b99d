"""HTTP conventions on every route: HEAD as GET without a body; CORS for public reads from any origin and for
writes from configured origins only; /schema and its Redoc served by the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.api.settings import Settings
from timeline.store.database import Database

Client = AsyncTestClient  # type: ignore[type-arg]
NEWSROOM = "https://newsroom.example"
ELSEWHERE = "https://elsewhere.example"
EXPORT = "/subjects/dprk-troops-to-russia/timelinejs"


@pytest.fixture
async def client(database_url: str, token: str) -> AsyncIterator[Client]:
    settings = Settings(cors_origins=NEWSROOM)
    async with AsyncTestClient(app=create_app(Database(database_url), settings)) as c:
        yield c


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/subjects",
        "/subjects/dprk-troops-to-russia/estimates",
        EXPORT,
        "/subjects/dprk-troops-to-russia/timeline.csv",
        "/claims/nis-1500-soldiers-sent-for-training",
        "/events",
        "/audit/head",
        "/ui",
        "/schema",
        "/schema/openapi.json",
        "/schema/assets/redoc.standalone.js",
        "/metrics",
    ],
)
async def test_head_answers_every_get_with_its_headers_and_no_body(client: Client, path: str) -> None:
    got = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert got.status_code == 200, got.text
    head = await client.head(path, headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if "etag" in got.headers and path != "/metrics":
        assert head.headers["etag"] == got.headers["etag"]


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/schema/assets/redoc.standalone.js",
        "/ui",
        "/audit/head",
        "/subjects/dprk-troops-to-russia/timeline.csv",
        "/subjects/dprk-troops-to-russia/estimates.csv",
    ],
)
async def test_content_types_name_each_parameter_once(client: Client, path: str) -> None:
    # A repeated parameter makes the header invalid (RFC 9110 leaves it undefined; Go's mime parser, which
    # Prometheus uses to pick the exposition format, refuses it).
    got = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert got.status_code == 200, got.text
    names = [p.split("=")[0].strip().lower() for p in got.headers["content-type"].split(";")[1:]]
    assert len(names) == len(set(names)), got.headers["content-type"]


async def test_head_on_a_conditional_read_still_says_not_modified(client: Client) -> None:
    estimates = "/subjects/dprk-troops-to-russia/estimates"
    tag = (await client.get(estimates)).headers["etag"]
    assert (await client.head(estimates, headers={"If-None-Match": tag})).status_code == 304


async def test_head_of_the_event_stream_answers_and_ends(client: Client) -> None:
    head = await client.head("/events/stream")
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.content == b""


async def test_any_origin_reads_public_data_without_credentials(client: Client) -> None:
    read = await client.get(EXPORT, headers={"Origin": ELSEWHERE})
    assert read.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in read.headers
    assert "ETag" in read.headers["access-control-expose-headers"]
    preflight = await client.options(
        EXPORT,
        headers={"Origin": ELSEWHERE, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "if-none-match"},
    )  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "If-None-Match" in preflight.headers["access-control-allow-headers"]
    # No token from there: Authorization is not among the headers it may send.
    assert "Authorization" not in preflight.headers["access-control-allow-headers"]


async def test_only_configured_origins_may_write(client: Client, token: str) -> None:
    asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    refused = await client.options("/claims", headers={"Origin": ELSEWHERE, **asks})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert "TIMELINE_CORS_ORIGINS" in refused.json()["detail"]
    allowed = await client.options("/claims", headers={"Origin": NEWSROOM, **asks})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == NEWSROOM
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "Authorization" in allowed.headers["access-control-allow-headers"]
    assert allowed.headers["vary"] == "Origin"
    # A write's answer carries the header only for a configured origin.
    body = {"statement": "s", "stated_on": "2024-10-25", "document_ids": ["000-16630df2654ec508"]}
    auth = {"Authorization": f"Bearer {token}"}
    path = "/claims/nis-1500-soldiers-sent-for-training/revisions"
    from_elsewhere = await client.post(path, json=body, headers={"Origin": ELSEWHERE, **auth})
    assert "access-control-allow-origin" not in from_elsewhere.headers
    from_newsroom = await client.post(path, json=body, headers={"Origin": NEWSROOM, **auth})
    assert from_newsroom.headers["access-control-allow-origin"] == NEWSROOM


async def test_private_reads_are_for_configured_origins_only(database_url: str, token: str) -> None:
    settings = Settings(cors_origins=NEWSROOM, public_reads=False)
    async with AsyncTestClient(app=create_app(Database(database_url), settings)) as client:
        read = await client.get(EXPORT, headers={"Origin": ELSEWHERE, "Authorization": f"Bearer {token}"})
        assert "access-control-allow-origin" not in read.headers
        asks = {"Access-Control-Request-Method": "GET"}
        assert (await client.options(EXPORT, headers={"Origin": ELSEWHERE, **asks})).status_code == 403


async def test_schema_page_uses_only_the_apps_own_assets(client: Client) -> None:
    page = (await client.get("/schema")).text
    assert '<script src="/schema/assets/redoc.standalone.js"' in page
    assert "http://" not in page.split("Redoc.init(")[0].replace("http://www.w3.org", "")
    assert "https://" not in page.split("Redoc.init(")[0]
    script = await client.get("/schema/assets/redoc.standalone.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert b"Redoc" in script.content[:5000] or b"redoc" in script.content
    again = await client.get(
        "/schema/assets/redoc.standalone.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
