"""Merkle proofs and signed checkpoints, on both databases: the tree against a second implementation written
here from RFC 9162's definitions, the HTTP routes, and every attack on the log caught by timeline-audit
holding only an earlier checkpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import urllib.request
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from timeline import merkle, signing
from timeline.api.app import create_app
from timeline.app import maintenance
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.cli import main
from timeline.store import audit, chain, eventlog, tokens, tree
from timeline.store.database import Database
from timeline_audit import notes, proofs
from timeline_audit.cli import Auditor
from timeline_audit.notes import Rejected

from .conftest import SEED

# A second implementation, straight from RFC 9162 section 2.1 (recursive, over the leaves' data) ---------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def _data(n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


def _folded(leaves: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    frontier_roots = []
    for a, b in ranges:
        frontier = merkle.Frontier()
        for leaf in leaves[a:b]:
            frontier.append(leaf)
        frontier_roots.append(frontier.root())
    return frontier_roots


def test_tree_roots_and_proofs_match_the_rfc_definitions() -> None:
    data = _data(70)
    leaves = [merkle.leaf_hash(x) for x in data]
    for n in range(1, 71):
        frontier = merkle.Frontier()
        for leaf in leaves[:n]:
            frontier.append(leaf)
        assert frontier.root() == mth(data[:n])
        assert proofs.Tree.__name__  # the auditor's tree is checked below
        for m in range(n):
            proof = _folded(leaves, merkle.inclusion_ranges(m, n))
            assert proof == path(m, data[:n]), (m, n)
            assert proofs.inclusion_ok(leaves[m], m, n, proof, mth(data[:n]))
        for m in range(1, n + 1):
            proof = _folded(leaves, merkle.consistency_ranges(m, n))
            assert proof == (subproof(m, data[:n], True) if m < n else []), (m, n)
            assert proofs.consistency_ok(m, n, mth(data[:m]), mth(data[:n]), proof)


def test_the_auditor_rejects_proofs_that_do_not_hold() -> None:
    data = _data(13)
    leaves = [merkle.leaf_hash(x) for x in data]
    root = mth(data)
    proof = path(5, data)
    assert proofs.inclusion_ok(leaves[5], 5, 13, proof, root)
    assert not proofs.inclusion_ok(leaves[6], 5, 13, proof, root)  # another leaf
    assert not proofs.inclusion_ok(leaves[5], 6, 13, proof, root)  # another index
    assert not proofs.inclusion_ok(leaves[5], 5, 13, proof[:-1], root)  # cut short
    consistency = subproof(7, data, True)
    assert proofs.consistency_ok(7, 13, mth(data[:7]), root, consistency)
    assert not proofs.consistency_ok(7, 13, mth(data[:6]), root, consistency)
    forked = [*data[:3], b"x" * 32, *data[4:]]
    assert not proofs.consistency_ok(7, 13, mth(data[:7]), mth(forked), subproof(7, forked, True))
    tree_ = proofs.Tree()
    for leaf in leaves:
        tree_.add(leaf)
    assert tree_.root() == root


def test_signed_notes_are_c2sp_checkpoints_the_auditor_reads() -> None:
    signer = signing.Signer.generate("example.org/log")
    root = hashlib.sha256(b"r").digest()
    note = signer.sign(signing.checkpoint_body("example.org/log", 7, root, dt_now()))
    lines = note.split("\n")
    assert lines[:3] == ["example.org/log", "7", base64.b64encode(root).decode()]
    assert lines[3].startswith("time ")
    assert lines[4] == ""
    assert lines[5].startswith("\u2014 example.org/log ")
    again = signing.Signer.parse(signer.private_text())
    assert again.verifier_text() == signer.verifier_text()
    opened = notes.open_checkpoint(note, signer.verifier_text())
    assert (opened.size, opened.root) == (7, root)
    with pytest.raises(Rejected, match="altered"):
        notes.open_checkpoint(note.replace("\n7\n", "\n8\n"), signer.verifier_text())
    other = signing.Signer.generate("example.org/log")
    with pytest.raises(notes.UnknownKey, match="not by the key you trust"):
        notes.open_checkpoint(note, other.verifier_text())
    stranger = signing.Signer.generate("example.org/other-log")
    with pytest.raises(Rejected, match="no signature"):
        notes.open_checkpoint(note, stranger.verifier_text())
    witness, witness_key = notes.new_witness_key("witness.example")
    line = notes.cosign(opened, witness, now=1_700_000_000)
    assert signing.Cosignature.verify(line, opened.body, witness_key) == 1_700_000_000
    with pytest.raises(signing.BadKey):
        signing.Cosignature.verify(line, opened.body.replace("7", "8", 1), witness_key)


def dt_now() -> Any:
    import datetime as dt

    return dt.datetime(2026, 12, 3, 7, 0, tzinfo=dt.UTC)


# Known answers from another implementation: transparency-dev/merkle (Go, the Trillian and Sigsum logs'
# library), proof/verify_test.go at commit 02194e9afb6c1d95b5381350007963aa70fff472, whose roots came from
# Certificate Transparency's C++ merkle_tree_test.cc. Eight leaves of raw data (not chain hashes); proofs
# are numbered there by 1-based leaf, here by 0-based index.
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")] + [
    bytes.fromhex("606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_roots_and_proofs_match_certificate_transparencys_known_answers() -> None:
    leaves = [merkle.leaf_hash(d) for d in CT_LEAVES]
    for size in range(1, 9):
        frontier = merkle.Frontier()
        for leaf in leaves[:size]:
            frontier.append(leaf)
        assert frontier.root().hex() == CT_ROOTS[size - 1], size
    for index, size, want in CT_INCLUSION:
        made = _folded(leaves, merkle.inclusion_ranges(index, size))
        assert [h.hex() for h in made] == want, (index, size)
        # timeline-audit, which trusts nothing the server says, accepts it, and not for a neighbour.
        root = bytes.fromhex(CT_ROOTS[size - 1])
        assert proofs.inclusion_ok(leaves[index], index, size, made, root)
        if size > 1:
            assert not proofs.inclusion_ok(leaves[index], index ^ 1, size, made, root)
    for old, new, want in CT_CONSISTENCY:
        made = _folded(leaves, merkle.consistency_ranges(old, new))
        assert [h.hex() for h in made] == want, (old, new)
        roots = bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1])
        assert proofs.consistency_ok(old, new, *roots, made)


def test_roots_and_proofs_match_pymerkle_for_every_size_up_to_70() -> None:
    """pymerkle (PyPI), an RFC 9162 tree with SHA-256 and the 0x00/0x01 prefixes, written by others: the same
    roots, the same inclusion paths (its path starts with the leaf itself), and our consistency proofs
    verified by timeline-audit between the roots pymerkle computed."""
    from pymerkle import InmemoryTree

    data = _data(70)
    theirs = InmemoryTree(algorithm="sha256")
    for item in data:
        theirs.append_entry(item)
    leaves = [merkle.leaf_hash(d) for d in data]
    frontier = merkle.Frontier()
    roots = []
    for size in range(1, 71):
        frontier.append(leaves[size - 1])
        roots.append(theirs.get_root(size))
        assert frontier.root() == roots[-1], size
    for size in range(1, 71):
        for index in range(size):
            ours = _folded(leaves, merkle.inclusion_ranges(index, size))
            assert theirs.prove_inclusion(index + 1, size).path[1:] == ours, (index, size)
        for old in range(1, size + 1):
            ours = _folded(leaves, merkle.consistency_ranges(old, size))
            assert proofs.consistency_ok(old, size, roots[old - 1], roots[size - 1], ours), (old, size)
            if old < size:
                assert not proofs.consistency_ok(old, size, roots[old - 1], roots[size - 2], ours)


# The stored tree, on both databases --------------------------------------------------------------------


@pytest.fixture
def signer() -> signing.Signer:
    return signing.Signer.generate("test.example/log")


@pytest.fixture
async def signed(database_url: str, signer: signing.Signer) -> AsyncIterator[Database]:
    db = Database(database_url, signer=signer)
    try:
        await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
        yield db
    finally:
        await db.dispose()


async def _event_data(db: Database) -> list[bytes]:
    async with db.read() as conn:
        return [bytes.fromhex(r.hash) async for r in audit.rows(conn)]


async def _record(db: Database, text: str, name: str = "later") -> None:
    await import_fixtures(db, [LoadedFixture(name, text.encode())], recorded_by="test")


LATER = "document: {id: later, title: Later, published_on: '2024-11'}\n"


@pytest.mark.parametrize("stored", [1, 4])
async def test_stored_tree_and_proofs_equal_the_rfc_definitions(
    signed: Database, monkeypatch: pytest.MonkeyPatch, stored: int, database_url: str, signer: signing.Signer
) -> None:
    if stored != tree.STORED:  # the same log, its tree kept from level 1 up (many more stored nodes)
        monkeypatch.setattr(tree, "STORED", stored)
        async with signed.engine.begin() as conn:
            await conn.execute(sa.delete(tree.tree_nodes))
            await tree.extend(conn)
    data = await _event_data(signed)
    assert len(data) == 29
    async with signed.read() as conn:
        for n in (1, 2, 15, 16, 17, 29):
            assert await tree.root(conn, n) == mth(data[:n])
        for m, n in ((0, 29), (15, 29), (16, 29), (28, 29), (3, 17)):
            assert await tree.inclusion(conn, m, n) == path(m, data[:n])
        for m, n in ((1, 29), (16, 29), (17, 29), (28, 29), (29, 29), (5, 16)):
            assert await tree.consistency(conn, m, n) == (subproof(m, data[:n], True) if m < n else [])
        latest = await tree.latest_checkpoint(conn)
    # One signed checkpoint for the import's one transaction, over the whole log.
    assert latest is not None
    assert latest.size == 29
    assert latest.root_hash == mth(data).hex()
    assert signing.verify_note(latest.note, signer.verifier_text()).startswith("test.example/log\n29\n")


async def test_every_appending_transaction_signs_once(signed: Database) -> None:
    await _record(signed, LATER)
    await _record(signed, LATER)  # already recorded: appends nothing, signs nothing
    async with signed.read() as conn:
        sizes = [c.size for c in await tree.all_checkpoints(conn)]
    assert sizes == [29, 30]
    async with signed.read() as conn:
        report = await audit.verify(conn, verifier=signed.signer.verifier_text() if signed.signer else None)
    assert report.ok
    assert (report.checkpoints_checked, report.signatures_checked, report.unsigned) == (2, True, 0)


async def test_without_a_key_events_are_reported_unsigned(db: Database) -> None:
    await _record(db, LATER)
    async with db.read() as conn:
        report = await audit.verify(conn)
        assert await tree.latest_checkpoint(conn) is None
        assert await tree.root(conn, 1) == mth(await _event_data(db))  # the tree is kept all the same
    assert report.ok
    assert (report.checkpoints_checked, report.unsigned) == (0, 1)


# HTTP --------------------------------------------------------------------------------------------------


@pytest.fixture
async def client(
    signed: Database, database_url: str, signer: signing.Signer
) -> AsyncIterator[AsyncTestClient[Any]]:
    # The app runs on the client's own event loop, so it gets its own Database (and pool).
    async with AsyncTestClient(create_app(Database(database_url, signer=signer))) as c:
        yield c


async def test_http_checkpoint_proofs_and_a_claims_history_with_proofs(
    client: AsyncTestClient[Any], signed: Database, signer: signing.Signer
) -> None:
    data = await _event_data(signed)
    answer = await client.get("/audit/checkpoint")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"  # the charset once
    checkpoint = notes.open_checkpoint(answer.text, signer.verifier_text())
    assert (checkpoint.size, checkpoint.root) == (29, mth(data))
    inclusion = (await client.get("/audit/proofs/inclusion", params={"position": 13, "size": 29})).json()
    assert [base64.b64decode(h) for h in inclusion["hashes"]] == path(12, data)
    consistency = (await client.get("/audit/proofs/consistency", params={"from": 20, "to": 29})).json()
    assert [base64.b64decode(h) for h in consistency["hashes"]] == subproof(20, data, True)
    history = (await client.get("/claims/nis-1500-soldiers-sent-for-training/history?proof=true")).json()
    assert history["checkpoint"] == answer.text
    for entry in history["events"]:
        stored, proof = entry["proof"]["stored"], entry["proof"]["inclusion"]
        assert proofs.chain_hash(stored) == stored["hash"] == entry["hash"]
        hashes = [base64.b64decode(h) for h in proof["hashes"]]
        assert proofs.inclusion_ok(proofs.leaf(stored["hash"]), entry["position"] - 1, 29, hashes, mth(data))
    plain = (await client.get("/claims/nis-1500-soldiers-sent-for-training/history")).json()
    assert "checkpoint" not in plain
    assert all("proof" not in e for e in plain["events"])


@pytest.mark.parametrize(
    ("route", "params", "where", "says"),
    [
        ("/audit/proofs/inclusion", {"position": 30, "size": 29}, "position", "beyond the tree"),
        ("/audit/proofs/inclusion", {"position": 1, "size": 30}, "size", "latest signed checkpoint"),
        ("/audit/proofs/inclusion", {"position": 0, "size": 29}, "position", ""),
        ("/audit/proofs/consistency", {"from": 20, "to": 10}, "from", "a log only grows"),
        ("/audit/proofs/consistency", {"from": 1, "to": 31}, "to", "latest signed checkpoint"),
        ("/audit/proofs/consistency", {"from": "x", "to": 2}, "from", ""),
    ],
)
async def test_bad_proof_parameters_get_problem_json(
    client: AsyncTestClient[Any], route: str, params: dict[str, Any], where: str, says: str
) -> None:
    answer = await client.get(route, params=params)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert where in json.dumps(problem)
    assert says in problem["detail"]


async def test_a_witness_cosignature_is_checked_kept_and_served(
    client: AsyncTestClient[Any], signed: Database, signer: signing.Signer
) -> None:
    async with signed.write() as conn:
        secret = await tokens.create(conn, "witness", ("write",))
    auth = {"Authorization": f"Bearer {secret}"}
    checkpoint = notes.open_checkpoint((await client.get("/audit/checkpoint")).text, signer.verifier_text())
    witness, witness_key = notes.new_witness_key("witness.example")
    line = notes.cosign(checkpoint, witness)
    body = {"size": 29, "verifier_key": witness_key, "signature": line}
    assert (await client.post("/audit/cosignatures", json=body)).status_code == 401
    answer = await client.post("/audit/cosignatures", json=body, headers=auth)
    assert answer.status_code == 201, answer.text
    assert answer.json()["witness"] == "witness.example"
    served = (await client.get("/audit/checkpoint")).text
    assert served.endswith(line + "\n")
    assert notes.open_checkpoint(served, signer.verifier_text()).size == 29  # still reads as the log's
    _, stranger = notes.new_witness_key("witness.example")
    forged = await client.post("/audit/cosignatures", json={**body, "verifier_key": stranger}, headers=auth)
    assert forged.status_code == 400
    assert "not by this witness key" in forged.json()["detail"]


# Attacks, caught by timeline-audit holding only an earlier checkpoint ----------------------------------


def _through(client: AsyncTestClient[Any], loop: asyncio.AbstractEventLoop) -> Any:
    """A transport for the auditor (run in a thread) that sends its requests to the app under test."""

    def send(request: urllib.request.Request) -> tuple[int, bytes]:
        url = request.full_url.removeprefix("http://timeline.test")
        if request.data is not None:
            call = client.post(url, content=request.data, headers=dict(request.header_items()))
        else:
            call = client.get(url, headers=dict(request.header_items()))
        answer = asyncio.run_coroutine_threadsafe(call, loop).result()
        return answer.status_code, answer.content

    return send


async def _auditor(client: AsyncTestClient[Any], state: Path, signer: signing.Signer) -> Auditor:
    send = _through(client, asyncio.get_running_loop())
    return Auditor("http://timeline.test", state, signer.verifier_text(), transport=send)


async def _audit(auditor: Auditor, *, whole_log: bool = True) -> str:
    def run() -> str:
        checkpoint, said = auditor.checkpoint()
        return auditor.log(checkpoint) if whole_log else said

    return await asyncio.to_thread(run)


async def _tamper(db: Database, *statements: str | tuple[str, dict[str, object]]) -> None:
    """Change the tables behind timeline's back, as someone with database access (but not the key) could."""
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(sa.text("ALTER TABLE events DISABLE TRIGGER USER"))
        else:
            await conn.execute(sa.text("DROP TRIGGER IF EXISTS events_no_update"))
            await conn.execute(sa.text("DROP TRIGGER IF EXISTS events_no_delete"))
        for statement in statements:
            sql, params = (statement, {}) if isinstance(statement, str) else statement
            await conn.execute(sa.text(sql), params)


