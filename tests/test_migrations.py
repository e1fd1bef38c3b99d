"""Migrations: empty to head (and back) on both databases, and no drift from the table definitions."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from timeline.store import migrate
from timeline.store.database import Database
from timeline.store.schema import metadata

TABLES = {"events", "claims", "estimates", "timeline", "registrations", "projection_checkpoints"}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _drift(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_empty_to_head_has_every_table_and_no_drift(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        await migrate.upgrade(db)
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert await migrate.current_revision(db) == head
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) >= TABLES
            assert await conn.run_sync(_drift) == []
        # Upgrading again is a no-op; downgrading removes everything it made.
        await migrate.upgrade(db)
        await migrate.downgrade(db, "base")
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) & TABLES == set()
    finally:
        await db.dispose()
