"""Sealing an append: the Merkle tree's new nodes and the signed checkpoint, computed in memory and written by
the same statement as the events (``driver.write``).

Re-reading the tree's stored frontier, the log's last events and the latest checkpoint cost five statements
per write, more than half of a single append's time. A process instead keeps what its last commit left: the
log's size and head hash, the tree's frontier (one root per bit of the size) and whether a checkpoint signed
with its key covers the whole log. The appending transaction holds the log's write lock, so comparing the head
its events continue from with the remembered one is enough to know nobody else wrote since; when someone did
(another process, an operator, a forger), the state is read back from the database as before. What a
transaction computes becomes the remembered state only once it commits.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline import merkle, signing
from timeline.store import tree
from timeline.store.statements import SEAL_STATE

if TYPE_CHECKING:
    from timeline.store.driver import Changes

# Keys on a write connection's info: its Sealer, and what the transaction sealed so far (a ``Sealed``).
SEALER = "timeline_sealer"
SEALED = "timeline_sealed"


@dataclass(frozen=True, slots=True)
class State:
    """The log as a commit left it: size, head hash, the tree's frontier roots, whether a checkpoint signed
    with this process's key covers exactly those ``size`` events, and the latest checkpoint's size."""

    size: int
    head_hash: str
    roots: tuple[bytes, ...]
    signed: bool
    covered: int


@dataclass(frozen=True, slots=True)
class Sealed:
    """What a transaction sealed so far: the state it leaves, the checkpoint it wrote (its size, to be
    replaced by a later seal in the same transaction), and the range it left unsigned."""

    state: State
    checkpoint: int | None
    unsigned: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """The signed log checkpoint a transaction writes: size, root (hex), time (and as the note writes it)
    and the signed note."""

    size: int
    root_hash: str
    at: dt.datetime
    stamped: str
    note: str

    def sqlite_time(self) -> str:
        """The time as SQLite stores it (``driver.sqlite_time``), cut from the stamp rather than formatted."""
        return f"{self.stamped[:10]} {self.stamped[11:26]}"


class Sealer:
    """One per database per process: the state of its last commit, and the key it signs with."""

    def __init__(self, signer: signing.Signer | None) -> None:
        self.signer = signer
        self._known: State | None = None

    def forget(self) -> None:
        """Read the state back from the database at the next write (something appended around the sealer)."""
        self._known = None

    def committed(self, sealed: Sealed | None) -> None:
        """The transaction that sealed ``sealed`` committed: its state is now the log's."""
        if sealed is not None:
            self._known = sealed.state

    async def _read(self, conn: AsyncConnection, driver: Any, size: int, head_hash: str) -> State:
        """The state from the database: in one statement while the stored tree reaches the head, else by
        extending the stored tree first (``tree.grow``, which only a transaction holding the lock may do)."""
        found = await _stored_state(conn.dialect.name, driver, size)
        if found is not None:
            frontier, latest = found
        else:
            frontier = await tree.grow(conn)
            checkpoint = await tree.latest_checkpoint(conn)
            latest = None if checkpoint is None else _Latest(checkpoint.size, checkpoint.note)
        if frontier.size != size:
            raise LookupError(f"the log ends at event {frontier.size}, but a write continues from {size}")
        signed, covered = False, 0
        if self.signer is not None:
            covered = latest.size if latest is not None else 0
            # A log that was empty is covered by no checkpoint, rightly; a checkpoint row written without
            # the key (its note not this key's signature of its size) covers nothing.
            signed = (latest is None and size == 0) or (
                latest is not None
                and latest.size == size
                and tree.signs(latest.note, self.signer.keyring(), latest.size)
            )
        return State(size, head_hash, tuple(frontier.roots), signed, covered)

    async def seal(self, conn: AsyncConnection, changes: Changes, driver: Any) -> None:
        """Add to ``changes`` the tree nodes its events complete and, when this key signed everything before
        them, the checkpoint of the log they leave (replacing one this transaction wrote earlier)."""
        rows = changes.events
        first: Any = rows[0]
        size, head_hash = int(first[0]) - 1, str(first[10])
        before: Sealed | None = conn.info.get(SEALED)
        state = before.state if before is not None else self._known
        if (
            state is None
            or state.size != size
            or state.head_hash != head_hash
            or (self.signer is not None and not state.signed and before is None)
        ):
            state = await self._read(conn, driver, size, head_hash)
        frontier = merkle.Frontier(state.size, state.roots)
        nodes = changes.tree_nodes
        for row in rows:
            for level, index, node in frontier.append(merkle.event_leaf(row[11])):
                if level >= tree.STORED:
                    nodes.append((level, index, node))
        last = rows[-1]
        sign = self.signer is not None and state.signed
        checkpoint: int | None = None
        unsigned: tuple[int, int] | None = None
        if self.signer is not None and sign:
            at = dt.datetime.now(dt.UTC)
            root = frontier.root()
            # Formatted once, as SQLite stores the same time (``SignedCheckpoint.sqlite_time``): each format
            # cost a signed write about 1% (callgrind: 13K instructions an isoformat).
            stamped = signing.stamp(at)
            note = self.signer.sign(signing.stamped_body(self.signer.name, frontier.size, root, stamped))
            changes.signed = SignedCheckpoint(frontier.size, root.hex(), at, stamped, note)
            checkpoint = frontier.size
            if before is not None and before.checkpoint is not None:
                changes.superseded = before.checkpoint
        elif self.signer is not None:
            # Signing over events no checkpoint of this key covers would launder them.
            unsigned = (state.covered + 1, frontier.size)
        covered = frontier.size if sign else state.covered
        after = State(frontier.size, str(last[11]), tuple(frontier.roots), sign, covered)
        conn.info[SEALED] = Sealed(after, checkpoint, unsigned)


class _Latest(NamedTuple):
    """The latest signed checkpoint, as far as sealing needs it."""

    size: int
    note: str


async def _stored_state(
    dialect: str, driver: Any, size: int
) -> tuple[merkle.Frontier, _Latest | None] | None:
    """The tree's frontier over the first ``size`` events and the latest checkpoint, in one statement; None
    when a stored node it needs or an event is missing (the stored tree emptied by hand, say)."""
    base = size >> tree.STORED << tree.STORED
    wanted = merkle.Frontier.nodes(base)
    if dialect == "postgresql":
        # unnest of NULL is no rows, as of an empty list, without asyncpg checking a list for each.
        levels = [n[0] for n in wanted] or None
        indexes = [n[1] for n in wanted] or None
        rows = await driver.fetch(SEAL_STATE[dialect], levels, indexes, base, size)
    else:
        rows = await driver.execute_fetchall(SEAL_STATE[dialect], (json.dumps(wanted), base, size))
    nodes: dict[tuple[int, int], bytes] = {}
    chain: list[tuple[int, str]] = []
    latest: _Latest | None = None
    for part, level, index, node, text in rows:
        if part == 0:
            nodes[(int(level), int(index))] = bytes(node)
        elif part == 1:
            chain.append((int(index), str(text)))
        else:
            latest = _Latest(int(index), str(text))
    chain.sort()
    if len(nodes) != len(wanted) or [p for p, _ in chain] != list(range(base + 1, size + 1)):
        return None
    frontier = merkle.Frontier(base, [nodes[n] for n in wanted])
    for _, digest in chain:
        frontier.append(merkle.event_leaf(digest))
    return frontier, latest