async def _rows(db: Database) -> list[audit.StoredRow]:
    async with db.read() as conn:
        return [r async for r in audit.rows(conn)]


def _rechained(rows: list[audit.StoredRow], changed: dict[int, str]) -> list[tuple[str, dict[str, object]]]:
    """Statements that replace the data of some events and recompute every hash after the first."""
    statements: list[tuple[str, dict[str, object]]] = []
    prev = chain.GENESIS
    for row in rows:
        data = changed.get(row.position, row.data)
        forged = audit.StoredRow(**{**_fields(row), "data": data, "prev_hash": prev})
        digest = forged.computed_hash()
        if digest != row.hash:
            statements.append(
                (
                    "UPDATE events SET data = :d, prev_hash = :p, hash = :h WHERE position = :n",
                    {"d": data, "p": prev, "h": digest, "n": row.position},
                )
            )
        prev = digest
    return statements


def _fields(row: audit.StoredRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__struct_fields__}


@pytest.fixture
async def kept(
    client: AsyncTestClient[Any], signed: Database, signer: signing.Signer, tmp_path: Path
) -> Auditor:
    """An auditor that kept the checkpoint of 29 events; the log has grown to 30 since."""
    auditor = await _auditor(client, tmp_path / "state.json", signer)
    assert "trusted from now on" in await _audit(auditor, whole_log=False)
    await _record(signed, LATER)
    assert "the whole log (30 events)" in await _audit(auditor)
    return auditor


