"""Schema evolution: a log written by earlier code restores, reads, rebuilds, verifies and time-travels, and
a stored schema_version is upcast on every read path (views, time travel, history, SSE, export), on both
databases. The old log is tests/data/log-2026-12-03.jsonl (see tests/data/README.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.api.fanout import Filter, Hub, follow
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.cli import main
from timeline.domain import upcasting
from timeline.domain.events import SCHEMA_VERSION, SubjectRegistered, encode_event
from timeline.store import backup
from timeline.store.database import Database

from .conftest import ROOT, SEED
from .test_live import messages

DATA = ROOT / "tests" / "data"
OLD_LOG = DATA / "log-2026-12-03.jsonl"
FOLLOWUP = DATA / "followup-2026-12-03.yaml"
SUBJECT = "dprk-troops-to-russia"
NIS = "nis-1500-soldiers-sent-for-training"


async def run(*argv: str) -> int:
    # The command runs its own event loop, so it goes on a thread of its own.
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The old log restored (by the command, which also builds the views), and a client of the app."""
    assert await run("--database-url", database_url, "restore", str(OLD_LOG)) == 0
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        yield client


async def get(client: AsyncTestClient, path: str) -> Any:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def figures(estimates: Any) -> dict[tuple[str, str], Any]:
    return {(e["source"]["id"], e["metric"]): e["quantity"].get("value") for e in estimates["estimates"]}


# The registry --------------------------------------------------------------------------------------------


def test_every_version_bump_has_its_upcasters() -> None:
    assert upcasting.missing() == []
    assert all(version >= 1 for version in SCHEMA_VERSION.values())


def test_docs_list_every_event_with_its_version_and_upcasters() -> None:
    """docs/events.md names every event in its table of effects and in its table of versions, which matches
    ``SCHEMA_VERSION`` and the registered upcasters (written "1 -> 2, 2 -> 3", or "none")."""
    text = (ROOT / "docs" / "events.md").read_text()
    effects, _, rest = text.partition("## Versions and upcasters")
    for event_type in SCHEMA_VERSION:
        assert f"`{event_type}`" in effects.split("\n\n|", 1)[1].split("\n\n", 1)[0], event_type
    rows = {}
    for line in rest.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    expected = {}
    for event_type, version in SCHEMA_VERSION.items():
        steps = sorted(v for t, v in upcasting.UPCASTERS if t == event_type)
        expected[event_type] = (str(version), ", ".join(f"{v} -> {v + 1}" for v in steps) or "none")
    assert rows == expected


@pytest.fixture
def subject_v3(monkeypatch: pytest.MonkeyPatch) -> None:
    """A made-up history of SubjectRegistered: v2 renamed ``title`` to ``name``, v3 trimmed the name."""
    monkeypatch.setitem(SCHEMA_VERSION, "SubjectRegistered", 3)
    monkeypatch.setattr(upcasting, "UPCASTERS", {})

    @upcasting.upcaster("SubjectRegistered", 1)
    def renamed(fields: dict[str, Any]) -> dict[str, Any]:
        fields["name"] = fields.pop("title")
        return fields

    @upcasting.upcaster("SubjectRegistered", 2)
    def trimmed(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "name": fields["name"].strip()}


