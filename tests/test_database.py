"""Connections: a server process keeps a fixed pool, and a burst waits for it instead of opening more."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from timeline.store.database import Database


async def test_a_burst_beyond_the_pool_waits_for_pooled_connections(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    opened = 0

    @event.listens_for(db.engine.sync_engine, "connect")
    def _count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    async def read() -> int:
        async with db.read() as conn:
            await asyncio.sleep(0.01)  # hold the connection so the burst overlaps
            return int((await conn.execute(sa.text("SELECT 1"))).scalar_one())

    try:
        answers = await asyncio.gather(*(read() for _ in range(20)))
    finally:
        await db.dispose()
    assert answers == [1] * 20
    assert opened == 2


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_writer_waits_for_the_log_lock_at_most_30_seconds(database_url: str) -> None:
    """PostgreSQL: set on every pooled connection, so no write transaction spends a round trip on it."""
    db = Database(database_url)
    try:
        async with db.write() as conn:
            assert (await conn.execute(sa.text("SHOW lock_timeout"))).scalar_one() == "30s"
    finally:
        await db.dispose()
