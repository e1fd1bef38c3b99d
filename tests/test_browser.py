"""The viewer in a real headless Chromium (Debian's chromium and chromedriver), against a real server."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import SEED
from .test_processes import Server, _token

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REQUIRED = os.environ.get("TIMELINE_TEST_REQUIRE_BROWSER", "") not in ("", "0")
NIS = "nis-1500-soldiers-sent-for-training"


@pytest.fixture
def browser() -> Iterator[object]:
    yield from _chromium()


@pytest.fixture
def offline_browser() -> Iterator[object]:
    """A browser that reaches 127.0.0.1 and nothing else: every other host fails to resolve."""
    yield from _chromium("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")


def _chromium(*extra: str) -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if REQUIRED:
            pytest.fail(
                "chromium and chromedriver are required (TIMELINE_TEST_REQUIRE_BROWSER) but not installed"
            )
        pytest.skip("chromium/chromedriver not installed (make test installs them where it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,1400",
        *extra,
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: object, condition: str, seconds: float = 15) -> None:
    """Wait until a JavaScript expression is true in the page."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if driver.execute_script(f"return Boolean({condition})"):  # type: ignore[attr-defined]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {condition}")


def _text(driver: object, selector: str) -> str:
    return str(driver.execute_script(f"return document.querySelector({selector!r}).innerText"))  # type: ignore[attr-defined]


async def test_a_reader_sees_the_seed_as_table_chart_and_timeline(browser: object, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'viewer.db'}"
    server = Server(url, tmp_path / "server.log")
    try:
        await server.ready()
        token = await _token(url)
        driver = browser
        page = f"{server.base}/ui?subject=dprk-troops-to-russia"
        await asyncio.to_thread(driver.get, page)  # type: ignore[attr-defined]
        _wait(driver, "document.querySelectorAll('#estimates tbody tr[data-source]').length === 3")
        nis = _text(driver, "#estimates tr[data-source='south-korea-nis']")
        assert "1,500 soldiers" in nis
        assert "DISPUTED" in nis.upper()
        assert "The Kremlin" in nis
        run = driver.execute_script  # type: ignore[attr-defined]
        assert run("return document.querySelectorAll('#chart g.series').length") == 3
        assert run("return document.querySelectorAll('#chart line.bounds').length") == 2  # the two "up to"
        label = run("return document.getElementById('chart').getAttribute('aria-label')")
        assert "Estimates of soldiers-sent by source over time" in label
        assert "up to 12,000 soldiers" in label
        assert run("return document.querySelectorAll('#timeline li').length") == 13
        first = _text(driver, "#timeline li")
        assert "CLAIM DISPUTED" in first.upper()
        assert "A new ally for Russia? Why Pyongyang is sending soldiers to Ukraine, Tural Heybatov" in first
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "viewer-now.png"))  # type: ignore[attr-defined]

        # The date control replays the page: nothing had been said by 20 October 2024.
        driver.execute_script(  # type: ignore[attr-defined]
            "const i = document.getElementById('as-of'); i.value = '2024-10-20';"
            "i.dispatchEvent(new Event('change'))"
        )
        _wait(
            driver,
            "document.querySelector('#estimates tbody').innerText.includes('No estimates at that moment')",
        )
        driver.save_screenshot(str(ARTIFACTS / "viewer-as-of-2024-10-20.png"))  # type: ignore[attr-defined]

        # Live: back to now, an editor writes, the figure changes without a reload.
        driver.execute_script("document.getElementById('now').click()")  # type: ignore[attr-defined]
        _wait(driver, "document.querySelectorAll('#estimates tbody tr[data-source]').length === 3")
        _wait(driver, "document.getElementById('live').innerText.startsWith('Live')")
        async with httpx.AsyncClient() as client:
            revised = await client.post(
                f"{server.base}/claims/{NIS}/revisions",
                headers={"Authorization": f"Bearer {token}"},
                json={"statement": "About 3,000 now.", "stated_on": "2024-11-01",
                      "document_ids": ["000-16630df2654ec508"],
                      "quantity": {"comparator": "about", "value": 3000, "unit": "soldiers"}},
            )  # fmt: skip
            assert revised.status_code == 201
        nis_row = "document.querySelector(\"#estimates tr[data-source='south-korea-nis']\")"
        _wait(driver, f"{nis_row}.innerText.includes('about 3,000')")
        driver.save_screenshot(str(ARTIFACTS / "viewer-live.png"))  # type: ignore[attr-defined]
        # Readable without colour: every series has its name written next to it.
        names = driver.execute_script(
            "return [...document.querySelectorAll('#chart g.series > text')].map(t => t.textContent)"
        )  # type: ignore[attr-defined]
        assert set(names) == {"National Intelligence Service (South Korea)", "Unnamed sources",
                              "Volodymyr Zelenskyy, President of Ukraine"}  # fmt: skip
    finally:
        server.stop()


