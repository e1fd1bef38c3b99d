"""Token checks on both databases: concurrent checks share one lookup, and nothing is cached past it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store import tokens
from timeline.store.database import Database


async def test_concurrent_checks_share_a_lookup_and_each_gets_its_own_answer(db: Database) -> None:
    async with db.write() as conn:
        alice = await tokens.create(conn, "alice", ("write",))
        bob = await tokens.create(conn, "bob", ("read",))
        await tokens.revoke(conn, "bob")
    lookups: list[list[str]] = []
    by_hash = tokens._by_hash

    async def seen(conn: AsyncConnection, digests: list[str]) -> dict[str, tokens.Token]:
        lookups.append(digests)
        return await by_hash(conn, digests)

    verifier = tokens.Verifier(db)
    tokens._by_hash = seen  # type: ignore[assignment]
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
        # The driver's rows make the same records as SQLAlchemy's (times included, on SQLite too).
        async with db.read() as conn:
            assert again == await tokens.verify(conn, alice)
            assert found[1] == await tokens.verify(conn, bob)
    finally:
        tokens._by_hash = by_hash  # type: ignore[assignment]


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
