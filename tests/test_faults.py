"""Faults survived: servers started together on an empty database, a busy database, events this version cannot
read, health that tells, and (with real processes) PostgreSQL restarted and processes killed under load."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from .conftest import PostgresTemplate, _pg_admin, _pg_dsn
from .test_processes import Server, servers


@pytest.fixture
async def blank_url(backend: str, tmp_path: Path, pg_template: PostgresTemplate | None) -> AsyncIterator[str]:
    """A database with no schema; a new one on each use of ``next``."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
        return
    if pg_template is None:
        pytest.skip("PostgreSQL is unreachable (set TIMELINE_TEST_REQUIRE_POSTGRES=1 to fail instead)")
    name = f"timeline_b_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_dsn(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Forks processes that migrate one database each at the same moment (forked after the imports, so they start
# together and cheaply), and prints each one's outcome.
_RACE = """
import asyncio, os, sys
from timeline.store import migrate
from timeline.store.database import Database

async def upgrade(url):
    db = Database(url)
    try:
        await migrate.upgrade(db)
        return await migrate.current_revision(db)
    finally:
        await db.dispose()

r, w = os.pipe()
children = []
for url in sys.argv[1:]:
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # the start signal
            try:
                outcome = asyncio.run(upgrade(url))
            except BaseException as exc:
                outcome = f"failed: {type(exc).__name__}: {exc}"
            os.write(1, f"{url} {outcome}\\n".encode())  # one write: lines from children do not interleave
            os._exit(0)
        children.append(pid)
os.write(w, b"x" * len(children))
for pid in children:
    os.waitpid(pid, 0)
"""


async def _fresh(blank_url: str, trial: int) -> str:
    """Another database without a schema, beside ``blank_url``."""
    url = make_url(blank_url)
    if url.get_backend_name() == "sqlite":
        return url.set(database=f"{url.database}.{trial}").render_as_string()
    name = f"{url.database}_{trial}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


async def test_processes_migrating_an_empty_database_at_once_all_succeed(blank_url: str) -> None:
    """Three processes at once on each of five empty databases. Before the schema lock, PostgreSQL ones died
    of a duplicate type in about half the trials, SQLite ones of 'database is locked' in a quarter."""
    urls = [await _fresh(blank_url, trial) for trial in range(5)]
    try:
        race = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RACE, *urls, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await race.communicate()
    finally:
        for url in urls:
            if "postgresql" in url:
                await _pg_admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    outcomes = sorted(out.decode().splitlines())
    assert outcomes == sorted(f"{url} 0006_core_read" for url in urls for _ in range(3))


async def _ready(server: Server) -> None:
    # Two interpreters starting on a loaded machine can take longer than test_processes allows.
    async with asyncio.timeout(120):
        while True:
            with contextlib.suppress(TimeoutError):
                await server.ready()
                return


async def test_two_servers_started_together_on_an_empty_database_both_serve_the_fixture_once(
    blank_url: str, tmp_path: Path
) -> None:
    with servers(blank_url, tmp_path, 2) as pair:
        await asyncio.gather(*(_ready(s) for s in pair))
        async with httpx.AsyncClient() as client:
            for server in pair:
                body = (await client.get(f"{server.base}/health")).json()
                assert body["head_position"] == body["views_position"] == 29
