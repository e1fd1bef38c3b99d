"""Token checks on both databases: concurrent checks share one lookup, and nothing is cached past it."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from timeline.store import tokens
from timeline.store.database import Database


async def test_concurrent_checks_share_a_lookup_and_each_gets_its_own_answer(db: Database) -> None:
    async with db.write() as conn:
        alice = await tokens.create(conn, "alice", ("write",))
        bob = await tokens.create(conn, "bob", ("read",))
        await tokens.revoke(conn, "bob")
    lookups: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM tokens" in statement:
            lookups.append(statement)

    verifier = tokens.Verifier(db)
    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        found = await asyncio.gather(*(verifier.verify(s) for s in [alice, bob, alice, "tl_unknown"] * 4))
        assert len(lookups) == 1
        assert [t.name if t else None for t in found] == ["alice", "bob", "alice", None] * 4
        assert [t.revoked_at is not None for t in found if t] == [False, True, False] * 4
        # The next check runs a query of its own: a revocation committed since is seen.
        async with db.write() as conn:
            await tokens.revoke(conn, "alice")
        again = await verifier.verify(alice)
        assert again is not None
        assert again.revoked_at is not None
        assert len(lookups) == 2
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
