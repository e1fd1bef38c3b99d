"""Test databases: every store, projection and API test runs on SQLite and on PostgreSQL.

PostgreSQL tests use a fresh database per test, cloned from a migrated template made once per run, and
dropped afterwards. They are skipped only when the server is unreachable and TIMELINE_TEST_REQUIRE_POSTGRES
is not set; CI sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from timeline import signing
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import migrate, tokens
from timeline.store.database import Database


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """A command run in-process (``serve``, ``import``) sets up logging for its process; put it back after
    each test, so a later test's command does not print an earlier one's log lines."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.fixture(autouse=True)
def _no_checkouts_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commands run in-process look for var/timeline.key in the test's own directory, never in the checkout
    (where `make serve` leaves one)."""
    monkeypatch.setattr(signing, "DEFAULT_KEY_FILE", tmp_path / "var" / "timeline.key")


ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "fixtures" / "000_16630df2654ec508.yaml"
PG_URL = os.environ.get("TIMELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("TIMELINE_TEST_REQUIRE_POSTGRES", "") not in ("", "0")


def _pg_dsn(database: str | None = None) -> str:
    url = make_url(PG_URL)
    if database is not None:
        url = url.set(database=database)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresTemplate:
    """A migrated template database; each test gets a clone of it."""

    def __init__(self) -> None:
        self.name = f"timeline_tpl_{uuid.uuid4().hex[:12]}"

    def create(self) -> None:
        async def run() -> None:
            await _pg_admin(f'CREATE DATABASE "{self.name}"')
            db = Database(_pg_dsn(self.name))
            try:
                await migrate.upgrade(db)
            finally:
                await db.dispose()

        asyncio.run(run())

    def drop(self) -> None:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[PostgresTemplate | None]:
    template = PostgresTemplate()
    try:
        template.create()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (TIMELINE_TEST_REQUIRE_POSTGRES) but unusable: {exc}")
        yield None
        return
    yield template
    template.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, pg_template: PostgresTemplate | None
) -> AsyncIterator[str]:
    """The URL of an empty, migrated database of the test's backend."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'timeline.db'}"
        db = Database(url)
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()
        yield url
        return
    async with fresh_postgres(pg_template, "t") as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database."""
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def empty_database_url(
    backend: str, tmp_path: Path, pg_template: PostgresTemplate | None
) -> AsyncIterator[str]:
    """The URL of a database with no schema at all, for migration tests."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    async with fresh_postgres(pg_template, "e", migrated=False) as url:
        yield url


@pytest.fixture
async def token(database_url: str) -> str:
    """The seed imported, and a write token for it (a test module may define its own ``token``)."""
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        async with seeding.write() as conn:
            return await tokens.create(conn, "editor", ("write",))
    finally:
        await seeding.dispose()


@contextlib.asynccontextmanager
async def fresh_postgres(
    pg_template: PostgresTemplate | None, prefix: str, *, migrated: bool = True
) -> AsyncIterator[str]:
    """The URL of a new PostgreSQL database (a copy of the migrated template, or with no schema), dropped
    afterwards; the test is skipped when PostgreSQL cannot be reached."""
    if pg_template is None:
        pytest.skip("PostgreSQL is unreachable (set TIMELINE_TEST_REQUIRE_POSTGRES=1 to fail instead)")
    name = f"timeline_{prefix}_{uuid.uuid4().hex[:12]}"
    template = f' TEMPLATE "{pg_template.name}"' if migrated else ""
    await _pg_admin(f'CREATE DATABASE "{name}"{template}')
    try:
        yield _pg_dsn(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pg_url(pg_template: PostgresTemplate | None) -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL database, for what only PostgreSQL has (several processes on one log)."""
    async with fresh_postgres(pg_template, "p") as url:
        yield url