async def test_the_auditor_accepts_an_honest_log_and_proves_a_claims_history(
    kept: Auditor, signed: Database
) -> None:
    def run() -> list[str]:
        checkpoint, _ = kept.checkpoint()
        return kept.claim("nis-1500-soldiers-sent-for-training", checkpoint)

    said = await asyncio.to_thread(run)
    assert said
    assert all("hash and inclusion proof hold" in line for line in said)


@pytest.mark.parametrize(
    ("attack", "says"),
    [
        ("edit", "event 13: its contents do not match its hash"),
        ("delete middle", "event 5 is missing"),
        ("swap", "event 3: its prev_hash is not event 2's hash"),
    ],
)
async def test_an_edit_deletion_or_swap_is_named_at_its_position(
    kept: Auditor, signed: Database, attack: str, says: str
) -> None:
    statements = {
        "edit": ["UPDATE events SET data = REPLACE(data, '1500', '1501') WHERE position = 13"],
        "delete middle": ["DELETE FROM events WHERE position = 5"],
        "swap": [
            "UPDATE events SET position = 1000 WHERE position = 3",
            "UPDATE events SET position = 3 WHERE position = 4",
            "UPDATE events SET position = 4 WHERE position = 1000",
        ],
    }[attack]
    await _tamper(signed, *statements)
    with pytest.raises(Rejected, match=says):
        await _audit(kept)


