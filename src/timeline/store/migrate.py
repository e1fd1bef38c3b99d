"""Schema migrations: the only way tables come into being, in production and in tests alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from timeline.store.database import Database


def migrations_dir() -> Path:
    """The migrations folder: inside the installed wheel, or at the top of a source checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration pointing at our migrations, with no ini file needed."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


async def _run(db: Database, step: Callable[[Config, str], None], revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        step(config, revision)

    # The version table is read under the lock, so a process that waited finds the schema at head.
    async with db.schema_change() as conn:
        await conn.run_sync(run)


Progress = Callable[[int, int | None], None]


async def upgrade(db: Database, revision: str = "head", progress: Progress | None = None) -> None:
    """Bring the database's schema up to ``revision`` (head by default); ``progress(done, total)`` is told
    before the first migration to apply and after each one (never when there is none)."""

    def step(config: Config, revision: str) -> None:
        if progress is not None:
            current = MigrationContext.configure(config.attributes["connection"]).get_current_revision()
            total = len(list(ScriptDirectory.from_config(config).iterate_revisions(revision, current)))
            applied = 0

            def told(**_: object) -> None:
                nonlocal applied
                applied += 1
                progress(applied, total)

            if total:
                progress(0, total)
            config.attributes["on_version_apply"] = told
        command.upgrade(config, revision)

    await _run(db, step, revision)


async def downgrade(db: Database, revision: str) -> None:
    """Take the schema back down to ``revision`` ("base" removes every table)."""
    await _run(db, command.downgrade, revision)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
