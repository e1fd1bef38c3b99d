"""The asynchronous projections in a process of their own: `timeline project`, and the one `serve` starts.

A server's one process was busy all the time under 32 HTTP writers, and a tenth of that time went to the
asynchronous projections (sources' activity, time travel's snapshots) reading back and folding what it had
just written, while the machine's other core idled; in a process of their own they run on that core
(bench/results-2026-12-04-projection-process.txt). Their lead is the same advisory lock as before, so an
API process still takes it over when this process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import click

from timeline import logs
from timeline.cli.common import disposing, run_command
from timeline.console import CommandError, open_database

if TYPE_CHECKING:
    from timeline.store.database import Database

# How often a projection process started by `serve` looks whether `serve` is still there.
PARENT_CHECK_SECONDS = 0.5

# Seconds `serve` waits for its projection process to try for the leads before starting the API anyway.
READY_SECONDS = 60.0

# Seconds `serve` gives its projection process to stop before killing it.
STOP_GRACE_SECONDS = 10.0


@click.command()
@click.option("--parent", type=int, default=None, hidden=True, help="stop once this process is gone")
@click.option("--ready-fd", type=int, default=None, hidden=True, help="closed once the leads were tried")
@click.pass_obj
def project(url: str, parent: int | None, ready_fd: int | None) -> None:
    """Keep the asynchronous projections caught up until stopped (PostgreSQL; serve starts one)."""
    if ready_fd is not None:
        # Closed only once the leads were tried, long after connecting: a wrong one is said now, as itself.
        try:
            os.fstat(ready_fd)
        except OSError:
            raise click.BadParameter(
                f"{ready_fd} is not an open file descriptor", param_hint="'--ready-fd'"
            ) from None
    db = open_database(url, must_exist=True)
    if db.dialect != "postgresql":
        raise CommandError("project needs PostgreSQL; on SQLite the server runs the projections itself")
    logs.configure(
        os.environ.get("TIMELINE_LOG_FORMAT", "text"),  # type: ignore[arg-type]
        os.environ.get("TIMELINE_LOG_LEVEL", "info"),
    )
    if parent is not None and os.getppid() != parent:
        return  # serve died while this process was starting
    run_command(url, lambda: disposing(db, _project(db, parent, ready_fd)))


async def _project(db: Database, parent: int | None, ready_fd: int | None) -> None:
    from timeline.api.settings import Settings
    from timeline.app import maintenance

    settings = Settings.from_env()
    worker = maintenance.projection_worker(
        db, batch=settings.projection_batch, idle=settings.keepalive_seconds, projection_process=True
    )
    # The leads are tried before anything else, and whoever waits on ``ready_fd`` (serve) told: its API
    # processes, started after, find them taken (unless another process held them already).
    await worker.take_leads()
    if ready_fd is not None:
        os.close(ready_fd)
    listener = db.listener()
    if listener is not None:
        await listener.start()  # other processes' commits wake the worker
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = [asyncio.create_task(worker.run(), name="projections"), asyncio.create_task(stop.wait())]
    if parent is not None:
        running.append(asyncio.create_task(_orphaned(parent)))
    try:
        # The worker runs until cancelled: whatever ends first (a signal, serve gone) ends it.
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if listener is not None:
            await listener.stop()
    if not running[0].cancelled() and (error := running[0].exception()) is not None:
        raise error


async def _orphaned(parent: int) -> None:
    """Return once the process that started this one is gone (killed, even: it cannot say so)."""
    # Polled: nothing tells a child its parent died unless it asks for a signal (Linux's PR_SET_PDEATHSIG).
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(PARENT_CHECK_SECONDS)


def start(url: str) -> subprocess.Popen[bytes]:
    """Start `timeline project` for ``serve``, writing to the same standard output and error, and return
    once it has tried for the projections' leads (or has ended, or ``READY_SECONDS`` passed)."""
    command = [sys.executable, "-m", "timeline", "project", "--parent", str(os.getpid())]
    ready, told = os.pipe()
    try:
        try:
            process = subprocess.Popen(
                [*command, "--ready-fd", str(told)],
                # The URL goes in the environment: on the command line, `ps` would show its password.
                env={**os.environ, "TIMELINE_DATABASE_URL": url},
                pass_fds=(told,),
                # Ctrl-C in a terminal reaches the whole process group; serve stops it in its own time.
                start_new_session=True,
            )
        finally:
            os.close(told)
        try:
            # The pipe's end: the child closed its copy (tried the leads) or ended.
            select.select([ready], [], [], READY_SECONDS)
        except BaseException:  # Ctrl-C while waiting, say: serve would not get to stop it
            stop(process)
            raise
    finally:
        os.close(ready)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a projection process ``start`` started, killing it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
