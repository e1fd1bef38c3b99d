"""Token checks on both databases: concurrent checks share one lookup, and nothing is cached past it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def test_a_check_made_while_a_lookup_is_out_waits_for_the_next_and_sees_a_revocation(
    db: Database,
) -> None:
    async with db.write() as conn:
        alice = await tokens.create(conn, "alice", ("write",))
    verifier = tokens.Verifier(db)
    out, release = asyncio.Event(), asyncio.Event()
    lookup = db.lookup

    @contextlib.asynccontextmanager
    async def held() -> AsyncIterator[AsyncConnection]:
        async with lookup() as conn:
            out.set()
            await release.wait()  # the first round's query is out, and slow
            yield conn

    db.lookup = held  # type: ignore[method-assign]
    first = asyncio.create_task(verifier.verify(alice))
    await out.wait()
    db.lookup = lookup  # type: ignore[method-assign]
    async with db.write() as conn:
        await tokens.revoke(conn, "alice")
    second = asyncio.create_task(verifier.verify(alice))
    await asyncio.sleep(0)
    release.set()
    before, after = await first, await second
    assert before is not None
    assert after is not None
    assert after.revoked_at is not None  # asked after the revocation: answered by a round that saw it


async def test_checks_under_way_fail_when_the_verifier_closes(db: Database) -> None:
    async with db.write() as conn:
        alice = await tokens.create(conn, "alice", ("write",))
    verifier = tokens.Verifier(db)
    lookup, out = db.lookup, asyncio.Event()

    @contextlib.asynccontextmanager
    async def stuck() -> AsyncIterator[AsyncConnection]:
        async with lookup() as conn:
            out.set()
            await asyncio.Event().wait()  # never answers
            yield conn

    db.lookup = stuck  # type: ignore[method-assign]
    checks = [asyncio.create_task(verifier.verify(alice)) for _ in range(3)]
    await out.wait()
    await verifier.close()
    for check in checks:
        with pytest.raises(ConnectionError, match="stopped"):
            await asyncio.wait_for(check, 5)
