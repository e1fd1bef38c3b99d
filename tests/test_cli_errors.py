"""Every ``timeline`` command answers bad input and unusable databases with one line and a documented exit
code, never a traceback, and never prints a password; progress shows on a terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from timeline import console
from timeline.cli import main
from timeline.console import Exit
from timeline.store import eventlog
from timeline.store.database import Database

from .conftest import SEED

SECRET = "s3cret-pw"

BAD_URLS = {
    "unreachable port": (f"postgresql://postgres:{SECRET}@127.0.0.1:1/test", Exit.DATABASE, "cannot reach"),
    "unknown host": (
        f"postgresql://postgres:{SECRET}@no-such-host.invalid/test",
        Exit.DATABASE,
        "cannot reach",
    ),
    "missing database": (
        f"postgresql://postgres:{SECRET}@127.0.0.1:5432/timeline_no_such_database",
        Exit.DATABASE,
        "does not exist",
    ),
    "mysql": (f"mysql://root:{SECRET}@127.0.0.1/test", Exit.DATABASE_URL, "does not support"),
    "not a url": ("not a url", Exit.DATABASE_URL, "is not a URL"),
}


def _commands(tmp: Path) -> dict[str, list[str]]:
    """Each command with arguments that are fine in themselves, so only the database can be wrong."""
    article = tmp / "article.txt"
    article.write_text("date 2024-10-21\nA title\nThe Kremlin denies it.\n")
    export = tmp / "export.jsonl"
    export.write_text("")
    return {
        "serve": ["serve", "--no-fixtures"],
        "project": ["project"],
        "import": ["import", str(SEED)],
        "rebuild": ["rebuild"],
        "verify": ["verify"],
        "export": ["export", "--output", str(tmp / "out.jsonl")],
        "restore": ["restore", str(export)],
        "draft": ["draft", str(article)],
        "tokens create": ["tokens", "create", "alice", "--scope", "write"],
        "tokens list": ["tokens", "list"],
        "tokens revoke": ["tokens", "revoke", "alice"],
        "db upgrade": ["db", "upgrade"],
    }


READ_ONLY = ("project", "rebuild", "verify", "export", "draft", "tokens list", "tokens revoke")


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("serve started a server on a database it could not use")

    monkeypatch.setattr(uvicorn, "run", refuse)


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize("case", list(BAD_URLS))
def test_every_command_refuses_a_bad_database_url_in_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, code, says = BAD_URLS[case]
    for name, argv in _commands(tmp_path).items():
        assert main(["--database-url", url, *argv]) == code, name
        out, err = capsys.readouterr()
        line = _one_line_error(err)
        assert says in line, (name, line)
        assert SECRET not in out + err, name
        if "@" in url:
            assert ":***@" in line, (name, line)


@pytest.mark.usefixtures("no_server")
def test_read_only_commands_refuse_a_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo" / "timeline.db"
    for name, argv in _commands(tmp_path).items():
        if name not in READ_ONLY:
            continue
        assert main(["--database-url", f"sqlite:///{missing}", *argv]) == Exit.DATABASE, name
        line = _one_line_error(capsys.readouterr().err)
        assert f"no database at {missing}" in line
        assert not missing.parent.exists(), name  # neither the file nor its folder was created


async def test_project_refuses_sqlite_whose_server_keeps_the_projections_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'timeline.db'}"
    assert await run("--database-url", url, "db", "upgrade") == 0
    capsys.readouterr()
    assert await run("--database-url", url, "project") != 0
    line = _one_line_error(capsys.readouterr().err)
    assert "project needs PostgreSQL" in line


async def test_project_says_a_ready_fd_that_is_not_open_is_wrong_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``serve`` passes the projection process a descriptor to close once it has tried the leads; a wrong one
    is an error about that option, not about the database (which it had been reported as, at the close)."""
    url = f"sqlite:///{tmp_path / 'timeline.db'}"
    assert await run("--database-url", url, "project", "--ready-fd", "987654") == Exit.USAGE
    line = _one_line_error(capsys.readouterr().err)
    assert "'--ready-fd'" in line
    assert "987654 is not an open file descriptor" in line
    assert not (tmp_path / "timeline.db").exists()


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _head(url: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            return await eventlog.head_position(conn)
    finally:
        await db.dispose()


async def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(SEED.read_bytes().replace(b"id: south-korea-nis", b"id: south-korea\x00nis", 1))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(SEED.read_bytes().replace(b"Tural Heybatov", "Müller".encode("latin-1"), 1))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    not_utf8 = tmp_path / "article.txt"
    not_utf8.write_bytes("date 2024-10-21\nCaf\u00e9 says 12,000 soldiers.\n".encode("latin-1"))
    no_fixtures = tmp_path / "nothing-here"
    no_fixtures.mkdir()
    cases = [
        (["import", str(nul)], f"{nul}:19: not valid YAML: character U+0000"),
        (["import", str(SEED), str(latin1)], f"{latin1}:7: not valid YAML: byte 0x"),
        (["import", str(no_fixtures)], f"{no_fixtures}: no fixtures (*.yaml) in this directory"),
        (["draft", str(empty)], f"{empty}: the file is empty"),
        (["draft", str(not_utf8)], f"{not_utf8}: not UTF-8 text (byte 0xe9 at offset 19)"),
        (["draft", str(SEED), "--date", "2024-02-30"], "--date expects a calendar date YYYY-MM-DD"),
        (["verify", "--since", "\u00b2"], "--since expects POSITION:HASH"),
        (["verify", "--since", "\u00b2:" + "0" * 64], "--since expects POSITION:HASH"),
        (["restore", str(tmp_path / "missing.jsonl")], "cannot read file: No such file or directory"),
        (["export", "--output", str(tmp_path / "no" / "such" / "dir.jsonl")], "cannot write file"),
    ]
    for argv, says in cases:
        assert await run("--database-url", database_url, *argv) == Exit.INPUT, argv
        line = _one_line_error(capsys.readouterr().err)
        assert says in line, (argv, line)
    assert await _head(database_url) == 0  # the good seed beside the bad file was not imported either
    for argv in (["verify", "--nope"], ["no-such-command"], ["serve", "--port", "http"]):
        assert await run("--database-url", database_url, *argv) == Exit.USAGE, argv
        _one_line_error(capsys.readouterr().err)


async def test_import_takes_a_directory(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "000_seed.yaml").write_bytes(SEED.read_bytes())
    (tmp_path / "notes.txt").write_text("not a fixture")
    assert await run("--database-url", database_url, "import", str(tmp_path)) == 0
    assert f"{tmp_path}/000_seed.yaml: 29 events appended" in capsys.readouterr().out
    assert await _head(database_url) == 29


async def test_serve_imports_new_fixtures_says_so_and_hides_the_password(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(kwargs))
    # The test server trusts local connections, so a password in the URL is accepted and ignored.
    url = database_url.replace("postgres@", f"postgres:{SECRET}@")
    (tmp_path / "000_seed.yaml").write_bytes(SEED.read_bytes())
    serve = ("--database-url", url, "serve", "--fixtures", str(tmp_path), "--port", "8123")
    assert await run(*serve) == 0
    out = capsys.readouterr().out
    assert "000_seed.yaml: imported, 29 events (positions 1-29)" in out
    assert f"1 new fixture imported from {tmp_path}/, 0 already recorded" in out
    assert await run(*serve) == 0
    out = capsys.readouterr().out
    assert f"0 new fixtures imported from {tmp_path}/, 1 already recorded" in out
    assert SECRET not in out
    assert f"serving {console.redact(url)} on http://127.0.0.1:8123" in out
    assert len(served) == 2
    assert await _head(database_url) == 29


def test_redact_hides_passwords_in_any_url() -> None:
    assert console.redact("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert console.redact("postgresql+asyncpg://u:p@ss:w@rd@h/d") == "postgresql+asyncpg://u:***@h/d"
    assert console.redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert console.redact("sqlite:///var/timeline.db") == "sqlite:///var/timeline.db"
    assert console.redact("postgresql://u:pw@h:notaport/d") == "postgresql://u:***@h:notaport/d"


async def test_progress_on_a_terminal_and_plain_lines_elsewhere(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_args = ("--database-url", database_url)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TIMELINE_PROGRESS", "1")
    assert await run(*db_args, "import", str(SEED)) == 0
    assert "29/29 events" in capsys.readouterr().err
    exported = tmp_path / "log.jsonl"
    for argv in (["export", "--output", str(exported)], ["verify"], ["rebuild"]):
        assert await run(*db_args, *argv) == 0
        err = capsys.readouterr().err
        assert "29/29 events" in err, argv
        assert "events/s" in err, argv
        assert "s left" in err, argv
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    assert await run("--database-url", restored, "restore", str(exported)) == 0
    size_kb = exported.stat().st_size / 1000
    assert f"{size_kb:.1f}/{size_kb:.1f} kB" in capsys.readouterr().err
    # Not a terminal: a plain line now and then (every call here), no escape codes.
    monkeypatch.setenv("TIMELINE_PROGRESS", "0")
    monkeypatch.setattr(console, "PLAIN_EVERY", 0.0)
    assert await run(*db_args, "verify") == 0
    err = capsys.readouterr().err
    assert "verifying: 29/29 events (" in err
    assert "\x1b" not in err
    # Writing to a file, export says what it wrote when it is done (standard output is free for it).
    monkeypatch.setattr(console, "PLAIN_EVERY", 5.0)
    assert await run(*db_args, "export", "--output", str(exported)) == 0
    assert capsys.readouterr().out == f"exported 29 events to {exported}\n"


def test_version_and_completion(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"timeline {importlib.metadata.version('timeline')}\n"
    for shell, marker in (
        ("bash", "complete -o nosort -F"),
        ("zsh", "compdef"),
        ("fish", "complete --no-files"),
    ):
        assert main(["completion", shell]) == 0
        script = capsys.readouterr().out
        assert marker in script, shell
        assert "_TIMELINE_COMPLETE" in script


async def test_db_upgrade_and_serves_catch_up_of_emptied_views_show_progress_on_a_terminal(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.script import ScriptDirectory

    from timeline.cli import serving
    from timeline.store import migrate

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TIMELINE_PROGRESS", "1")
    monkeypatch.setenv("COLUMNS", "80")  # the narrowest usual terminal: a bar's counts stay on one line
    script = ScriptDirectory.from_config(migrate.alembic_config())
    every = len(list(script.walk_revisions()))
    db_args = ("--database-url", database_url)
    db = Database(database_url)
    try:
        await migrate.downgrade(db, "base")
    finally:
        await db.dispose()
    assert await run(*db_args, "db", "upgrade") == 0
    err = capsys.readouterr().err
    assert "upgrading the schema" in err
    assert f"{every}/{every} migrations" in err
    # At head already: nothing to show but the revision.
    assert await run(*db_args, "db", "upgrade") == 0
    assert "upgrading the schema" not in capsys.readouterr().err
    assert await run(*db_args, "import", str(SEED)) == 0
    capsys.readouterr()
    # 0008_core_views empties the views; going below it and up again leaves them for serve to catch up.
    above = len(list(script.iterate_revisions(script.get_current_head(), "0007_audit_proofs")))
    db = Database(database_url)
    try:
        await migrate.downgrade(db, "0007_audit_proofs")
    finally:
        await db.dispose()
    assert await run(*db_args, "db", "upgrade") == 0
    assert f"{above}/{above} migrations" in capsys.readouterr().err
    await serving._prepare_for_serving(database_url)
    captured = capsys.readouterr()
    assert "bringing the views up to date" in captured.err
    assert "29/29 events" in captured.err
    assert "brought the views up to date with 29 events" in captured.out
    # Up to date: no bar.
    await serving._prepare_for_serving(database_url)
    assert "bringing the views" not in capsys.readouterr().err


async def test_serve_gives_its_workers_time_to_start_on_a_busy_host(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn's own limit (5 s) killed workers still importing the app on a loaded machine, in a loop.
    import uvicorn

    served: list[dict[str, object]] = []

    def fake_run(app: str, *, timeout_worker_healthcheck: int = 5, **kwargs: object) -> None:
        served.append({"timeout_worker_healthcheck": timeout_worker_healthcheck, **kwargs})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert await run("--database-url", database_url, "serve", "--no-fixtures", "--port", "8124") == 0
    [options] = served
    assert options["timeout_worker_healthcheck"] == 60
