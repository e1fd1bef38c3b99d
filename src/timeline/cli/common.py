"""What every command shares: its group's ordering, running its coroutine, and its one-line errors."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from timeline.console import CommandError, database_error

if TYPE_CHECKING:
    from timeline.store.database import Database

T = TypeVar("T")


class Group(click.Group):
    """Lists commands in the order they are defined, the way a reader meets them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def run_command(url: str, command: Callable[[], Coroutine[Any, Any, T]]) -> T:
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


async def disposing(db: Database, work: Coroutine[Any, Any, T]) -> T:
    try:
        return await work
    finally:
        await db.dispose()


class Opened:
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


def output_to(path: Path | None) -> Opened:
    return Opened(path)
