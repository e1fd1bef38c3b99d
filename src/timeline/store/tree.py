"""The Merkle tree over the log, stored: its nodes of level ``STORED`` and above, kept as the log grows; the
signed checkpoints and witnesses' cosignatures; and the proofs, in O(log n) reads."""

from __future__ import annotations

import base64
import datetime as dt
import functools
from collections.abc import Iterable, Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import merkle, signing
from timeline.merkle import Node
from timeline.store.schema import cosignatures, events, log_checkpoints, tree_nodes

# Nodes below this level (up to 15 leaves) are hashed from the events' hashes when asked for: storing
# them would cost about one row per event for little saving.
STORED = 4
_BATCH = 10_000


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A signed checkpoint as stored: the size, root (hex), time, and the signed note itself."""

    size: int
    root_hash: str
    recorded_at: dt.datetime
    note: str


async def _stored(conn: AsyncConnection, nodes: Iterable[Node]) -> dict[Node, bytes]:
    wanted = [n for n in nodes if n[0] >= STORED]
    if not wanted:
        return {}
    result = await conn.execute(
        sa.select(tree_nodes.c.level, tree_nodes.c.idx, tree_nodes.c.hash).where(
            sa.tuple_(tree_nodes.c.level, tree_nodes.c.idx).in_(wanted)
        )
    )
    return {(int(r[0]), int(r[1])): bytes(r[2]) for r in result}


async def leaves(conn: AsyncConnection, start: int, end: int) -> list[bytes]:
    """The leaf hashes of leaves ``[start, end)`` (events ``start + 1`` to ``end``), from the stored chain
    hashes."""
    result = await conn.execute(
        sa.select(events.c.position, events.c.hash)
        .where(events.c.position > start, events.c.position <= end)
        .order_by(events.c.position)
    )
    found = [(int(r[0]), str(r[1])) for r in result]
    if [p for p, _ in found] != list(range(start + 1, end + 1)):
        raise LookupError(f"the log is missing events between {start + 1} and {end}")
    return [merkle.event_leaf(h) for _, h in found]


async def resolve(conn: AsyncConnection, nodes: Sequence[Node]) -> list[bytes]:
    """The hashes of complete nodes: stored ones in one query, small ones from the events' hashes."""
    stored = await _stored(conn, nodes)
    hashes: list[bytes] = []
    for level, index in nodes:
        found = stored.get((level, index))
        if found is None:
            if level >= STORED:
                raise LookupError(f"the tree has no node ({level}, {index}): it was not kept up to date")
            span = await leaves(conn, index << level, (index + 1) << level)
            found = merkle.fold(_roots(span))
        hashes.append(found)
    return hashes


def _roots(span: list[bytes]) -> list[bytes]:
    frontier = merkle.Frontier()
    for leaf in span:
        frontier.append(leaf)
    return frontier.roots


async def range_root(conn: AsyncConnection, start: int, end: int) -> bytes:
    """The root of the leaves ``[start, end)``."""
    return merkle.fold(await resolve(conn, merkle.nodes_of(start, end)))


async def root(conn: AsyncConnection, size: int) -> bytes:
    """The root hash of the tree over the first ``size`` events."""
    return await range_root(conn, 0, size)


async def extend(conn: AsyncConnection) -> tuple[int, bytes]:
    """Store the nodes the events appended since the last call complete; the tree's size and root after.
    Runs in the appending transaction, so the tree never lags the log that committed."""
    frontier = await grow(conn)
    return frontier.size, frontier.root()


async def grow(conn: AsyncConnection) -> merkle.Frontier:
    """``extend``, returning the tree's frontier over the whole log (for a writer to go on from)."""
    result = await conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(tree_nodes.c.idx) + 1, 0)).where(tree_nodes.c.level == STORED)
    )
    base = int(result.scalar_one()) << STORED
    frontier = merkle.Frontier(base, await resolve(conn, merkle.Frontier.nodes(base)))
    while True:
        result = await conn.execute(
            sa.select(events.c.position, events.c.hash)
            .where(events.c.position > frontier.size)
            .order_by(events.c.position)
            .limit(_BATCH)
        )
        batch = result.all()
        made: list[dict[str, object]] = []
        for position, digest in batch:
            if position != frontier.size + 1:
                raise LookupError(f"event {frontier.size + 1} is missing from the log")
            for level, index, node in frontier.append(merkle.event_leaf(digest)):
                if level >= STORED:
                    made.append({"level": level, "idx": index, "hash": node})
        if made:
            await conn.execute(sa.insert(tree_nodes), made)
        if len(batch) < _BATCH:
            return frontier


async def sign(
    conn: AsyncConnection, signer: signing.Signer, size: int, root_hash: bytes, at: dt.datetime
) -> Checkpoint:
    """Record a checkpoint of the first ``size`` events, signed now."""
    note = signer.sign(signing.checkpoint_body(signer.name, size, root_hash, at))
    checkpoint = Checkpoint(size=size, root_hash=root_hash.hex(), recorded_at=at, note=note)
    await conn.execute(sa.insert(log_checkpoints), [msgspec.structs.asdict(checkpoint)])
    return checkpoint


