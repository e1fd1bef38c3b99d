"""The ``timeline`` command: serve, import, rebuild, db upgrade, openapi."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from timeline import drafting
from timeline.fixtures import FixtureError
from timeline.importer import ImportResult, LoadedFixture, import_fixtures, read_files
from timeline.store import activity, audit, eventlog, migrate, projector, tokens, views
from timeline.store.database import DEFAULT_URL, Database
from timeline.store.queries import drafting_context
from timeline.store.tokens import SCOPES

# Tests see the progress bar without a terminal.
_FORCE_PROGRESS = os.environ.get("TIMELINE_PROGRESS") == "1"


def _fixtures_dir() -> Path:
    packaged = Path(__file__).resolve().parent / "_fixtures"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "fixtures"


def _url(args: argparse.Namespace) -> str:
    return str(args.database_url or os.environ.get("TIMELINE_DATABASE_URL") or DEFAULT_URL)


def _report(results: Sequence[ImportResult]) -> None:
    for r in results:
        span = f" (positions {r.first_position}-{r.last_position})" if r.appended else ""
        print(f"{r.file}: {r.appended} events appended, {r.unchanged} already recorded{span}")


async def _import(url: str, files: Sequence[Path]) -> list[ImportResult]:
    db = Database(url)
    try:
        await migrate.upgrade(db)
        return await import_fixtures(db, read_files(files), recorded_by="cli")
    finally:
        await db.dispose()


async def _rebuild(url: str) -> int:
    db = Database(url)
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = done / elapsed
        left = (total - done) / rate if rate else 0.0
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        print(
            f"\r[{bar}] {done}/{total} events  {rate:,.0f} events/s  {left:,.0f} s left",
            end="",
            file=sys.stderr,
            flush=True,
        )

    try:
        replayed = await views.rebuild_online(
            db, progress if sys.stderr.isatty() or _FORCE_PROGRESS else None
        )
        if sys.stderr.isatty() or _FORCE_PROGRESS:
            print(file=sys.stderr)
        async with db.write() as conn:
            await projector.reset(conn, activity)
        await projector.catch_up(db, activity)
        return replayed
    finally:
        await db.dispose()


async def _prepare_for_serving(url: str) -> list[ImportResult]:
    db = Database(url)
    try:
        await migrate.upgrade(db)
        async with db.read() as conn:
            head = await eventlog.head_position(conn)
        if head:
            # After a crash or a migration that emptied them, the views resume from their checkpoint.
            caught_up = await views.catch_up(db)
            if caught_up:
                print(f"brought the views up to date with {caught_up} events")
            return []
        # Named as in the repository, so event metadata does not depend on where it is checked out.
        fixtures = [
            LoadedFixture(f"fixtures/{Path(f.name).name}", f.text)
            for f in read_files(sorted(_fixtures_dir().glob("*.yaml")))
        ]
        return await import_fixtures(db, fixtures, recorded_by="serve")
    finally:
        await db.dispose()


async def _upgrade(url: str) -> str | None:
    db = Database(url)
    try:
        await migrate.upgrade(db)
        return await migrate.current_revision(db)
    finally:
        await db.dispose()


def openapi_document() -> str:
    """The OpenAPI document of the app, as committed at openapi/openapi.json."""
    from timeline.api.app import create_app

    app = create_app(Database("sqlite+aiosqlite:///:memory:"))
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timeline", description=__doc__)
    parser.add_argument(
        "--database-url",
        help=f"SQLAlchemy URL (default: $TIMELINE_DATABASE_URL or {DEFAULT_URL})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate, seed an empty database, serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes (PostgreSQL only: they share it and its notifications)",
    )
    imp = commands.add_parser("import", help="import fixture files, all or nothing")
    imp.add_argument("files", nargs="+", type=Path)
    commands.add_parser("rebuild", help="drop the views and rebuild them from the log")
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate the schema to the latest revision")
    tok = commands.add_parser("tokens", help="bearer tokens for the write API")
    tok_commands = tok.add_subparsers(dest="tokens_command", required=True)
    create = tok_commands.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name", help="who holds it; recorded in every event it writes")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        required=True,
        help="write: record claims; admin: also imports, rebuilds; read: only reads (repeatable)",
    )
    revoke = tok_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    tok_commands.add_parser("list", help="list tokens (never their secrets)")
    ver = commands.add_parser("verify", help="recompute the hash chain; exit 2 where it breaks")
    ver.add_argument(
        "--since",
        metavar="POSITION:HASH",
        help="a head noted earlier (GET /audit/head): prove the log only grew",
    )
    exp = commands.add_parser("export", help="write the log as JSON Lines (constant memory)")
    exp.add_argument("--subject", help="only this subject's streams (not restorable on its own)")
    exp.add_argument("--output", type=Path, help="write to this file instead of standard output")
    res = commands.add_parser("restore", help="load a whole-log export into an empty database")
    res.add_argument("file", type=Path)
    dra = commands.add_parser("draft", help="propose a fixture from an article's text, for review")
    dra.add_argument("article", type=Path, help="plain text or HTML")
    dra.add_argument(
        "--date", help="the article's date, YYYY-MM-DD (default: a 'date YYYY-MM-DD' in the text)"
    )
    dra.add_argument("--subject", help="the subject's id, if it is registered already")
    dra.add_argument("--title", help="the article's title (default: its first line)")
    dra.add_argument("--output", type=Path, help="write the draft here instead of standard output")
    api = commands.add_parser("openapi", help="print the OpenAPI document")
    api.add_argument("--output", type=Path, help="write it to this file instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0912 - one branch per command
    """Entry point of the ``timeline`` console script."""
    args = _parser().parse_args(argv)
    url = _url(args)

    try:
        if args.command == "import":
            _report(asyncio.run(_import(url, args.files)))
        elif args.command == "rebuild":
            print(f"rebuilt the views from {asyncio.run(_rebuild(url))} events")
        elif args.command == "db":
            print(f"database at revision {asyncio.run(_upgrade(url))}")
        elif args.command == "verify":
            return asyncio.run(_verify(url, args.since))
        elif args.command == "export":
            asyncio.run(_export(url, args.subject, args.output))
        elif args.command == "restore":
            return asyncio.run(_restore(url, args.file))
        elif args.command == "draft":
            return asyncio.run(_draft(url, args))
        elif args.command == "tokens":
            return asyncio.run(_tokens(url, args))
        elif args.command == "openapi":
            document = openapi_document()
            if args.output:
                args.output.write_text(document)
            else:
                sys.stdout.write(document)
        elif args.command == "serve":
            return _serve(url, args.host, args.port, args.workers)
    except FixtureError as exc:
        print(f"error: {exc}\nnothing was imported", file=sys.stderr)
        return 1
    return 0


async def _verify(url: str, since_text: str | None) -> int:
    since = None
    if since_text is not None:
        position, _, digest = since_text.partition(":")
        if not position.isdigit() or len(digest) != 64:
            print(
                f"error: --since expects POSITION:HASH (from GET /audit/head), got {since_text!r}",
                file=sys.stderr,
            )
            return 1
        since = (int(position), digest)
    db = Database(url)
    try:
        async with db.read() as conn:
            report = await audit.verify(conn, since=since)
    finally:
        await db.dispose()
    if report.first_break is not None:
        print(f"BROKEN at position {report.first_break.position}: {report.first_break.problem}")
        print(f"intact up to position {report.head_position} ({report.checked} events checked)")
        return 2
    print(
        f"ok: {report.checked} events checked from position {report.from_position + 1}; "
        f"head {report.head_position} {report.head_hash}"
    )
    return 0


async def _export(url: str, subject: str | None, output: Path | None) -> None:
    db = Database(url)
    try:
        async with db.read() as conn:
            with output.open("wb") if output else os.fdopen(os.dup(sys.stdout.fileno()), "wb") as out:
                async for line in audit.export(conn, subject_id=subject):
                    out.write(line)
    finally:
        await db.dispose()


async def _restore(url: str, file: Path) -> int:
    db = Database(url)
    try:
        await migrate.upgrade(db)
        try:
            with file.open("rb") as lines:
                async with db.write() as conn:
                    count = await audit.restore(conn, lines)
                    await views.rebuild(conn)
        except audit.RestoreError as exc:
            print(f"error: {file}: {exc}\nnothing was restored", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: {file}: cannot read file: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"restored {count} events from {file}; the hash chain holds and the views are rebuilt")
        return 0
    finally:
        await db.dispose()


async def _draft(url: str, args: argparse.Namespace) -> int:
    try:
        raw = args.article.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: {args.article}: cannot read file: {exc.strerror}", file=sys.stderr)
        return 1
    published, raw = drafting.article_date(raw, args.date)
    if published is None:
        print(f"error: {args.article}: no date found; give --date YYYY-MM-DD", file=sys.stderr)
        return 1
    db = Database(url)
    try:
        await migrate.upgrade(db)
        async with db.read() as conn:
            known_sources, known_claims = await drafting_context(conn)
    finally:
        await db.dispose()
    document = drafting.to_yaml(
        drafting.draft(raw, published=published, title=args.title, subject=args.subject,
                       known_sources=known_sources, known_claims=known_claims)
    )  # fmt: skip
    if args.output:
        args.output.write_text(document, encoding="utf-8")
    else:
        sys.stdout.write(document)
    return 0


async def _tokens(url: str, args: argparse.Namespace) -> int:
    db = Database(url)
    try:
        await migrate.upgrade(db)
        async with db.write() as conn:
            if args.tokens_command == "create":
                try:
                    secret = await tokens.create(conn, args.name, tuple(args.scope))
                except tokens.TokenExists as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                print(secret)
                print(
                    f"token {args.name!r} created with scopes {', '.join(args.scope)}; "
                    "the secret above is shown only once",
                    file=sys.stderr,
                )
            elif args.tokens_command == "revoke":
                if not await tokens.revoke(conn, args.name):
                    print(f"error: no live token named {args.name!r}", file=sys.stderr)
                    return 1
                print(f"token {args.name!r} revoked")
            else:
                for t in await tokens.all_tokens(conn):
                    state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
                    print(f"{t.name}\t{' '.join(t.scopes)}\t{state}\tcreated {t.created_at:%Y-%m-%d %H:%M}")
        return 0
    finally:
        await db.dispose()


def _serve(url: str, host: str, port: int, workers: int) -> int:
    import uvicorn

    from timeline.store.database import normalize_url

    if workers > 1 and normalize_url(url).startswith("sqlite"):
        print(
            "error: --workers needs PostgreSQL; SQLite is served by one process",
            file=sys.stderr,
        )
        return 1
    _report(asyncio.run(_prepare_for_serving(url)))
    print(f"serving {url} on http://{host}:{port} with {workers} worker(s)")
    # Workers import the app by name and read the database URL from the environment.
    os.environ["TIMELINE_DATABASE_URL"] = url
    uvicorn.run("timeline.api.asgi:create", factory=True, host=host, port=port, workers=workers)
    return 0
