"""Commands that fill and serve the store: serve, import, rebuild (through the application layer)."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from timeline import heap, logs, signing
from timeline.cli.common import disposing, run_command
from timeline.cli.keys import DEFAULT_KEY_NAME, write_key
from timeline.console import CommandError, open_database, progress, redact

if TYPE_CHECKING:
    from timeline.app.imports import ImportResult, LoadedFixture
    from timeline.store.database import Database

# The application layer is imported by the commands that run it: `timeline --help` loads none of it.


def _fixtures_dir() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "_fixtures"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "fixtures"


def _report(results: Sequence[ImportResult]) -> None:
    for r in results:
        span = f" (positions {r.first_position}-{r.last_position})" if r.appended else ""
        click.echo(f"{r.file}: {r.appended} events appended, {r.unchanged} already recorded{span}")


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


# How long a worker of `serve --workers N` may take to start before uvicorn gives up on it.
WORKER_STARTUP_SECONDS = 60


@click.command()
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
    "--projections",
    type=click.Choice(("process", "inline")),
    default="process",
    show_default=True,
    envvar="TIMELINE_PROJECTIONS",
    help="on PostgreSQL, keep the asynchronous projections in a process of their own or in the API "
    "processes; SQLite keeps them in its one process  [env: TIMELINE_PROJECTIONS]",
)
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
    projections: str,
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
    results = run_command(url, lambda: disposing(db, _prepare_for_serving_db(db, fixtures, make_key=True)))
    if directory is not None:
        _report_fixtures(directory, results)
    click.echo(f"serving {redact(url)} on http://{host}:{port} with {workers} worker(s)")
    # Workers import the app by name and read the database URL and the log settings from the environment.
    os.environ["TIMELINE_DATABASE_URL"] = url
    os.environ["TIMELINE_LOG_FORMAT"] = log_format
    os.environ["TIMELINE_LOG_LEVEL"] = log_level
    if workers == 1:
        # One worker is this process, which made the import: its /metrics counts those events. Workers of
        # their own did not (and each would count them again), so they start from none.
        from timeline.api.asgi import APPENDED_ON_START

        os.environ[APPENDED_ON_START] = str(sum(r.appended for r in results))
    logs.configure(log_format, log_level)
    if db.signer is not None and not os.environ.get("TIMELINE_SIGNING_KEY"):
        # The key serve chose (perhaps just made), for the workers, by an absolute path.
        os.environ.setdefault("TIMELINE_SIGNING_KEY_FILE", str(signing.DEFAULT_KEY_FILE.resolve()))
    from timeline.api.protocol import ProblemHttpToolsProtocol
    from timeline.cli import projecting

    # Started first, so it takes the projections' lead; the API processes take it over once it is gone.
    projector = projecting.start(url) if projections == "process" and db.dialect == "postgresql" else None

    options: dict[str, Any] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # uvicorn (0.35 on) kills a worker that has not answered 5 s after it was started: on a busy host
        # importing the app takes longer, and `--workers 2` restarted its workers in a loop, never serving.
        options["timeout_worker_healthcheck"] = WORKER_STARTUP_SECONDS
    try:
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
            **options,
        )
    finally:
        # Stopped by a signal, uvicorn raises it again once it has shut down, which ends this process
        # before it gets here: the projection process then stops by itself, seeing its parent gone.
        if projector is not None:
            projecting.stop(projector)


def _new_key_for_serving() -> signing.Signer | None:
    """With no key configured (the variables unset and no var/timeline.key: see ``signing.configured``),
    serve makes var/timeline.key on its first start; every command then finds it."""
    path = signing.DEFAULT_KEY_FILE
    signer = signing.Signer.generate(DEFAULT_KEY_NAME)
    try:
        write_key(path, signer)
    except OSError as exc:
        click.echo(
            f"note: no signing key (set TIMELINE_SIGNING_KEY_FILE), and cannot create {path}: "
            f"{exc.strerror}; checkpoints are not signed",
            err=True,
        )
        return None
    click.echo(f"created the signing key {path}; auditors check checkpoints with its verifier key")
    click.echo(f"  {signer.verifier_text()}")
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
    from timeline.store.database import Database

    db = Database(url)
    return await disposing(db, _prepare_for_serving_db(db, fixtures))


def _load_fixtures(directory: Path) -> list[LoadedFixture]:
    # The project's fixtures are named as in the repository, so event metadata does not depend on where it
    # is checked out.
    from timeline.app.imports import LoadedFixture, read_files

    named = directory.resolve() == _fixtures_dir()
    return [
        LoadedFixture(f"fixtures/{Path(f.name).name}" if named else f.name, f.text)
        for f in read_files(sorted(directory.glob("*.yaml")))
    ]


async def _prepare_for_serving_db(
    db: Database, fixtures: list[LoadedFixture] | None, *, make_key: bool = False
) -> list[ImportResult]:
    from timeline.app import maintenance
    from timeline.app.imports import import_fixtures
    from timeline.store import migrate

    await migrate.upgrade(db)
    if make_key and db.signer is None:
        # Only once the database is there: a failed start leaves no key behind.
        db.signer = _new_key_for_serving()
    with progress("bringing the views up to date", lazy=True) as advance:
        caught_up = await maintenance.catch_up(db, advance)
    if caught_up:
        click.echo(f"brought the views up to date with {caught_up} events")
    if not fixtures:
        return []
    # Importing is idempotent: events recorded already are found and left alone. Frozen as `timeline import`
    # imports (see there); the app made after this freezes the heap for good.
    with progress("importing fixtures") as advance, heap.frozen():
        return await import_fixtures(db, fixtures, recorded_by="serve", progress=advance)


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE|DIR...")
@click.pass_obj
def import_(url: str, paths: tuple[Path, ...]) -> None:
    """Import fixtures (files, or directories of *.yaml), all or nothing."""
    from timeline.app.imports import import_fixtures, read_files
    from timeline.store import migrate

    fixtures = read_files(fixture_files(paths))
    db = open_database(url, must_exist=False)

    async def run() -> list[ImportResult]:
        await migrate.upgrade(db)
        # The import's own objects are all a collection need walk (a tenth of an import's time otherwise).
        with progress("importing") as advance, heap.frozen():
            return await import_fixtures(db, fixtures, recorded_by="cli", progress=advance)

    _report(run_command(url, lambda: disposing(db, run())))


@click.command()
@click.pass_obj
def rebuild(url: str) -> None:
    """Refold the views from the log while they keep serving."""
    from timeline.app import maintenance

    db = open_database(url, must_exist=True)

    async def run() -> int:
        # Frozen as `timeline import` is: the one full collection of a rebuild of 20,000 events walked the
        # whole heap for 29-48 ms (1 ms frozen; bench/results-2026-12-05-fourteenth-fold.txt).
        with progress("rebuilding the views") as advance, heap.frozen():
            return await maintenance.rebuild_all(db, advance)

    click.echo(f"rebuilt the views from {run_command(url, lambda: disposing(db, run()))} events")
