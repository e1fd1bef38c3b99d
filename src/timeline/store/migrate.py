"""Schema migrations: the only way tables come into being, in production and in tests alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
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


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database's schema up to ``revision`` (head by default)."""
    await _run(db, command.upgrade, revision)


async def downgrade(db: Database, revision: str) -> None:
    """Take the schema back down to ``revision`` ("base" removes every table)."""
    await _run(db, command.downgrade, revision)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
