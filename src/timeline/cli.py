"""The ``timeline`` command: serve, import, rebuild, verify, export, restore, draft, tokens, db, openapi.

Each command parses its arguments, calls the library and prints the outcome; errors are one line on standard
error with an exit code from ``console.Exit``, never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from timeline import drafting, logs, signing
from timeline.console import CommandError, Exit, database_error, error, open_database, progress, redact
from timeline.fixtures import FixtureError
from timeline.importer import ImportResult, LoadedFixture, import_fixtures, read_files
from timeline.store import activity, audit, eventlog, migrate, projector, tokens, tree, views
from timeline.store.database import DEFAULT_URL, Database
from timeline.store.queries import drafting_context
from timeline.store.tokens import SCOPES

T = TypeVar("T")


def _fixtures_dir() -> Path:
    packaged = Path(__file__).resolve().parent / "_fixtures"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "fixtures"


def _report(results: Sequence[ImportResult]) -> None:
    for r in results:
        span = f" (positions {r.first_position}-{r.last_position})" if r.appended else ""
        click.echo(f"{r.file}: {r.appended} events appended, {r.unchanged} already recorded{span}")


def _run(url: str, command: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine, turning any error of the database or the way to it into one line."""
    try:
        return asyncio.run(command())
    except CommandError:
        raise
    except Exception as exc:
        problem = database_error(exc, url)
        if problem is None:
            raise
        raise problem from None


async def _disposing(db: Database, work: Coroutine[Any, Any, T]) -> T:
    try:
        return await work
    finally:
        await db.dispose()


def fixture_files(paths: Sequence[Path]) -> list[Path]:
    """The fixture files named, a directory standing for its ``*.yaml`` and ``*.yml`` files in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise CommandError(f"{path}: no fixtures (*.yaml) in this directory")
            files += found
        else:
            files.append(path)
    return files


# Commands ------------------------------------------------------------------------------------------------


class _Group(click.Group):
    """Lists commands in the order they are defined, the way a reader meets them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def _version() -> str:
    try:
        return importlib.metadata.version("timeline")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--database-url",
    envvar="TIMELINE_DATABASE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="sqlite:///PATH or postgresql://USER@HOST/DB (or $TIMELINE_DATABASE_URL)",
)
@click.version_option(_version(), "--version", prog_name="timeline", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, database_url: str) -> None:
    """An event-sourced ledger of attributed claims, served over HTTP."""
    ctx.obj = database_url


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes (PostgreSQL only: they share it and its notifications)",
)
@click.option(
    "--fixtures",
    "fixtures_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="import the fixtures in this directory not yet recorded  [default: the project's fixtures/]",
)
@click.option("--no-fixtures", is_flag=True, help="import no fixtures on start")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    envvar="TIMELINE_LOG_FORMAT",
    help="log lines (access and application alike) as JSON or as text  [env: TIMELINE_LOG_FORMAT]",
)
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="TIMELINE_LOG_LEVEL",
    help="the least severe level logged  [env: TIMELINE_LOG_LEVEL]",
)
@click.pass_obj
def serve(
    url: str,
    host: str,
    port: int,
    workers: int,
    fixtures_dir: Path | None,
    no_fixtures: bool,
    log_format: logs.Format,
    log_level: str,
) -> None:
    """Migrate, import the fixtures not yet recorded, serve HTTP."""
    import uvicorn

    db = open_database(url, must_exist=False)
    if workers > 1 and db.dialect == "sqlite":
        raise CommandError("--workers needs PostgreSQL; SQLite is served by one process")
    directory = None if no_fixtures else fixtures_dir or _fixtures_dir()
    fixtures = None if directory is None else _load_fixtures(directory)
    results = _run(url, lambda: _disposing(db, _prepare_for_serving_db(db, fixtures, make_key=True)))
    if directory is not None:
        _report_fixtures(directory, results)
    click.echo(f"serving {redact(url)} on http://{host}:{port} with {workers} worker(s)")
    # Workers import the app by name and read the database URL and the log settings from the environment.
    os.environ["TIMELINE_DATABASE_URL"] = url
    os.environ["TIMELINE_LOG_FORMAT"] = log_format
    os.environ["TIMELINE_LOG_LEVEL"] = log_level
    logs.configure(log_format, log_level)
    if db.signer is not None and not os.environ.get("TIMELINE_SIGNING_KEY"):
        # The key serve chose (perhaps just made), for the workers, by an absolute path.
        os.environ.setdefault("TIMELINE_SIGNING_KEY_FILE", str(DEFAULT_KEY.resolve()))
    from timeline.api.protocol import ProblemHttpToolsProtocol

    uvicorn.run(
        "timeline.api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # timeline.logs formats uvicorn's lines too; the app writes the access lines (with request ids).
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        http=ProblemHttpToolsProtocol,
    )