TIMELINEJS = (
    Path(__file__).resolve().parents[1] / ".cache/timelinejs/node_modules/@knight-lab/timelinejs/dist"
)


async def test_timelinejs_itself_loads_our_export_from_another_origin(
    browser: object, tmp_path: Path
) -> None:
    """An embed page on another origin loads TimelineJS3 (from npm) and points it at our export, with no
    CORS configuration: public reads answer any origin."""
    import functools
    import http.server
    import threading

    if not (TIMELINEJS / "js" / "timeline.js").is_file():
        if REQUIRED:
            pytest.fail(f"TimelineJS is required but missing at {TIMELINEJS} (make test fetches it from npm)")
        pytest.skip("TimelineJS not fetched from npm")
    url = f"sqlite+aiosqlite:///{tmp_path / 'embed.db'}"
    server = Server(url, tmp_path / "server.log")
    site = tmp_path / "site"
    shutil.copytree(TIMELINEJS, site / "timelinejs")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        await server.ready()
        source = f"{server.base}/subjects/dprk-troops-to-russia/timelinejs"
        (site / "embed.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<link rel='stylesheet' href='timelinejs/css/timeline.css'>"
            "<script src='timelinejs/js/timeline.js'></script></head><body>"
            "<div id='timeline-embed' style='width:1000px;height:600px'></div>"
            f"<script>window.tl = new TL.Timeline('timeline-embed', {source!r});</script>"
            "</body></html>"
        )
        driver = browser
        page = f"http://127.0.0.1:{httpd.server_address[1]}/embed.html"
        await asyncio.to_thread(driver.get, page)  # type: ignore[attr-defined]
        _wait(driver, "document.querySelectorAll('.tl-slide').length >= 14", seconds=30)
        slides = driver.execute_script("return document.querySelectorAll('.tl-slide').length")  # type: ignore[attr-defined]
        assert slides == 14  # the title and the 13 events of the seed's subject
        text = _text(driver, "#timeline-embed")
        assert "North Korean troops sent to Russia" in text
        assert "National Intelligence Service (South Korea): 1,500 soldiers sent" in text
        errors = driver.execute_script("return document.querySelectorAll('.tl-message-full').length")  # type: ignore[attr-defined]
        assert errors == 0
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "timelinejs-embed.png"))  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.stop()


