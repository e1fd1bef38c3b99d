"""Tamper evidence and archives, on both databases: the hash chain, append-only triggers, verify,
export and restore."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.cli import main
from timeline.store import audit, backup, chain, eventlog
from timeline.store.database import Database

from .conftest import SEED


@pytest.fixture
async def seeded(db: Database) -> AsyncIterator[Database]:
    await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
    return db


async def _tamper(db: Database, *statements: str | tuple[str, dict[str, object]]) -> None:
    """Change the events table behind timeline's back, as someone with database access could."""
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(sa.text("ALTER TABLE events DISABLE TRIGGER USER"))
        else:
            await conn.execute(sa.text("DROP TRIGGER events_no_update"))
            await conn.execute(sa.text("DROP TRIGGER events_no_delete"))
        for statement in statements:
            sql, params = (statement, {}) if isinstance(statement, str) else statement
            await conn.execute(sa.text(sql), params)


async def _verify(db: Database, since: tuple[int, str] | None = None) -> audit.Verification:
    async with db.read() as conn:
        return await audit.verify(conn, since=since)


async def test_chain_holds_and_links_every_event(seeded: Database) -> None:
    report = await _verify(seeded)
    assert report.ok
    assert report.checked == report.head_position == 29
    async with seeded.read() as conn:
        stored = await eventlog.read_all(conn, limit=100)
    assert stored[0].prev_hash == chain.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert report.head_hash == stored[-1].hash
    assert [e.position for e in stored] == list(range(1, 30))  # dense positions