async def test_after_a_key_rotation_the_auditor_says_to_switch_keys_and_then_still_checks_consistency(
    kept: Auditor, signed: Database, signer: signing.Signer, database_url: str, tmp_path: Path
) -> None:
    rotated = signer.rotated()
    db = Database(database_url, signer=rotated)
    try:
        await _record(db, LATER.replace("id: later", "id: after-rotation"), "after-rotation")
    finally:
        await db.dispose()
    # Holding the old key only: the checkpoint is refused, saying which key signed it and what to do.
    with pytest.raises(notes.UnknownKey, match="run again with --log-key NEW_KEY") as refused:
        await _audit(kept)
    new_hash = rotated.verifier_text().split("+")[1]
    assert refused.value.key_hash == new_hash
    assert new_hash in str(refused.value)
    # Switched to the new key: the new checkpoint must still extend the one kept under the old key.
    switched = Auditor(kept.url, kept.state_path, rotated.verifier_text(), transport=kept.transport)
    said = await _audit(switched, whole_log=False)
    assert "consistent with the checkpoint of 30 events kept before" in said
    assert f"the log's key is now {rotated.verifier_text()}" in said
    assert "the whole log (31 events)" in await _audit(switched)
    claimed = await asyncio.to_thread(
        lambda: switched.claim("nis-1500-soldiers-sent-for-training", switched.checkpoint()[0])
    )
    assert all("hash and inclusion proof hold" in line for line in claimed)
    # The switch is kept: the next run needs no --log-key, and the old key is not accepted back.
    again = Auditor(kept.url, kept.state_path, None, transport=kept.transport)
    assert "the same size as the checkpoint kept (31 events)" in await _audit(again, whole_log=False)
    with pytest.raises(SystemExit, match="that key was replaced"):
        Auditor(kept.url, kept.state_path, signer.verifier_text(), transport=kept.transport)
    # A key the log has not signed with is not switched to, whatever the operator says.
    stranger = signing.Signer.generate("test.example/log")
    db = Database(database_url, signer=stranger)
    try:
        await _record(db, LATER.replace("id: later", "id: stranger"), "stranger")  # left unsigned
    finally:
        await db.dispose()
    wrong = Auditor(kept.url, kept.state_path, stranger.verifier_text(), transport=kept.transport)
    with pytest.raises(Rejected, match="still signed by the key you trusted before"):
        await _audit(wrong, whole_log=False)
    assert json.loads(kept.state_path.read_text())["log_key"] == rotated.verifier_text()