DEFAULT_KEY = Path("var/timeline.key")
DEFAULT_KEY_NAME = "timeline.local/log"


def _signing_key_for_serving() -> signing.Signer | None:
    """Without TIMELINE_SIGNING_KEY(_FILE), serve signs with var/timeline.key, made on the first start."""
    if os.environ.get("TIMELINE_SIGNING_KEY") or os.environ.get("TIMELINE_SIGNING_KEY_FILE"):
        return signing.from_env()
    if not DEFAULT_KEY.exists():
        try:
            signer = _write_key(DEFAULT_KEY, DEFAULT_KEY_NAME)
        except OSError as exc:
            click.echo(
                f"note: no signing key (set TIMELINE_SIGNING_KEY_FILE), and cannot create {DEFAULT_KEY}: "
                f"{exc.strerror}; checkpoints are not signed",
                err=True,
            )
            return None
        click.echo(f"created the signing key {DEFAULT_KEY}; auditors check checkpoints with its verifier key")
        click.echo(f"  {signer.verifier_text()}")
        return signer
    try:
        return signing.from_env({"TIMELINE_SIGNING_KEY_FILE": str(DEFAULT_KEY)})
    except signing.BadKey as exc:
        raise CommandError(f"the signing key cannot be used: {exc}") from None


def _write_key(path: Path, name: str) -> signing.Signer:
    signer = signing.Signer.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created readable by its owner alone, and never over an existing key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(signer.private_text() + "\n")
    return signer


def _report_fixtures(directory: Path, results: Sequence[ImportResult]) -> None:
    new = [r for r in results if r.appended]
    for r in new:
        click.echo(
            f"{r.file}: imported, {r.appended} events (positions {r.first_position}-{r.last_position})"
        )
    recorded = len(results) - len(new)
    try:
        shown = directory.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = directory
    fixtures = "fixture" if len(new) == 1 else "fixtures"
    click.echo(f"{len(new)} new {fixtures} imported from {shown}/, {recorded} already recorded")


async def _prepare_for_serving(url: str, fixtures_dir: Path | None = None) -> list[ImportResult]:
    """Migrate, bring the views up to date and import the fixtures in ``fixtures_dir`` not yet recorded."""
    fixtures = None if fixtures_dir is None else await asyncio.to_thread(_load_fixtures, fixtures_dir)
    db = Database(url)
    return await _disposing(db, _prepare_for_serving_db(db, fixtures))


def _load_fixtures(directory: Path) -> list[LoadedFixture]:
    # The project's fixtures are named as in the repository, so event metadata does not depend on where it
    # is checked out.
    named = directory.resolve() == _fixtures_dir()
    return [
        LoadedFixture(f"fixtures/{Path(f.name).name}" if named else f.name, f.text)
        for f in read_files(sorted(directory.glob("*.yaml")))
    ]


async def _prepare_for_serving_db(
    db: Database, fixtures: list[LoadedFixture] | None, *, make_key: bool = False
) -> list[ImportResult]:
    await migrate.upgrade(db)
    if make_key and db.signer is None:
        # Only once the database is there: a failed start leaves no key behind.
        db.signer = _signing_key_for_serving()
    async with db.read() as conn:
        head = await eventlog.head_position(conn)
    if head:
        # After a crash or a migration that emptied them, the views resume from their checkpoint.
        caught_up = await views.catch_up(db)
        if caught_up:
            click.echo(f"brought the views up to date with {caught_up} events")
    if db.signer is not None:
        # Events recorded without a key (or before migration 0007) get a signed checkpoint now.
        async with db.write() as conn:
            await tree.commit_checkpoint(conn, db.signer)
    if not fixtures:
        return []
    # Importing is idempotent: events recorded already are found and left alone.
    with progress("importing fixtures") as advance:
        return await import_fixtures(db, fixtures, recorded_by="serve", progress=advance)


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE|DIR...")
@click.pass_obj
def import_(url: str, paths: tuple[Path, ...]) -> None:
    """Import fixtures (files, or directories of *.yaml), all or nothing."""
    fixtures = read_files(fixture_files(paths))
    db = open_database(url, must_exist=False)

    async def run() -> list[ImportResult]:
        await migrate.upgrade(db)
        with progress("importing") as advance:
            return await import_fixtures(db, fixtures, recorded_by="cli", progress=advance)

    _report(_run(url, lambda: _disposing(db, run())))


