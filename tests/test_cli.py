"""The ``timeline`` command on both databases: import, rebuild, db upgrade, and its errors."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from timeline import console, signing
from timeline.cli import main
from timeline.store import eventlog, migrate, queries, tokens
from timeline.store.database import Database

from .conftest import SEED

# A second article's fixture: one new source and a claim on the seed's subject (3 events).
LATER = """\
document: {id: later-article, title: A later article, published_on: "2024-10-25"}
sources:
  - {id: pentagon, name: US Department of Defense, kind: government, country: US}
events:
  - type: claim
    id: pentagon-says-3000
    subject: dprk-troops-to-russia
    source: pentagon
    statement: About 3,000 soldiers were sent.
    metric: soldiers-sent
    quantity: {comparator: about, value: 3000, unit: soldiers}
"""


async def run(*argv: str) -> int:
    # The command runs its own event loop, so it goes on a thread of its own.
    return await asyncio.to_thread(main, list(argv))


async def test_import_then_again_then_rebuild(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("--database-url", database_url, "import", str(SEED)) == 0
    assert "29 events appended, 0 already recorded (positions 1-29)" in capsys.readouterr().out
    assert await run("--database-url", database_url, "import", str(SEED)) == 0
    assert "0 events appended, 29 already recorded" in capsys.readouterr().out
    assert await run("--database-url", database_url, "rebuild") == 0
    assert "rebuilt the views from 29 events" in capsys.readouterr().out
    db = Database(database_url)
    try:
        async with db.read() as conn:
            nis = await queries.claim(conn, "nis-1500-soldiers-sent-for-training")
        assert nis is not None
        assert nis.claim.status == "disputed"
    finally:
        await db.dispose()


async def test_bad_fixture_exits_non_zero_says_where_and_writes_nothing(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_bytes(SEED.read_bytes())
    bad = tmp_path / "bad.yaml"
    bad.write_text("document: {id: x, title: X, published_on: '2024-13-01'}\n")
    # Files import all or nothing: the good one is not recorded either.
    assert await run("--database-url", database_url, "import", str(good), str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1: document.published_on: '2024-13-01' is not a calendar date" in err
    assert "nothing was imported" in err
    assert len(err.splitlines()) == 1
    missing = tmp_path / "missing.yaml"
    assert await run("--database-url", database_url, "import", str(missing)) == 1
    assert f"{missing}: cannot read file" in capsys.readouterr().err
    db = Database(database_url)
    try:
        async with db.read() as conn:
            assert await eventlog.head_position(conn) == 0
    finally:
        await db.dispose()


async def test_db_upgrade_reports_the_revision(
    empty_database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMELINE_DATABASE_URL", empty_database_url)
    assert await run("db", "upgrade") == 0
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert f"database at revision {head}" in capsys.readouterr().out


async def test_serve_imports_the_fixtures_not_yet_recorded(database_url: str, tmp_path: Path) -> None:
    from timeline.cli.serving import _fixtures_dir, _prepare_for_serving

    imported = {r.file: r for r in await _prepare_for_serving(database_url, _fixtures_dir())}
    assert imported["fixtures/000_16630df2654ec508.yaml"].appended == 29
    # Only fixtures written from real articles: invented ones (fixtures/invented/) are never served.
    assert list(imported) == ["fixtures/000_16630df2654ec508.yaml"]
    again = await _prepare_for_serving(database_url, _fixtures_dir())
    assert [(r.appended, r.unchanged) for r in again] == [(0, r.appended) for r in imported.values()]
    # A fixture added to the directory later is imported on the next start, and only it.
    (tmp_path / "000_seed.yaml").write_bytes(SEED.read_bytes())
    (tmp_path / "001_later.yaml").write_text(LATER)
    first, later = await _prepare_for_serving(database_url, tmp_path)
    assert (first.appended, later.appended) == (0, 3)
    assert [r.appended for r in await _prepare_for_serving(database_url, tmp_path)] == [0, 0]


async def test_tokens_create_list_revoke(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db_args = ("--database-url", database_url)
    assert await run(*db_args, "tokens", "create", "alice", "--scope", "write") == 0
    captured = capsys.readouterr()
    secret = captured.out.strip()
    assert secret.startswith("tl_")
    assert "shown only once" in captured.err
    assert await run(*db_args, "tokens", "create", "alice", "--scope", "admin") == 1
    assert "exists already" in capsys.readouterr().err
    assert await run(*db_args, "tokens", "list") == 0
    listed = capsys.readouterr().out
    assert listed.startswith("alice\twrite\tlive")
    assert secret not in listed
    assert await run(*db_args, "tokens", "revoke", "alice") == 0
    assert await run(*db_args, "tokens", "revoke", "alice") == 1
    assert "no live token named 'alice'" in capsys.readouterr().err
    db = Database(database_url)
    try:
        async with db.read() as conn:
            token = await tokens.verify(conn, secret)
        assert token is not None
        assert token.revoked_at is not None
    finally:
        await db.dispose()


async def test_draft_and_sign_head_show_progress(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    article = SEED.parent / "articles" / "000_16630df2654ec508.txt"
    whole = re.compile(r"([0-9][0-9,]+)/\1 characters")  # all of the article's text, read
    db_args = ("--database-url", database_url)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TIMELINE_PROGRESS", "1")  # as on a terminal
    monkeypatch.setenv("COLUMNS", "80")  # the narrowest usual terminal: a bar's counts stay on one line
    monkeypatch.delenv("TIMELINE_SIGNING_KEY_FILE", raising=False)
    monkeypatch.delenv("TIMELINE_SIGNING_KEY", raising=False)
    assert await run(*db_args, "import", str(SEED)) == 0  # no key: nothing signed
    capsys.readouterr()
    assert await run(*db_args, "draft", str(article)) == 0
    err = capsys.readouterr().err
    assert "drafting" in err
    assert "characters/s" in err
    assert whole.search(err), err
    monkeypatch.setenv("TIMELINE_SIGNING_KEY", signing.Signer.generate("example.org/log").private_text())
    assert await run(*db_args, "keys", "sign-head", "--size", "29") == 0
    err = capsys.readouterr().err
    assert "verifying before signing" in err
    assert "29/29 events" in err
    # Not a terminal: plain lines, no escape codes.
    monkeypatch.setenv("TIMELINE_PROGRESS", "0")
    monkeypatch.setattr(console, "PLAIN_EVERY", 0.0)
    assert await run(*db_args, "draft", str(article)) == 0
    err = capsys.readouterr().err
    assert "drafting: " in err
    assert whole.search(err), err
    assert "\x1b" not in err