async def test_the_auditors_command_line_cosigns_and_tells_a_missing_token_from_a_failing_log(
    kept: Auditor,
    signed: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from timeline_audit import cli as audit_cli

    monkeypatch.setattr(audit_cli, "_urlopen", kept.transport)
    witness = tmp_path / "witness.key"
    state = ("--state", str(kept.state_path))
    assert audit_cli.main(["witness-key", "w.example", "--output", str(witness)]) == 0
    argv = [*state, "cosign", kept.url, "--witness-key", str(witness)]
    assert await asyncio.to_thread(audit_cli.main, argv) == 1  # misuse, not a finding about the log
    err = capsys.readouterr().err
    assert "answered 401" in err
    assert "--token" in err
    assert "REJECTED" not in err
    async with signed.write() as conn:
        secret = await tokens.create(conn, "witness", ("write",))
    argv = [*state, "--token", secret, "cosign", kept.url, "--witness-key", str(witness)]
    assert await asyncio.to_thread(audit_cli.main, argv) == 0
    assert "cosigned as w.example and sent" in capsys.readouterr().out
    served = await asyncio.to_thread(kept.get, "/audit/checkpoint")
    assert "\n\u2014 w.example " in served.decode()  # served beside the log's own signature


async def test_a_deleted_tail_is_found_even_with_its_checkpoint_gone(kept: Auditor, signed: Database) -> None:
    await _tamper(signed, "DELETE FROM events WHERE position = 30")
    with pytest.raises(Rejected, match="the checkpoint signed 30 events: events 30-30 were deleted"):
        await _audit(kept)
    await _tamper(signed, "DELETE FROM log_checkpoints WHERE size = 30")
    with pytest.raises(Rejected, match=r"cut back \(events 30-30 are gone"):
        await _audit(kept)


async def _forge_append(db: Database, stream_id: str = "document-forged") -> int:
    """Append an event with a correct chain link straight into the table, as someone without the key
    could; returns its position."""
    last = (await _rows(db))[-1]
    forged = audit.StoredRow(
        **{
            **_fields(last),
            "position": last.position + 1,
            "stream_id": stream_id,
            "stream_version": 1,
            "prev_hash": last.hash,
            "event_id": uuid.uuid4(),
        }
    )
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(audit.events), [{**_fields(forged), "hash": forged.computed_hash()}])
    return forged.position


