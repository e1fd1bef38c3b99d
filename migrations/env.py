"""Alembic environment: runs on a connection handed over by timeline, or on ``-x url=...``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from timeline.store import DEFAULT_URL
from timeline.store.database import Database
from timeline.store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # timeline's own progress display, told after each migration applied (none from the alembic CLI).
        on_version_apply=config.attributes.get("on_version_apply", ()),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await db.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_with_own_engine(context.get_x_argument(as_dictionary=True).get("url", DEFAULT_URL)))
