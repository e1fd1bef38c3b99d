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


async def test_upgrade_keeps_the_log_and_serve_refolds_the_views(empty_database_url: str) -> None:
    from timeline.cli import _prepare_for_serving
    from timeline.store import eventlog, queries

    from .helpers import NOW, claim_made, document, new, source, subject

    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db, "0001")
        async with db.write() as conn:
            for stream, event in [
                ("subject-s", subject("s")),
                ("source-a", source("a")),
                ("document-d", document("d")),
                ("claim-c", claim_made("c", "a", 1500)),
            ]:
                await eventlog.append(conn, stream, 0, [new(event)], recorded_at=NOW)
        await migrate.upgrade(db)
        async with db.read() as conn:
            assert len(await eventlog.read_all(conn)) == 4
            assert await queries.claim(conn, "c") is None  # views were emptied by 0002
        assert await _prepare_for_serving(empty_database_url) == []  # not empty: nothing imported
        async with db.read() as conn:
            record = await queries.claim(conn, "c")
        assert record is not None
        assert record.claim.quantity is not None
        assert record.claim.quantity.value == 1500
    finally:
        await db.dispose()