@cli.command()
@click.pass_obj
def rebuild(url: str) -> None:
    """Refold the views from the log while they keep serving."""
    db = open_database(url, must_exist=True)

    async def run() -> int:
        with progress("rebuilding the views") as advance:
            replayed = await views.rebuild_online(db, advance)
        async with db.write() as conn:
            await projector.reset(conn, activity)
        await projector.catch_up(db, activity)
        return replayed

    click.echo(f"rebuilt the views from {_run(url, lambda: _disposing(db, run()))} events")


_HEAD = re.compile(r"([0-9]+):([0-9a-f]{64})", re.ASCII)


@cli.command()
@click.option(
    "--since", metavar="POSITION:HASH", help="a head noted earlier (GET /audit/head): prove the log only grew"
)
@click.pass_obj
def verify(url: str, since: str | None) -> int:
    """Check the whole chain and every signed checkpoint; exit 2 where it breaks."""
    remembered = None
    if since is not None:
        found = _HEAD.fullmatch(since)
        if found is None:
            raise CommandError(f"--since expects POSITION:HASH (from GET /audit/head), got {since!r}")
        remembered = (int(found.group(1)), found.group(2))
    db = open_database(url, must_exist=True)

    async def run() -> audit.Verification:
        async with db.read() as conn:
            with progress("verifying") as advance:
                return await audit.verify(conn, since=remembered, verifier=verifier, progress=advance)

    verifier = None if db.signer is None else db.signer.verifier_text()
    report = _run(url, lambda: _disposing(db, run()))
    if report.first_break is not None:
        click.echo(f"BROKEN at position {report.first_break.position}: {report.first_break.problem}")
        click.echo(f"intact up to position {report.head_position} ({report.checked} events checked)")
        return Exit.BROKEN
    click.echo(
        f"ok: {report.checked} events checked, whole chain; head {report.head_position} {report.head_hash}"
    )
    signatures = (
        "and signatures" if report.signatures_checked else "(signatures not checked: no key configured)"
    )
    click.echo(f"ok: {report.checkpoints_checked} signed checkpoints, their roots recomputed {signatures}")
    if remembered is not None:
        click.echo(
            f"ok: event {remembered[0]} still has the hash you remembered, and the log only grew since"
        )
    if report.unsigned:
        click.echo(
            f"UNSIGNED: events {report.signed_size + 1}-{report.head_position} are covered by no signed "
            "checkpoint" + (": they were appended without the key" if report.checkpoints_checked else "")
        )
        if report.checkpoints_checked:
            return Exit.BROKEN
    return Exit.OK


@cli.command()
@click.option("--subject", help="only this subject's streams (not restorable on its own)")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write to this file, not standard output",
)
@click.pass_obj
def export(url: str, subject: str | None, output: Path | None) -> None:
    """Write the log as JSON Lines (constant memory)."""
    db = open_database(url, must_exist=True)

    async def run() -> None:
        async with db.read() as conn:
            total = None if subject else await eventlog.head_position(conn)
            with _output(output) as out, progress("exporting") as advance:
                written = 0
                async for line in audit.export(conn, subject_id=subject):
                    out.write(line)
                    written += 1
                    if written % 1000 == 0:
                        advance(written, total)
                advance(written, total or written)

    _run(url, lambda: _disposing(db, run()))