async def test_the_api_documentation_renders_with_the_network_off(
    offline_browser: object, tmp_path: Path
) -> None:
    """/schema draws Redoc from the app's own copy: no CDN, no web fonts."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    server = Server(url, tmp_path / "server.log")
    try:
        await server.ready()
        driver = offline_browser
        run = driver.execute_script  # type: ignore[attr-defined]
        # The browser really is offline for every other host.
        from selenium.common.exceptions import WebDriverException

        with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
            driver.get("https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js")  # type: ignore[attr-defined]
        await asyncio.to_thread(driver.get, f"{server.base}/schema")  # type: ignore[attr-defined]
        _wait(driver, "document.querySelector('.api-content') !== null", seconds=30)
        _wait(driver, "document.body.innerText.includes('An event-sourced ledger of attributed claims')")
        text = str(run("return document.body.innerText"))
        assert "getHealth" in text or "Health" in text
        entries = run(
            "return performance.getEntriesByType('resource').map(e => [e.name, e.domainLookupStart])"
        )
        assert [name for name, _ in entries if "redoc.standalone.js" in name] == [
            f"{server.base}/schema/assets/redoc.standalone.js"
        ]
        # Redoc's bundle names one remote image (its logo); the page's policy stops it before any lookup.
        elsewhere = [
            name for name, lookup in entries if not str(name).startswith(server.base) and lookup != 0
        ]
        assert elsewhere == []
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "schema-offline.png"))  # type: ignore[attr-defined]
    finally:
        server.stop()


async def test_a_link_to_a_moment_opens_the_viewer_there(browser: object, tmp_path: Path) -> None:
    """/?as_of= reaches the viewer with the subject filled in and the date set, and shows that moment."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'link.db'}"
    server = Server(url, tmp_path / "server.log")
    try:
        await server.ready()
        driver = browser
        await asyncio.to_thread(driver.get, f"{server.base}/?as_of=2024-10-20")  # type: ignore[attr-defined]
        _wait(
            driver,
            "document.querySelector('#estimates tbody').innerText.includes('No estimates at that moment')",
        )
        run = driver.execute_script  # type: ignore[attr-defined]
        assert run("return document.getElementById('as-of').value") == "2024-10-20"
        assert run("return document.getElementById('subject').value") == "dprk-troops-to-russia"
        assert run("return location.search") == "?subject=dprk-troops-to-russia&as_of=2024-10-20"
        # Back to now: the address follows, so it is a link to what the page shows.
        run("document.getElementById('now').click()")
        _wait(driver, "document.querySelectorAll('#estimates tbody tr[data-source]').length === 3")
        assert run("return location.search") == "?subject=dprk-troops-to-russia"
    finally:
        server.stop()


async def test_the_viewer_shows_a_sources_assertion_and_projection_and_when_things_happened(
    browser: object, tmp_path: Path
) -> None:
    """Served the seed and the invented estimates follow-up: a source's row shows its assertion and its
    projection with the horizon, and an entry dated by a range of weeks says so."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'followup.db'}"
    served = tmp_path / "fixtures"
    served.mkdir()
    shutil.copy(SEED, served / SEED.name)
    shutil.copy(
        SEED.parent / "invented" / "001_estimates_followup.yaml", served / "001_estimates_followup.yaml"
    )
    server = Server(url, tmp_path / "server.log", fixtures=served)
    try:
        await server.ready()
        driver = browser
        await asyncio.to_thread(driver.get, f"{server.base}/ui?subject=dprk-troops-to-russia")  # type: ignore[attr-defined]
        _wait(driver, "document.querySelectorAll('#estimates tbody tr[data-source]').length === 3")
        nis = _text(driver, "#estimates tr[data-source='south-korea-nis']")
        assert "about 3,000 soldiers" in nis
        assert "projects about 10,000 soldiers by 2024-12" in nis
        zelenskyy = _text(driver, "#estimates tr[data-source='volodymyr-zelenskyy']")
        assert "more than 1,000 soldiers" in zelenskyy
        timeline = _text(driver, "#timeline")
        assert "early to mid October" in timeline
        assert "(said 2024-10-23)" in timeline
        run = driver.execute_script  # type: ignore[attr-defined]
        # The chart shows this metric's sources only; every figure is placed, those dated by a week included.
        assert run("return document.querySelectorAll('#chart g.series').length") == 3
        drawn = "[...document.querySelectorAll('#chart circle, #chart rect, #chart path')]"
        placed = ".every(e => !String(e.getAttribute('cx') || e.getAttribute('d') || '').includes('NaN'))"
        assert run(f"return {drawn}{placed}")
    finally:
        server.stop()
