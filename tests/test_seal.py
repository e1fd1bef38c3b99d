"""Writes seal themselves from what this process remembers of the log (store.seal), on both databases: the
checkpoints and the stored tree stay right when another process writes in between, when a write is rolled
back, and when one transaction appends twice."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from timeline import signing
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain.events import DomainEvent
from timeline.service import Recorder
from timeline.store import audit, tree
from timeline.store.database import Database

from .helpers import claim_made, document, source, subject


def _mth(d: Sequence[bytes]) -> bytes:
    # RFC 9162's tree hash, recursive, as a second implementation.
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(d[:k]) + _mth(d[k:])).digest()


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    return [*_path(m, d[:k]), _mth(d[k:])] if m < k else [*_path(m - k, d[k:]), _mth(d[:k])]


async def _write(db: Database, *events: DomainEvent) -> None:
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        await recorder.record_all(list(events), origin="")
        await recorder.finish()


async def _fail_after_appending(db: Database) -> None:
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        await recorder.record(claim_made("gone", "a", 1, subject_id="s"), origin="")
        await recorder.finish()  # the events, tree nodes and checkpoint are written...
        raise RuntimeError("failed after appending")  # ...and rolled back


async def _check(db: Database, signer: signing.Signer) -> list[int]:
    """Every checkpoint signed by ``signer`` over the right root, the stored tree's proofs right, the log
    fully signed; returns the checkpoints' sizes."""
    async with db.read() as conn:
        data = [bytes.fromhex(r.hash) async for r in audit.rows(conn)]
        checkpoints = await tree.all_checkpoints(conn)
        for cp in checkpoints:
            assert cp.root_hash == _mth(data[: cp.size]).hex()
            body = signing.verify_note(cp.note, signer.verifier_text())
            assert body.split("\n")[1] == str(cp.size)
            # The row's time is the note's, to the microsecond (SQLite's is cut from the note's stamp).
            assert body.split("\n")[3] == f"time {signing.stamp(cp.recorded_at)}"
        for m in (0, len(data) // 2, len(data) - 1):
            assert await tree.inclusion(conn, m, len(data)) == _path(m, data)
        report = await audit.verify(conn, verifier=signer.verifier_text())
    assert report.ok
    assert (report.signed_size, report.unsigned) == (len(data), 0)
    return [cp.size for cp in checkpoints]


@pytest.fixture
def signer() -> signing.Signer:
    return signing.Signer.generate("test.example/log")


async def test_two_processes_writing_in_turn_each_sign_right_checkpoints(
    database_url: str, signer: signing.Signer
) -> None:
    # Two Database objects stand for two server processes with the same key on one database: each one's
    # remembered frontier goes stale whenever the other writes, and must be read back, not trusted.
    one, two = Database(database_url, signer=signer), Database(database_url, signer=signer)
    try:
        await _write(one, subject("s"), source("a"), document("d"))
        turns = [one, two, two, one, one, one, two, one, two, two, one]
        for i, db in enumerate(turns):
            # Several events per write in some turns, so stored nodes (16 leaves and up) complete mid-write.
            count = 1 + i % 3
            await _write(db, *(claim_made(f"c{i}-{j}", "a", j, subject_id="s") for j in range(count)))
        sizes = await _check(one, signer)
    finally:
        await one.dispose()
        await two.dispose()
    assert len(sizes) == 1 + len(turns)  # one checkpoint per appending transaction, whoever wrote it
    assert sizes[-1] == 3 + sum(1 + i % 3 for i in range(len(turns)))


async def test_a_write_after_the_stored_tree_lost_its_nodes_stores_them_again_and_signs_right(
    database_url: str, signer: signing.Signer
) -> None:
    # The frontier is read back from the stored nodes in one statement; with a node it needs missing (the
    # table emptied by hand, say), the write extends the stored tree from the events, as it did before.
    one, two = Database(database_url, signer=signer), Database(database_url, signer=signer)
    try:
        await _write(one, subject("s"), source("a"), document("d"))
        await _write(one, *(claim_made(f"c{i}", "a", i, subject_id="s") for i in range(20)))
        async with one.write() as conn:
            await conn.execute(sa.delete(tree.tree_nodes))
        await _write(two, claim_made("after", "a", 1, subject_id="s"))
        assert await _check(two, signer) == [3, 23, 24]
        async with two.read() as conn:
            stored = (
                await conn.execute(sa.select(sa.func.count()).select_from(tree.tree_nodes))
            ).scalar_one()
    finally:
        await one.dispose()
        await two.dispose()
    assert stored == 1  # the one node of 16 leaves a log of 24 events completes


async def test_a_rolled_back_write_leaves_nothing_remembered(
    database_url: str, signer: signing.Signer
) -> None:
    db = Database(database_url, signer=signer)
    try:
        await _write(db, subject("s"), source("a"), document("d"))
        with pytest.raises(RuntimeError, match="after appending"):
            await _fail_after_appending(db)
        await _write(db, claim_made("kept", "a", 2, subject_id="s"))
        assert await _check(db, signer) == [3, 4]
    finally:
        await db.dispose()


async def test_one_transaction_appending_twice_keeps_one_checkpoint(
    database_url: str, signer: signing.Signer
) -> None:
    db = Database(database_url, signer=signer)
    first = "document: {id: one, title: One, published_on: '2024-11'}\n"
    second = "document: {id: two, title: Two, published_on: '2024-12'}\n"
    try:
        # Two files of one import: one transaction, each file's events written by its own statement.
        fixtures = [LoadedFixture("one", first.encode()), LoadedFixture("two", second.encode())]
        await import_fixtures(db, fixtures, recorded_by="test")
        assert await _check(db, signer) == [2]
    finally:
        await db.dispose()
