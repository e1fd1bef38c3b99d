"""What the command line shows while it works and when it fails: progress, one-line errors, exit codes, and
database URLs with their passwords hidden. SQLAlchemy and rich are imported only when a command needs them,
so that ``timeline --help`` starts quickly."""

from __future__ import annotations

import contextlib
import enum
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timeline.store.database import Database


class Exit(enum.IntEnum):
    """The exit codes of every ``timeline`` command (documented in the README)."""

    OK = 0
    INPUT = 1  # a file or a value that cannot be used; the message says which and why
    BROKEN = 2  # verify: the hash chain breaks
    DATABASE_URL = 3  # the database URL is not one timeline can use
    DATABASE = 4  # the database cannot be reached, does not exist, or failed
    UNREADABLE = 5  # the log holds an event this version cannot read (corrupted, or from a newer version)
    USAGE = 64  # an unknown command or option, a missing argument
    INTERNAL = 70  # a bug, told in one line (TIMELINE_DEBUG=1 shows the traceback)
    INTERRUPTED = 130


class CommandError(Exception):
    """Stops a command with a one-line message and an exit code."""

    def __init__(self, message: str, code: Exit = Exit.INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# Up to the last "@": a password may hold one itself.
_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, parseable or not."""
    return _PASSWORD.sub(r"\g<scheme>***@", url)


SUPPORTED = ("sqlite+aiosqlite", "postgresql+asyncpg")
_EXPECTED_URL = "expected sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"


def open_database(url: str, *, must_exist: bool) -> Database:
    """A ``Database`` for ``url``, or a ``CommandError`` saying what is wrong with the URL; with
    ``must_exist``, an SQLite file that is not there is refused rather than created (a mistyped path)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from timeline import signing
    from timeline.store.database import Database, normalize_url

    try:
        parsed = make_url(normalize_url(url))
    except (sa.exc.ArgumentError, ValueError):
        raise CommandError(
            f"the database URL {redact(url)!r} is not a URL; {_EXPECTED_URL}", Exit.DATABASE_URL
        ) from None
    if parsed.drivername not in SUPPORTED:
        raise CommandError(
            f"the database URL {redact(url)!r} names {parsed.drivername}, which timeline does not support; "
            f"{_EXPECTED_URL}",
            Exit.DATABASE_URL,
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "")
        if must_exist and not path.is_file():
            raise CommandError(
                f"no database at {path}: this command reads an existing one (check --database-url or "
                "TIMELINE_DATABASE_URL)",
                Exit.DATABASE,
            )
    try:
        signer = signing.configured()
    except signing.BadKey as exc:
        raise CommandError(f"the signing key cannot be used: {exc}") from None
    try:
        return Database(url, signer=signer)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise CommandError(
            f"the database URL {redact(url)!r} cannot be used: {_first_line(exc)}", Exit.DATABASE_URL
        ) from None
    except OSError as exc:  # the SQLite file's folder cannot be created
        raise CommandError(f"cannot use {parsed.database}: {exc.strerror}", Exit.DATABASE) from None


def database_error(exc: BaseException, url: str) -> CommandError | None:
    """The one-line message for an error that came from the database or the way to it, else None."""
    import sqlite3

    import sqlalchemy as sa

    where = redact(url)
    if isinstance(exc, sa.exc.DBAPIError):
        return CommandError(f"database {where}: {_first_line(exc.orig or exc)}", Exit.DATABASE)
    if isinstance(exc, sa.exc.SQLAlchemyError | sqlite3.Error):
        return CommandError(f"database {where}: {_first_line(exc)}", Exit.DATABASE)
    if type(exc).__module__.startswith("asyncpg"):
        return CommandError(f"database {where}: {_first_line(exc)}", Exit.DATABASE)
    if isinstance(exc, OSError):  # refused, unknown host, unreachable, timed out
        reason = exc.strerror or _first_line(exc) or type(exc).__name__
        return CommandError(f"cannot reach the database {where}: {reason}", Exit.DATABASE)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error(message: str) -> None:
    """Print ``error: message`` on standard error, on one line."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


# Progress ------------------------------------------------------------------------------------------------

# Without a terminal (a log, a pipe) a long task prints a plain line this often, and a short one prints none.
PLAIN_EVERY = 5.0


def _shows_bars() -> bool:
    forced = os.environ.get("TIMELINE_PROGRESS")
    if forced is not None:
        return forced == "1"
    return sys.stderr.isatty()


Advance = Callable[[int, int | None], None]


@contextlib.contextmanager
def progress(label: str, unit: str = "events", *, lazy: bool = False) -> Iterator[Advance]:
    """Yield ``advance(done, total)`` for a task's progress: a bar with rate and time left on a terminal,
    an occasional plain line on standard error otherwise. ``unit="bytes"`` shows sizes; ``lazy`` shows
    nothing until the first call (for a step that usually has nothing to do)."""
    if lazy:
        with contextlib.ExitStack() as shown:
            opened: list[Advance] = []

            def first(done: int, total: int | None) -> None:
                if not opened:
                    opened.append(shown.enter_context(progress(label, unit)))
                opened[0](done, total)

            yield first
        return
    if _shows_bars():
        with _bar(label, unit) as advance:
            yield advance
        return
    started = last = time.monotonic()

    def plain(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PLAIN_EVERY:
            return
        last = now
        rate = done / max(now - started, 1e-9)
        of = f"/{total:,}" if total else ""
        left = f", {(total - done) / rate:,.0f} s left" if total and rate else ""
        print(f"{label}: {done:,}{of} {unit} ({rate:,.0f} {unit}/s{left})", file=sys.stderr, flush=True)

    yield plain


@contextlib.contextmanager
def _bar(label: str, unit: str) -> Iterator[Advance]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    from timeline.bars import Count, Left, Rate

    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [Count(unit), Rate(unit)]
    columns.append(Left())
    console = Console(
        stderr=True, force_terminal=True if os.environ.get("TIMELINE_PROGRESS") == "1" else None
    )
    with Progress(*columns, console=console, transient=False) as bars:
        task = bars.add_task(label, total=None)

        def advance(done: int, total: int | None) -> None:
            bars.update(task, completed=done, total=total)

        yield advance