class _Opened:
    """Opens ``--output`` (or a duplicate of standard output) with a one-line error when it cannot."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        try:
            self.file = self.path.open("wb") if self.path else os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        except OSError as exc:
            raise CommandError(f"{self.path}: cannot write file: {exc.strerror}") from None
        return self.file

    def __exit__(self, *_exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _output(path: Path | None) -> _Opened:
    return _Opened(path)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def restore(url: str, file: Path) -> None:
    """Load a whole-log export into an empty database."""
    try:
        lines = file.open("rb")
    except OSError as exc:
        raise CommandError(f"{file}: cannot read file: {exc.strerror}") from None
    with lines:
        size = os.fstat(lines.fileno()).st_size
        db = open_database(url, must_exist=False)

        async def run() -> int:
            await migrate.upgrade(db)
            try:
                async with db.write() as conn:
                    with progress("restoring", unit="bytes") as advance:
                        count = await audit.restore(conn, _reading(lines, size, advance))
                    await views.rebuild(conn)
            except audit.RestoreError as exc:
                raise CommandError(f"{file}: {exc}; nothing was restored") from None
            return count

        count = _run(url, lambda: _disposing(db, run()))
    click.echo(f"restored {count} events from {file}; the hash chain holds and the views are rebuilt")


def _reading(lines: IO[bytes], size: int, advance: Callable[[int, int | None], None]) -> Iterator[bytes]:
    read = 0
    for number, line in enumerate(lines, start=1):
        read += len(line)
        if number % 1000 == 0:
            advance(read, size)
        yield line
    advance(read, size)


@cli.command()
@click.argument("article", type=click.Path(path_type=Path))
@click.option("--date", help="the article's date, YYYY-MM-DD (default: a 'date YYYY-MM-DD' in the text)")
@click.option("--subject", help="the subject's id, if it is registered already")
@click.option("--title", help="the article's title (default: its first line)")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the draft here instead of standard output",
)
@click.pass_obj
def draft(
    url: str, article: Path, date: str | None, subject: str | None, title: str | None, output: Path | None
) -> None:
    """Propose a fixture from an article (text or HTML), for review."""
    raw = _article_text(article)
    try:
        published, raw = drafting.article_date(raw, date)
    except ValueError:
        raise CommandError(f"--date expects a calendar date YYYY-MM-DD, got {date!r}") from None
    if published is None:
        raise CommandError(f"{article}: no date found; give --date YYYY-MM-DD")
    db = open_database(url, must_exist=True)

    async def context() -> tuple[Any, Any]:
        async with db.read() as conn:
            return await drafting_context(conn)

    known_sources, known_claims = _run(url, lambda: _disposing(db, context()))
    fixture = drafting.draft(raw, published=published, title=title, subject=subject,
                             known_sources=known_sources, known_claims=known_claims)  # fmt: skip
    for note in fixture.notes:  # also in the draft's header; said here so an empty draft is not a surprise
        click.echo(f"{article}: {note}", err=True)
    document = drafting.to_yaml(fixture)
    if output:
        try:
            output.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{output}: cannot write file: {exc.strerror}") from None
    else:
        click.echo(document, nl=False)


def _article_text(article: Path) -> str:
    try:
        data = article.read_bytes()
    except OSError as exc:
        raise CommandError(f"{article}: cannot read file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{article}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the article as UTF-8"
        ) from None
    if not text.strip():
        raise CommandError(f"{article}: the file is empty; expected the article's text")
    return text


@cli.group("tokens", cls=_Group)
def tokens_group() -> None:
    """Bearer tokens for the write API."""


@tokens_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="write: record claims; admin: also imports, rebuilds; read: only reads (repeatable)",
)
@click.pass_obj
def tokens_create(url: str, name: str, scopes: tuple[tokens.Scope, ...]) -> None:
    """Create a token and print its secret once; NAME is recorded in every event it writes."""
    db = open_database(url, must_exist=False)

    async def run() -> str:
        await migrate.upgrade(db)
        async with db.write() as conn:
            try:
                return await tokens.create(conn, name, scopes)
            except tokens.TokenExists as exc:
                raise CommandError(str(exc)) from None

    secret = _run(url, lambda: _disposing(db, run()))
    click.echo(secret)
    click.echo(
        f"token {name!r} created with scopes {', '.join(scopes)}; the secret above is shown only once",
        err=True,
    )


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_obj
def tokens_revoke(url: str, name: str) -> None:
    """Revoke a token by name."""
    db = open_database(url, must_exist=True)

    async def run() -> bool:
        await migrate.upgrade(db)
        async with db.write() as conn:
            return await tokens.revoke(conn, name)

    if not _run(url, lambda: _disposing(db, run())):
        raise CommandError(f"no live token named {name!r}")
    click.echo(f"token {name!r} revoked")


@tokens_group.command("list")
@click.pass_obj
def tokens_list(url: str) -> None:
    """List tokens (never their secrets)."""
    db = open_database(url, must_exist=True)

    async def run() -> list[tokens.Token]:
        async with db.read() as conn:
            return list(await tokens.all_tokens(conn))

    for t in _run(url, lambda: _disposing(db, run())):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
        click.echo(f"{t.name}\t{' '.join(t.scopes)}\t{state}\tcreated {t.created_at:%Y-%m-%d %H:%M}")


@cli.group("keys", cls=_Group)
def keys_group() -> None:
    """The Ed25519 key that signs checkpoints (kept outside the database)."""


@keys_group.command("create")
@click.option(
    "--name", default=DEFAULT_KEY_NAME, show_default=True, help="the log's origin (no spaces or '+')"
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_KEY, show_default=True
)
def keys_create(name: str, output: Path) -> None:
    """Create a signing key in a new file (readable by you alone) and print its verifier key."""
    if output.exists():
        raise CommandError(f"{output} exists: a signing key is never overwritten")
    try:
        signer = _write_key(output, name)
    except signing.BadKey as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{output}: cannot write the key: {exc.strerror}") from None
    click.echo(signer.verifier_text())
    click.echo(
        f"signing key written to {output}; serve with TIMELINE_SIGNING_KEY_FILE={output} (the default "
        "when it is var/timeline.key) and give auditors the verifier key above",
        err=True,
    )


@keys_group.command("show")
def keys_show() -> None:
    """Print the verifier key of the configured signing key (TIMELINE_SIGNING_KEY(_FILE), else
    var/timeline.key)."""
    try:
        signer = signing.from_env()
        if signer is None and DEFAULT_KEY.exists():
            signer = signing.from_env({"TIMELINE_SIGNING_KEY_FILE": str(DEFAULT_KEY)})
    except signing.BadKey as exc:
        raise CommandError(str(exc)) from None
    if signer is None:
        raise CommandError("no signing key configured (TIMELINE_SIGNING_KEY_FILE) and no var/timeline.key")
    click.echo(signer.verifier_text())


@cli.group("db", cls=_Group)
def db_group() -> None:
    """The database schema."""


@db_group.command()
@click.pass_obj
def upgrade(url: str) -> None:
    """Migrate the schema to the latest revision."""
    database = open_database(url, must_exist=False)

    async def run() -> str | None:
        await migrate.upgrade(database)
        return await migrate.current_revision(database)

    click.echo(f"database at revision {_run(url, lambda: _disposing(database, run()))}")


def openapi_document() -> str:
    """The OpenAPI document of the app, as committed at openapi/openapi.json."""
    from timeline.api.app import create_app

    app = create_app(Database("sqlite+aiosqlite:///:memory:"))
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


@cli.command()
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="write it to this file instead"
)
def openapi(output: Path | None) -> None:
    """Print the OpenAPI document."""
    document = openapi_document()
    if output:
        try:
            output.write_text(document)
        except OSError as exc:
            raise CommandError(f"{output}: cannot write file: {exc.strerror}") from None
    else:
        sys.stdout.write(document)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: eval "$(timeline completion bash)"."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # every choice has one
    click.echo(complete(cli, {}, "timeline", "_TIMELINE_COMPLETE").source())


# Entry point ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``timeline`` console script: run a command and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = _url_of(args)
    try:
        result = cli.main(args=args, prog_name="timeline", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "timeline"
        error(f"{exc.format_message()} (see {command} --help)")
        return Exit.USAGE
    except (click.Abort, KeyboardInterrupt):
        error("interrupted")
        return Exit.INTERRUPTED
    except click.ClickException as exc:
        error(exc.format_message())
        return Exit.INPUT
    except FixtureError as exc:
        error(f"{exc}; nothing was imported")
        return Exit.INPUT
    except CommandError as exc:
        error(exc.message)
        return exc.code
    except eventlog.UnreadableEvent as exc:
        error(str(exc))
        return Exit.UNREADABLE
    except Exception as exc:
        problem = database_error(exc, url)
        if problem is not None:
            error(problem.message)
            return problem.code
        if os.environ.get("TIMELINE_DEBUG") == "1":
            raise
        error(f"internal error: {type(exc).__name__}: {exc} (TIMELINE_DEBUG=1 shows where)")
        return Exit.INTERNAL
    return int(result) if isinstance(result, int) else Exit.OK


def _url_of(args: Sequence[str]) -> str:
    # For messages about errors raised before a command has its URL (which click parses).
    for i, arg in enumerate(args):
        if arg == "--database-url" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--database-url="):
            return arg.partition("=")[2]
    return os.environ.get("TIMELINE_DATABASE_URL") or DEFAULT_URL