async def commit_checkpoint(
    conn: AsyncConnection, signer: signing.Signer | None, appended_from: int | None = None
) -> tuple[int, int] | None:
    """What a transaction that appended around the sealer (``store.seal``: a restore) does before it commits,
    from the database: extend the tree, and sign its new head; ``appended_from`` is the first
    position this transaction appended. It signs only when its own appends extend the last signed
    checkpoint: events before them that no checkpoint covers were written by someone else (with database
    access but not the key), and signing over them would launder them. Returns the range left unsigned."""
    size, root_hash = await extend(conn)
    if signer is None or appended_from is None:
        return None
    latest = await latest_checkpoint(conn)
    signed = 0 if latest is None else latest.size
    if signed >= size:
        return None
    # A checkpoint row written without the key (its note not signed by it for its size) extends nothing.
    genuine = latest is None or signs(latest.note, signer.keyring(), latest.size)
    if genuine and signed == appended_from - 1:
        await sign(conn, signer, size, root_hash, dt.datetime.now(dt.UTC))
        return None
    return signed + 1, size


@functools.lru_cache(maxsize=8)
def signs(note: str, verifier: str, size: int) -> bool:
    """Whether ``note`` is a checkpoint of ``size`` events signed by ``verifier`` (cached: every write
    transaction asks about the same latest checkpoint)."""
    try:
        body = signing.verify_note(note, verifier)
    except (signing.BadKey, ValueError):
        return False
    lines = body.split("\n")
    return len(lines) > 1 and lines[1] == str(size)


async def sign_head(conn: AsyncConnection, signer: signing.Signer, size: int) -> Checkpoint:
    """Sign the head of a log of ``size`` events an operator has checked (``timeline keys sign-head``), the
    one way events no checkpoint covers get signed; ``ValueError`` when the log is not that size."""
    head, root_hash = await extend(conn)
    if head != size:
        raise ValueError(f"the log holds {head} events, not the {size} you checked: verify it again")
    latest = await latest_checkpoint(conn)
    if latest is not None and latest.size >= size:
        raise ValueError(f"a checkpoint of {latest.size} events is signed already: nothing to sign")
    return await sign(conn, signer, size, root_hash, dt.datetime.now(dt.UTC))


async def unsigned(conn: AsyncConnection) -> tuple[int, int] | None:
    """The events no signed checkpoint covers, as (first, last) positions, or None."""
    result = await conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0)))
    head = int(result.scalar_one())
    latest = await latest_checkpoint(conn)
    signed = 0 if latest is None else latest.size
    return (signed + 1, head) if head > signed else None


def _checkpoint(m: sa.RowMapping) -> Checkpoint:
    at = m["recorded_at"]
    return Checkpoint(
        size=int(m["size"]),
        root_hash=m["root_hash"],
        recorded_at=at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC),
        note=m["note"],
    )


async def latest_checkpoint(conn: AsyncConnection) -> Checkpoint | None:
    """The newest signed checkpoint, if any."""
    result = await conn.execute(sa.select(log_checkpoints).order_by(log_checkpoints.c.size.desc()).limit(1))
    found = result.mappings().first()
    return None if found is None else _checkpoint(found)


async def checkpoint_at(conn: AsyncConnection, size: int) -> Checkpoint | None:
    """The signed checkpoint of exactly ``size`` events, if one was made."""
    result = await conn.execute(sa.select(log_checkpoints).where(log_checkpoints.c.size == size))
    found = result.mappings().first()
    return None if found is None else _checkpoint(found)


async def all_checkpoints(conn: AsyncConnection) -> list[Checkpoint]:
    """Every signed checkpoint, smallest first."""
    result = await conn.execute(sa.select(log_checkpoints).order_by(log_checkpoints.c.size))
    return [_checkpoint(m) for m in result.mappings()]


async def inclusion(conn: AsyncConnection, index: int, size: int) -> list[bytes]:
    """The inclusion proof of leaf ``index`` (event ``index + 1``) in the tree of ``size`` leaves."""
    return [await range_root(conn, a, b) for a, b in merkle.inclusion_ranges(index, size)]


async def consistency(conn: AsyncConnection, old: int, new: int) -> list[bytes]:
    """The consistency proof from the tree of ``old`` leaves to the tree of ``new``."""
    return [await range_root(conn, a, b) for a, b in merkle.consistency_ranges(old, new)]


def b64(hashes: Sequence[bytes]) -> list[str]:
    """Proof hashes as base64 text, as checkpoints write hashes."""
    return [base64.b64encode(h).decode() for h in hashes]


# Cosignatures ----------------------------------------------------------------------------------------------


class Cosigned(msgspec.Struct, frozen=True, kw_only=True):
    """A witness's cosignature of one checkpoint."""

    size: int
    witness: str
    verifier_key: str
    signature: str
    signed_at: dt.datetime


async def add_cosignature(conn: AsyncConnection, cosigned: Cosigned) -> None:
    """Keep a (checked) cosignature; a witness's later one for the same checkpoint replaces its earlier."""
    await conn.execute(
        sa.delete(cosignatures).where(
            cosignatures.c.size == cosigned.size, cosignatures.c.witness == cosigned.witness
        )
    )
    await conn.execute(sa.insert(cosignatures), [msgspec.structs.asdict(cosigned)])


async def cosignatures_of(conn: AsyncConnection, size: int) -> list[Cosigned]:
    """The cosignatures kept for a checkpoint, by witness name."""
    result = await conn.execute(
        sa.select(cosignatures).where(cosignatures.c.size == size).order_by(cosignatures.c.witness)
    )
    out = []
    for m in result.mappings():
        at = m["signed_at"]
        out.append(
            Cosigned(
                size=int(m["size"]),
                witness=m["witness"],
                verifier_key=m["verifier_key"],
                signature=m["signature"],
                signed_at=at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC),
            )
        )
    return out