async def test_the_database_refuses_update_and_delete(seeded: Database) -> None:
    for statement in (
        "UPDATE events SET data = '{}' WHERE position = 1",
        "DELETE FROM events WHERE position = 29",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with seeded.engine.begin() as conn:
                await conn.execute(sa.text(statement))
    assert (await _verify(seeded)).ok


async def test_one_altered_byte_is_found_at_its_position(seeded: Database) -> None:
    await _tamper(seeded, "UPDATE events SET data = REPLACE(data, '1500', '1501') WHERE position = 13")
    report = await _verify(seeded)
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.position == 13
    assert "contents do not match its hash" in report.first_break.problem
    assert report.head_position == 12


async def test_a_deleted_row_is_found(seeded: Database) -> None:
    await _tamper(seeded, "DELETE FROM events WHERE position = 5")
    report = await _verify(seeded)
    assert report.first_break is not None
    assert report.first_break.position == 5
    assert "event 5 is missing" in report.first_break.problem


async def test_two_reordered_rows_are_found(seeded: Database) -> None:
    await _tamper(
        seeded,
        "UPDATE events SET position = 1000 WHERE position = 3",
        "UPDATE events SET position = 3 WHERE position = 4",
        "UPDATE events SET position = 4 WHERE position = 1000",
    )
    report = await _verify(seeded)
    assert report.first_break is not None
    assert report.first_break.position == 3
    assert "prev_hash does not match" in report.first_break.problem


async def test_a_consistent_rewrite_is_caught_by_a_remembered_head(seeded: Database) -> None:
    async with seeded.read() as conn:
        remembered = await eventlog.head_link(conn)
        rows = [r async for r in audit.rows(conn)]
    # The attacker changes event 13 and recomputes every hash after it, so the chain itself holds...
    prev = rows[11].hash
    statements: list[tuple[str, dict[str, object]]] = []
    for row in rows[12:]:
        data = row.data.replace('"value":1500', '"value":15000')
        forged = msgspec.structs.replace(row, data=data, prev_hash=prev)
        # Temporary hashes first: the new ones must not collide with old ones still in the unique column.
        statements.append(
            (
                "UPDATE events SET data = :data, prev_hash = :prev, hash = :tmp WHERE position = :p",
                {"data": data, "prev": prev, "tmp": f"x{row.position}", "p": row.position},
            )
        )
        prev = forged.computed_hash()
        statements.append(("UPDATE events SET hash = :h WHERE position = :p", {"h": prev, "p": row.position}))
    await _tamper(seeded, *statements)
    assert (await _verify(seeded)).ok
    # ...but not against the head an auditor noted before.
    report = await _verify(seeded, since=remembered)
    assert report.first_break is not None
    assert report.first_break.position == 29
    assert "rewritten" in report.first_break.problem


async def test_verify_from_a_remembered_head_after_growth(seeded: Database) -> None:
    async with seeded.read() as conn:
        remembered = await eventlog.head_link(conn)
    later = b"document: {id: later, title: Later, published_on: '2024-11'}\n"
    await import_fixtures(seeded, [LoadedFixture("later", later)], recorded_by="test")
    report = await _verify(seeded, since=remembered)
    assert report.ok
    assert report.remembered_head_checked
    assert report.checked == 30  # the whole chain: an edit before the remembered head must not pass
    assert report.head_position == 30


async def _export(db: Database, subject: str | None = None) -> bytes:
    async with db.read() as conn:
        return b"".join([line async for line in backup.export(conn, subject_id=subject)])


async def test_export_restore_export_is_byte_identical(seeded: Database, empty_database_url: str) -> None:
    from timeline.store import migrate

    first = await _export(seeded)
    assert first.count(b"\n") == 29
    target = Database(empty_database_url)
    try:
        await migrate.upgrade(target)
        async with target.write() as conn:
            assert await backup.restore(conn, first.splitlines(keepends=True)) == 29
        assert await _export(target) == first
        assert (await _verify(target)).ok
    finally:
        await target.dispose()


async def test_export_streams_in_batches_and_can_stop_early(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = await _export(seeded)
    for batch in (4, 29):  # seven full batches and a short one; one full batch and an empty one
        monkeypatch.setattr(backup, "EXPORT_BATCH", batch)
        assert await _export(seeded) == whole
    monkeypatch.setattr(backup, "EXPORT_BATCH", 4)
    async with seeded.read() as conn:
        first: list[bytes] = []
        async for line in backup.export(conn):
            first.append(line)
            if len(first) == 6:  # into the second batch
                break
        assert first == whole.splitlines(keepends=True)[:6]
        # The reader stopped early without closing the export; its transaction goes on, even to export again.
        assert await eventlog.head_position(conn) == 29
        assert b"".join([line async for line in backup.export(conn)]) == whole


def _as_sqlalchemy_reads_it(row: audit.StoredRow) -> bytes:
    """An export line built from SQLAlchemy's typed values, as export did before it read the driver's."""
    line = backup.ExportedEvent(
        position=row.position,
        event_id=row.event_id,
        stream_id=row.stream_id,
        stream_version=row.stream_version,
        type=row.type,
        schema_version=row.schema_version,
        valid_from=row.valid_from,
        recorded_at=chain.timestamp(row.recorded_at),
        data=row.data,
        metadata=row.metadata,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
    return msgspec.json.encode(line) + b"\n"


async def test_export_of_unusual_rows_matches_their_typed_values(db: Database) -> None:
    odd = '{"text":"na\u00efve \\"quoted\\" \\\\ \u2028 \U0001f600 \x7f","tab":"\\t"}'
    times = [
        dt.datetime(2024, 10, 22, 8, 0, tzinfo=dt.UTC),  # no microseconds
        dt.datetime(2024, 10, 22, 8, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ]
    rows = [
        {
            "position": position,
            "event_id": uuid.uuid4(),
            "stream_id": f'subject-\u00e9-"{position}"\\\u2028',
            "stream_version": 1,
            "type": "Odd\x01Type",
            "schema_version": 7,
            "data": odd,
            "metadata": '{"recorded_by":"\u00e9diteur"}',
            "valid_from": [None, dt.date(1, 1, 1), dt.date(2024, 2, 29)][position % 3],
            "recorded_at": times[position % 3],
            "prev_hash": "0" * 64,
            "hash": f"{position:064x}",
        }
        for position in range(1, 7)
    ]
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(audit.events), rows)
        if db.dialect == "sqlite":
            # Shapes SQLAlchemy does not write but reads: a hyphenated upper-case UUID, a time without
            # microseconds or with an offset.
            for position, event_id, recorded_at in [
                (7, str(uuid.uuid4()).upper(), "2024-10-22 08:00:00"),
                (8, uuid.uuid4().hex, "2024-10-22T10:00:00.5+02:00"),
            ]:
                await conn.execute(
                    sa.text(
                        "INSERT INTO events VALUES (:p, :e, :s, 1, 'Odd', 1, :d, '{}', NULL, :r, :h, :h2)"
                    ),
                    {"p": position, "e": event_id, "s": f"odd-{position}", "d": odd, "r": recorded_at,
                     "h": "0" * 64, "h2": f"{position:064x}"},
                )  # fmt: skip
    async with db.read() as conn:
        expected = b"".join([_as_sqlalchemy_reads_it(row) async for row in audit.rows(conn)])
    assert expected.count(b"\n") == (8 if db.dialect == "sqlite" else 6)
    assert await _export(db) == expected


async def test_restore_refuses_a_time_not_in_export_form(seeded: Database, empty_database_url: str) -> None:
    from timeline.store import migrate

    lines = (await _export(seeded)).splitlines(keepends=True)
    target = Database(empty_database_url)
    try:
        await migrate.upgrade(target)
        for old, new in [("Z", "+00:00"), ("T", " "), ("Z", "+01:00Z")]:
            altered = json.loads(lines[4])
            altered["recorded_at"] = altered["recorded_at"].replace(old, new)
            changed = [*lines[:4], json.dumps(altered).encode() + b"\n", *lines[5:]]
            with pytest.raises(backup.RestoreError, match="line 5: not an exported event: recorded_at"):
                async with target.write() as conn:
                    await backup.restore(conn, changed)
        async with target.read() as conn:
            assert await eventlog.head_position(conn) == 0
    finally:
        await target.dispose()


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_cli_round_trip_and_refusals(
    seeded: Database,
    database_url: str,
    empty_database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exported = tmp_path / "log.jsonl"
    assert await _cli("--database-url", database_url, "export", "--output", str(exported)) == 0
    original = exported.read_bytes()
    lines = original.splitlines(keepends=True)

    def variant(name: str, content: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content)
        return str(path)

    altered = variant(
        "altered.jsonl", b"".join([*lines[:12], lines[12].replace(b"1500", b"1501"), *lines[13:]])
    )
    truncated = variant("truncated.jsonl", original[:-40])
    reordered = variant("reordered.jsonl", b"".join([*lines[:3], lines[4], lines[3], *lines[5:]]))
    for path, message in [
        (altered, "line 13: event 13 does not match the hash chain"),
        (truncated, "line 29: the line is cut off"),
        (reordered, "line 4: expected event 4, found 5"),
    ]:
        assert await _cli("--database-url", empty_database_url, "restore", path) == 1
        err = capsys.readouterr().err
        assert message in err, err
        assert "nothing was restored" in err
        target = Database(empty_database_url)
        try:
            async with target.read() as conn:
                assert await eventlog.head_position(conn) == 0
        finally:
            await target.dispose()

    assert await _cli("--database-url", empty_database_url, "restore", str(exported)) == 0
    assert "restored 29 events" in capsys.readouterr().out
    again = tmp_path / "again.jsonl"
    assert await _cli("--database-url", empty_database_url, "export", "--output", str(again)) == 0
    assert again.read_bytes() == original
    assert await _cli("--database-url", empty_database_url, "restore", str(exported)) == 1
    assert "already has events" in capsys.readouterr().err
    assert await _cli("--database-url", empty_database_url, "verify") == 0
    assert "ok: 29 events checked" in capsys.readouterr().out


async def test_subject_export_holds_only_its_streams(seeded: Database) -> None:
    lines = (await _export(seeded, "dprk-russia-military-cooperation")).splitlines()
    streams = {line.split(b'"stream_id":"')[1].split(b'"')[0].decode() for line in lines}
    assert streams == {
        "subject-dprk-russia-military-cooperation",
        "claim-zelenskyy-warns-of-major-war",
        "claim-experts-relationship-largely-transactional",
        "claim-france-cooperation-very-troubling",
        "claim-us-rok-japan-sanctions-task-force",
    }


async def test_cli_verify_reports_the_break(
    seeded: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _tamper(
        seeded, "UPDATE events SET metadata = REPLACE(metadata, 'test', 'mallory') WHERE position = 20"
    )
    assert await _cli("--database-url", database_url, "verify") == 2
    out = capsys.readouterr().out
    assert "BROKEN at position 20: its contents do not match its hash" in out


async def test_http_head_verify_and_ndjson(seeded: Database, database_url: str) -> None:
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        head = (await client.get("/audit/head")).json()
        assert head["position"] == 29
        verified = (await client.get("/audit/verify")).json()
        assert verified["ok"] is True
        assert verified["head_hash"] == head["hash"]
        since = await client.get("/audit/verify", params={"since_position": 29, "since_hash": head["hash"]})
        assert since.json()["ok"] is True
        assert since.json()["checked"] == 29  # the whole chain, and the remembered head in it
        assert since.json()["remembered_head_checked"] is True
        wrong = await client.get("/audit/verify", params={"since_position": 29, "since_hash": "0" * 64})
        assert wrong.json()["first_break"]["position"] == 29
        bad = await client.get("/audit/verify", params={"since_position": 29})
        assert bad.status_code == 400
        streamed = await client.get(
            "/events", params={"after": 20}, headers={"Accept": "application/x-ndjson"}
        )
        assert streamed.headers["content-type"].startswith("application/x-ndjson")
        lines = streamed.text.splitlines()
        assert len(lines) == 9
        assert '"position":21' in lines[0]
        assert '"hash":' in lines[0]
        too_many = await client.get("/events", params={"limit": 5000})
        assert too_many.status_code == 400


def _documented_checker(tmp_path: Path) -> Path:
    """The verification program printed in docs/audit.md, exactly as an auditor would copy it."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "check_log.py"
    script.write_text(code)
    return script


def _run(checker: Path, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(checker), str(log)], capture_output=True, text=True, check=False
    )


async def test_the_documented_recipe_verifies_an_http_export(
    seeded: Database, database_url: str, tmp_path: Path
) -> None:
    async with AsyncTestClient(app=create_app(Database(database_url))) as client:
        exported = (await client.get("/audit/export")).content
    log = tmp_path / "log.jsonl"
    log.write_bytes(exported)
    checker = _documented_checker(tmp_path)
    ok = await asyncio.to_thread(_run, checker, log)
    assert ok.returncode == 0, ok.stderr
    async with seeded.read() as conn:
        head = await eventlog.head_link(conn)
    assert ok.stdout.strip() == f"ok: 29 events, head {head[1]}"
    lines = exported.decode().splitlines(keepends=True)
    altered = json.loads(lines[19])
    altered["data"] = altered["data"].replace('"', ' "', 1)  # one more byte in the stored JSON
    log.write_text("".join([*lines[:19], json.dumps(altered) + "\n", *lines[20:]]))
    broken = await asyncio.to_thread(_run, checker, log)
    assert broken.returncode == 1
    assert "broken at position 20 (line 20)" in broken.stderr