@pytest.mark.usefixtures("subject_v3")
def test_upcasters_chain_from_the_stored_version_to_the_current_one() -> None:
    v1 = b'{"type": "SubjectRegistered", "subject_id": "s", "title": " Troops "}'
    v2 = b'{"type": "SubjectRegistered", "subject_id": "s", "name": " Troops "}'
    current = SubjectRegistered(subject_id="s", name="Troops")
    assert upcasting.decode(v1, "SubjectRegistered", 1) == current
    assert upcasting.decode(v2, "SubjectRegistered", 2) == current
    assert upcasting.decode(encode_event(current), "SubjectRegistered", 3) == current
    with pytest.raises(upcasting.UnknownVersion, match="schema_version 4 was written by another version"):
        upcasting.decode(v2, "SubjectRegistered", 4)
    with pytest.raises(upcasting.UnknownVersion, match="no event type 'SubjectForgotten'"):
        upcasting.decode(v2, "SubjectForgotten", 1)
    with pytest.raises(ValueError, match="already has an upcaster from version 1"):
        upcasting.upcaster("SubjectRegistered", 1)
    with pytest.raises(ValueError, match="an upcaster from version 3 would never run"):
        upcasting.upcaster("SubjectRegistered", 3)
    del upcasting.UPCASTERS["SubjectRegistered", 2]
    assert upcasting.missing() == [("SubjectRegistered", 2)]
    with pytest.raises(
        upcasting.UnknownVersion, match="no upcaster for SubjectRegistered from schema_version 2"
    ):
        upcasting.decode(v1, "SubjectRegistered", 1)


# The log of 2026-12-03 -----------------------------------------------------------------------------------


async def test_the_old_log_restores_reads_rebuilds_verifies_and_time_travels(
    client: AsyncTestClient,  # type: ignore[type-arg]
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run("--database-url", database_url, "verify") == 0
    assert "ok: 40 events checked, whole chain" in capsys.readouterr().out
    exported = tmp_path / "again.jsonl"
    assert await run("--database-url", database_url, "export", "--output", str(exported)) == 0
    assert exported.read_bytes() == OLD_LOG.read_bytes()  # stored bytes are never rewritten

    now = await get(client, f"/subjects/{SUBJECT}/estimates")
    then = await get(client, f"/subjects/{SUBJECT}/estimates?as_of=2024-10-25")
    assert figures(now)[("south-korea-nis", "soldiers-sent")] == 3000  # the revision of 2024-11-04
    assert figures(then)[("south-korea-nis", "soldiers-sent")] == 1500
    history = await get(client, f"/claims/{NIS}/history")
    assert [e["type"] for e in history["events"]] == [
        "ClaimMade", "ClaimDenied", "ClaimRevised", "ClaimConfirmed", "EvidenceAttached", "RecordCorrected",
    ]  # fmt: skip
    assert {e["schema_version"] for e in history["events"]} == {1}
    timeline = await get(client, f"/subjects/{SUBJECT}/timeline?limit=200")
    nis = await get(client, "/sources/south-korea-nis")
    assert nis["source"]["aliases"] == ["NIS"]

    assert await run("--database-url", database_url, "rebuild") == 0
    assert "rebuilt the views from 40 events" in capsys.readouterr().out
    assert await get(client, f"/subjects/{SUBJECT}/estimates") == now
    assert await get(client, f"/subjects/{SUBJECT}/estimates?as_of=2024-10-25") == then
    assert await get(client, f"/subjects/{SUBJECT}/timeline?limit=200") == timeline


async def test_todays_fixtures_import_unchanged_into_the_old_log_and_add_the_aliases_it_dropped(
    client: AsyncTestClient,  # type: ignore[type-arg]
    database_url: str,
) -> None:
    # The code of 2026-12-03 registered ukraine-hur without the fixture's aliases.
    assert (await get(client, "/sources/ukraine-hur"))["source"]["aliases"] == []
    db = Database(database_url)
    try:
        fixtures = [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, FOLLOWUP)]
        seed, followup = await import_fixtures(db, fixtures, recorded_by="test")
        assert (seed.appended, seed.unchanged) == (0, 29)
        assert followup.appended == 1  # a SourceAmended adding the aliases; everything else is recorded
        again = await import_fixtures(db, fixtures, recorded_by="test")
        assert [r.appended for r in again] == [0, 0]
    finally:
        await db.dispose()
    hur = await get(client, "/sources/ukraine-hur")
    assert hur["source"]["aliases"] == ["HUR", "GUR"]
    history = await get(client, "/events?after=40")
    assert [e["type"] for e in history["events"]] == ["SourceAmended"]


# A stored version upcast on every read path --------------------------------------------------------------


