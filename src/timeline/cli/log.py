"""Commands on the log itself: verify its hash chain, export it, restore an export."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import click

from timeline.cli.common import disposing, output_to, run_command
from timeline.console import CommandError, Exit, open_database, progress

# Each command imports the store's modules it needs when it runs: `timeline --help` loads none of them.

_HEAD = re.compile(r"([0-9]+):([0-9a-f]{64})", re.ASCII)


@click.command()
@click.option(
    "--since", metavar="POSITION:HASH", help="a head noted earlier (GET /audit/head): prove the log only grew"
)
@click.pass_obj
def verify(url: str, since: str | None) -> int:
    """Check the whole chain and every signed checkpoint; exit 2 where it breaks."""
    from timeline.store import audit

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

    verifier = None if db.signer is None else db.signer.keyring()

    report = run_command(url, lambda: disposing(db, run()))
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


@click.command()
@click.option("--subject", help="only this subject's streams (not restorable on its own)")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write to this file, not standard output",
)
@click.pass_obj
def export(url: str, subject: str | None, output: Path | None) -> None:
    """Write the log as JSON Lines (constant memory)."""
    from timeline.store import backup, eventlog

    db = open_database(url, must_exist=True)

    async def run() -> int:
        async with db.read() as conn:
            total = None if subject else await eventlog.head_position(conn)
            with output_to(output) as out, progress("exporting") as advance:
                written = 0
                async for line in backup.export(conn, subject_id=subject):
                    out.write(line)
                    written += 1
                    if written % 1000 == 0:
                        advance(written, total)
                advance(written, total or written)
        return written

    written = run_command(url, lambda: disposing(db, run()))
    if output is not None:  # standard output holds the export itself otherwise
        click.echo(f"exported {written} events to {output}")


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def restore(url: str, file: Path) -> None:
    """Load a whole-log export into an empty database."""
    from timeline.store import backup, migrate, refold

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
                        count = await backup.restore(conn, _reading(lines, size, advance))
                    await refold.rebuild(conn)
            except backup.RestoreError as exc:
                raise CommandError(f"{file}: {exc}; nothing was restored") from None
            return count

        count = run_command(url, lambda: disposing(db, run()))
    click.echo(f"restored {count} events from {file}; the hash chain holds and the views are rebuilt")


def _reading(lines: IO[bytes], size: int, advance: Callable[[int, int | None], None]) -> Iterator[bytes]:
    read = 0
    for number, line in enumerate(lines, start=1):
        read += len(line)
        if number % 1000 == 0:
            advance(read, size)
        yield line
    advance(read, size)