async def test_an_append_without_the_key_is_unsigned(kept: Auditor, signed: Database) -> None:
    assert await _forge_append(signed) == 31
    with pytest.raises(Rejected, match="events 31-31 are not covered by the signed checkpoint"):
        await _audit(kept)
    async with signed.read() as conn:
        report = await audit.verify(conn)
    assert report.ok
    assert (report.signed_size, report.unsigned) == (30, 1)


async def test_a_forged_append_is_not_laundered_by_later_writes_or_a_restart(
    kept: Auditor,
    signed: Database,
    client: AsyncTestClient[Any],
    database_url: str,
    signer: signing.Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _forge_append(signed)
    # A legitimate write after it: recorded, but its transaction signs nothing over the forged event.
    with caplog.at_level(logging.WARNING, logger="timeline.store"):
        await _record(signed, "document: {id: after, title: After, published_on: '2024-12'}\n", "after")
    assert "events 31-32 are left unsigned: the log before this transaction's events (from 32)" in caplog.text
    # A restart (what `serve` runs before it listens) signs nothing either.
    restarted = Database(database_url, signer=signer)
    try:
        await maintenance.catch_up(restarted)
    finally:
        await restarted.dispose()
    async with signed.read() as conn:
        assert [c.size for c in await tree.all_checkpoints(conn)] == [29, 30]
    health = (await client.get("/health")).json()
    assert (health["signed_position"], health["unsigned_events"], health["unsigned_from"]) == (30, 2, 31)
    with pytest.raises(Rejected, match="events 31-32 are not covered by the signed checkpoint"):
        await _audit(kept)
    async with signed.read() as conn:
        report = await audit.verify(conn, verifier=signer.verifier_text())
    assert (report.signed_size, report.unsigned) == (30, 2)


async def test_a_checkpoint_row_written_without_the_key_extends_nothing(
    kept: Auditor, signed: Database, signer: signing.Signer
) -> None:
    # The forger also adds a checkpoint of 31 events: signed by another key, or a genuine note given a
    # size it does not sign. Neither makes the next write sign over the forged event.
    await _forge_append(signed)
    async with signed.read() as conn:
        genuine = await tree.checkpoint_at(conn, 30)
        root = await tree.root(conn, 31)
    assert genuine is not None
    other = signing.Signer.generate(signer.name)
    for n, note in enumerate(
        (other.sign(signing.checkpoint_body(signer.name, 31, root, dt_now())), genuine.note)
    ):
        async with signed.engine.begin() as conn:
            await conn.execute(sa.delete(tree.log_checkpoints).where(tree.log_checkpoints.c.size == 31))
            row = {"size": 31, "root_hash": root.hex(), "recorded_at": dt_now(), "note": note}
            await conn.execute(sa.insert(tree.log_checkpoints), [row])
        await _record(signed, f"document: {{id: d{n}, title: D, published_on: '2024-12'}}\n", f"d{n}")
        async with signed.read() as conn:
            assert await eventlog.head_position(conn) == 32 + n  # the write was recorded
            assert (await tree.latest_checkpoint(conn)) == (await tree.checkpoint_at(conn, 31))
    with pytest.raises(Rejected, match="checkpoint"):
        await _audit(kept)


async def test_an_operator_signs_the_head_once_they_have_checked_it(
    kept: Auditor,
    signed: Database,
    database_url: str,
    signer: signing.Signer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TIMELINE_SIGNING_KEY", signer.private_text())
    await _forge_append(signed)
    assert await _cli("--database-url", database_url, "verify") == 2
    assert "UNSIGNED: events 31-31" in capsys.readouterr().out
    # Signing a size other than the one checked (the log may have grown since) signs nothing.
    assert await _cli("--database-url", database_url, "keys", "sign-head", "--size", "30") == 1
    assert "the log holds 31 events, not the 30 you checked" in capsys.readouterr().err
    assert await _cli("--database-url", database_url, "keys", "sign-head", "--size", "31") == 0
    assert "signed the checkpoint of 31 events" in capsys.readouterr().out
    # Signing is back: the next write extends the signed head and signs its own checkpoint.
    await _record(signed, "document: {id: after, title: After, published_on: '2024-12'}\n", "after")
    async with signed.read() as conn:
        assert [c.size for c in await tree.all_checkpoints(conn)] == [29, 30, 31, 32]
    assert "the whole log (32 events)" in await _audit(kept)
    # A broken log is never signed over.
    await _tamper(signed, "UPDATE events SET data = REPLACE(data, '1500', '1501') WHERE position = 13")
    await _forge_append(signed, "document-forged-again")
    assert await _cli("--database-url", database_url, "keys", "sign-head", "--size", "33") == 1
    assert "nothing signed: the log is broken at position 13" in capsys.readouterr().err


async def test_a_full_rewrite_of_the_chain_is_caught(kept: Auditor, signed: Database) -> None:
    rows = await _rows(signed)
    statements = _rechained(rows, {13: rows[12].data.replace("1500", "1501")})
    assert len(statements) == 18  # events 13 to 30, each with a hash that fits
    await _tamper(signed, *statements)
    async with signed.read() as conn:
        report = await audit.verify(conn)
    # The chain holds; the root the checkpoint of 29 events signed does not.
    assert report.first_break is not None
    assert report.first_break.position == 29
    assert "rewritten at or before" in report.first_break.problem
    with pytest.raises(Rejected, match="rewritten"):
        await _audit(kept)


# The command line -----------------------------------------------------------------------------------------


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_keys_create_and_verify_say_what_they_checked(
    signed: Database,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signer: signing.Signer,
) -> None:
    key = tmp_path / "log.key"
    assert await _cli("keys", "create", "--name", "example.org/log", "--output", str(key)) == 0
    verifier = capsys.readouterr().out.strip()
    assert verifier.startswith("example.org/log+")
    assert key.stat().st_mode & 0o077 == 0  # readable by its owner alone
    assert await _cli("keys", "create", "--output", str(key)) == 1
    assert "never overwritten" in capsys.readouterr().err
    monkeypatch.setenv("TIMELINE_SIGNING_KEY_FILE", str(key))
    assert await _cli("keys", "show") == 0
    assert capsys.readouterr().out.strip() == verifier
    # The log was signed with another key: verify says the signature does not hold, at its checkpoint.
    assert await _cli("--database-url", database_url, "verify") == 2
    assert "BROKEN at position 29: the checkpoint of 29 events" in capsys.readouterr().out
    monkeypatch.setenv("TIMELINE_SIGNING_KEY", signer.private_text())
    head = (await _rows(signed))[-1]
    assert await _cli("--database-url", database_url, "verify", "--since", f"29:{head.hash}") == 0
    out = capsys.readouterr().out
    assert "ok: 29 events checked, whole chain" in out
    assert "ok: 1 signed checkpoints, their roots recomputed and signatures" in out
    assert "ok: event 29 still has the hash you remembered" in out
    monkeypatch.setenv("TIMELINE_SIGNING_KEY", "PRIVATE+KEY+x+00000000+AAAA")
    assert await _cli("--database-url", database_url, "verify") == 1
    assert "the signing key cannot be used: TIMELINE_SIGNING_KEY" in capsys.readouterr().err


def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    # Commands then find var/timeline.key in ``where`` as ``serve`` does (an in-process `serve` earlier in the
    # run may have set a key in the environment for its workers).
    monkeypatch.delenv("TIMELINE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TIMELINE_SIGNING_KEY_FILE", raising=False)
    monkeypatch.chdir(where)


async def test_import_and_restore_sign_with_the_key_serve_finds(
    database_url: str,
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _no_key_in_the_environment(monkeypatch, tmp_path)
    assert await _cli("keys", "create") == 0  # var/timeline.key, where serve makes and reads it
    verifier = capsys.readouterr().out.strip()
    assert await _cli("--database-url", database_url, "import", str(SEED)) == 0
    assert await _cli("--database-url", database_url, "export", "--output", "log.jsonl") == 0
    assert await _cli("--database-url", empty_database_url, "restore", "log.jsonl") == 0
    for url in (database_url, empty_database_url):
        db = Database(url)
        try:
            async with db.read() as conn:
                [checkpoint] = await tree.all_checkpoints(conn)
        finally:
            await db.dispose()
        assert signing.verify_note(checkpoint.note, verifier).startswith("timeline.local/log\n29\n")
    capsys.readouterr()
    assert await _cli("--database-url", database_url, "verify") == 0
    assert "ok: 1 signed checkpoints, their roots recomputed and signatures" in capsys.readouterr().out


async def _checkpoint_keys(url: str, keys: dict[str, str]) -> list[str]:
    """The name in ``keys`` of the key that signed each checkpoint, smallest first."""
    db = Database(url)
    try:
        async with db.read() as conn:
            checkpoints = await tree.all_checkpoints(conn)
    finally:
        await db.dispose()

    def signed_by(note: str) -> str:
        for name, verifier in keys.items():
            try:
                signing.verify_note(note, verifier)
            except signing.BadKey:
                continue
            return name
        return "none"

    return [signed_by(c.note) for c in checkpoints]


async def test_a_rotated_key_signs_on_and_older_checkpoints_verify_with_the_keys_that_signed_them(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_key_in_the_environment(monkeypatch, tmp_path)
    url = ("--database-url", database_url)
    later = tmp_path / "later.yaml"
    assert await _cli("keys", "create") == 0
    first = capsys.readouterr().out.strip()
    assert await _cli(*url, "import", str(SEED)) == 0
    capsys.readouterr()
    assert await _cli("keys", "rotate") == 0
    second = capsys.readouterr().out.strip()
    assert second != first
    assert second.startswith("timeline.local/log+")
    assert signing.DEFAULT_KEY_FILE.stat().st_mode & 0o077 == 0
    assert await _cli("keys", "show") == 0
    shown = capsys.readouterr()
    assert shown.out.strip() == second
    assert first in shown.err  # kept, trusted for the checkpoints it signed
    # Writes sign on with the new key: the last checkpoint, by the old key, is trusted.
    later.write_text(LATER)
    assert await _cli(*url, "import", str(later)) == 0
    assert await _checkpoint_keys(database_url, {"first": first, "second": second}) == ["first", "second"]
    capsys.readouterr()
    assert await _cli(*url, "verify") == 0
    out = capsys.readouterr().out
    assert "ok: 2 signed checkpoints, their roots recomputed and signatures" in out
    assert "UNSIGNED" not in out
    # An event written without the key, then signed over by an operator: sign-head checks the older
    # checkpoints with the keys that signed them.
    monkeypatch.setenv("TIMELINE_SIGNING_KEY", signing.Signer.generate("timeline.local/log").private_text())
    later.write_text(LATER.replace("id: later", "id: later-unsigned"))
    assert await _cli(*url, "import", str(later)) == 0
    monkeypatch.delenv("TIMELINE_SIGNING_KEY")
    capsys.readouterr()
    assert await _cli("keys", "rotate") == 0
    third = capsys.readouterr().out.strip()
    assert await _cli(*url, "keys", "sign-head", "--size", "31") == 0
    assert "signed the checkpoint of 31 events" in capsys.readouterr().out
    keys = {"first": first, "second": second, "third": third}
    assert await _checkpoint_keys(database_url, keys) == ["first", "second", "third"]
    # A key replaced by hand: the old checkpoints do not verify until the keys that signed them are trusted.
    assert await _cli("keys", "create", "--output", "replaced.key") == 0
    monkeypatch.setenv("TIMELINE_SIGNING_KEY_FILE", "replaced.key")
    assert await _cli(*url, "verify") == 2
    assert "BROKEN at position 29: the checkpoint of 29 events" in capsys.readouterr().out
    for verifier in (first, second, third):
        assert await _cli("keys", "trust", verifier) == 0
    capsys.readouterr()
    assert await _cli("keys", "trust", first) == 0
    assert "trusts that key already" in capsys.readouterr().out
    assert await _cli(*url, "verify") == 0
    assert "ok: 3 signed checkpoints" in capsys.readouterr().out
    assert await _cli("keys", "trust", "example.org/log+00000000+AAAA") == 1
    assert "not a verifier key" in capsys.readouterr().err


async def test_verify_fails_on_events_no_checkpoint_covers(
    signed: Database, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No key in the environment (an in-process `serve` earlier in the run may have set one for its workers).
    monkeypatch.delenv("TIMELINE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TIMELINE_SIGNING_KEY_FILE", raising=False)
    last = (await _rows(signed))[-1]
    forged = audit.StoredRow(
        **{**_fields(last), "position": 30, "stream_id": "document-forged", "stream_version": 1}
        | {"prev_hash": last.hash, "event_id": uuid.uuid4()}
    )
    async with signed.engine.begin() as conn:
        await conn.execute(sa.insert(audit.events), [{**_fields(forged), "hash": forged.computed_hash()}])
    assert await _cli("--database-url", database_url, "verify") == 2
    assert "UNSIGNED: events 30-30 are covered by no signed checkpoint" in capsys.readouterr().out


async def test_an_altered_event_fails_its_claims_proof(kept: Auditor, signed: Database) -> None:
    await _tamper(signed, "UPDATE events SET data = REPLACE(data, '1500', '1501') WHERE position = 13")

    def run() -> list[str]:
        checkpoint, _ = kept.checkpoint()
        return kept.claim("nis-1500-soldiers-sent-for-training", checkpoint)

    with pytest.raises(Rejected, match="event 13: its contents do not match its hash"):
        await asyncio.to_thread(run)


async def test_a_group_commit_signs_one_checkpoint_for_its_batch(database_url: str) -> None:
    from timeline.groupcommit import Committer
    from timeline.service import Recorder

    from .helpers import claim_made, document, source, subject

    db = Database(database_url, signer=signing.Signer.generate("test.example/log"))
    committer = Committer(db)

    def unit(event: object) -> Any:
        async def run(recorder: Recorder) -> int:
            recorder.act_as(recorded_by="test", label="test")
            [recorded] = await recorder.record(event, origin="")  # type: ignore[arg-type]
            return recorded.position

        return run

    try:
        for event in (subject("s"), source("a"), document("d")):
            await committer.run(unit(event))
        # Queued together before the committer's loop runs again: one batch, one transaction.
        await asyncio.gather(
            *(committer.run(unit(claim_made(f"c{i}", "a", i, subject_id="s"))) for i in range(8))
        )
        async with db.read() as conn:
            sizes = [c.size for c in await tree.all_checkpoints(conn)]
    finally:
        await committer.close()
        await db.dispose()
    assert sizes[:3] == [1, 2, 3]
    assert sizes[-1] == 11
    assert len(sizes) < 11  # the eight concurrent writes did not each sign