@pytest.fixture
def claim_made_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A made-up ClaimMade v2 that renamed the metric "soldiers-sent" to "troops-sent"."""
    monkeypatch.setitem(SCHEMA_VERSION, "ClaimMade", 2)
    monkeypatch.setattr(upcasting, "UPCASTERS", {})

    @upcasting.upcaster("ClaimMade", 1)
    def renamed_metric(fields: dict[str, Any]) -> dict[str, Any]:
        if fields.get("metric") == "soldiers-sent":
            fields["metric"] = "troops-sent"
        return fields


@pytest.mark.usefixtures("claim_made_v2")
async def test_a_stored_version_is_upcast_on_every_read_path(
    client: AsyncTestClient,  # type: ignore[type-arg]
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run("--database-url", database_url, "verify") == 0  # verify decodes every event
    # Views (built by the restore), and time travel (folded from the log).
    for query in ("", "?as_of=2024-10-25", "?known_at=29"):
        estimates = await get(client, f"/subjects/{SUBJECT}/estimates{query}")
        assert {metric for _, metric in figures(estimates)} == {"troops-sent"}, query
    claim = await get(client, f"/claims/{NIS}")
    assert claim["metric"] == "troops-sent"
    # History: the event as this version reads it, at the version it was stored with.
    [made, *_] = (await get(client, f"/claims/{NIS}/history"))["events"]
    assert (made["schema_version"], made["data"]["metric"]) == (1, "troops-sent")
    # The live stream.
    db = Database(database_url)
    hub = Hub(db)
    try:
        stream = messages(follow(hub, 0, Filter(claim=NIS), keepalive=0.1))
        first = await anext(stream)
        await stream.aclose()
        assert first.data is not None
        assert json.loads(first.data)["data"]["metric"] == "troops-sent"
        # An export keeps the stored bytes; a subject's export still finds its claims through the upcaster.
        async with db.read() as conn:
            lines = [msgspec.json.decode(line) async for line in backup.export(conn, subject_id=SUBJECT)]
    finally:
        await hub.close()
        await db.dispose()
    made_lines = [line for line in lines if line["type"] == "ClaimMade"]
    assert made_lines
    assert all(line["schema_version"] == 1 for line in made_lines)
    assert any('"metric":"soldiers-sent"' in line["data"] for line in made_lines)
    # Rebuilding folds the upcast events again.
    assert await run("--database-url", database_url, "rebuild") == 0
    capsys.readouterr()
    estimates = await get(client, f"/subjects/{SUBJECT}/estimates")
    assert {metric for _, metric in figures(estimates)} == {"troops-sent"}


async def test_an_event_from_a_newer_version_is_unreadable_naming_its_position(
    client: AsyncTestClient,  # type: ignore[type-arg]
    database_url: str,
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A newer version of timeline, with SourceAmended at version 2, appends one event.
    with monkeypatch.context() as newer:
        newer.setitem(SCHEMA_VERSION, "SourceAmended", 2)
        newer.setattr(upcasting, "UPCASTERS", {("SourceAmended", 1): lambda fields: fields})
        db = Database(database_url)
        try:
            [_, followup] = await import_fixtures(
                db, [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, FOLLOWUP)], recorded_by="newer"
            )
        finally:
            await db.dispose()
        assert followup.first_position == 41
    # This version refuses to read it, and says where it is.
    response = await client.get("/events?after=40")
    assert response.status_code == 422, response.text
    assert "position 41" in response.json()["detail"]
    assert "SourceAmended schema_version 2 was written by another version" in response.json()["detail"]
    capsys.readouterr()
    assert await run("--database-url", database_url, "rebuild") == 5
    assert "position 41" in capsys.readouterr().err
    # Its export is the stored bytes; restoring it into this version is refused, naming the line.
    exported = tmp_path / "newer.jsonl"
    assert await run("--database-url", database_url, "export", "--output", str(exported)) == 0
    assert await run("--database-url", empty_database_url, "restore", str(exported)) == 1
    err = capsys.readouterr().err
    assert "line 41" in err
    assert "SourceAmended schema_version 2 was written by another version" in err
