"""The Merkle tree over the log (RFC 9162 section 2.1), as pure functions: hashing, appending, proofs.

Leaf ``i`` (0-based) is event ``i + 1``'s chain hash as 32 raw bytes. A node is named ``(level, index)``: the
complete subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``. Proofs are lists of subtree
roots; ``inclusion_ranges`` and ``consistency_ranges`` say which leaf ranges they cover, ``nodes_of`` splits
a range into complete nodes, which storage looks up, and ``fold`` hashes them back into the range's root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

Node = tuple[int, int]  # (level, index)
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162's hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162's hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def event_leaf(chain_hash_hex: str) -> bytes:
    """The leaf hash of an event, from its chain hash (64 hex digits)."""
    return leaf_hash(bytes.fromhex(chain_hash_hex))


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def nodes_of(start: int, end: int) -> list[Node]:
    """The complete nodes whose roots, left to right, make up the leaves ``[start, end)``, where ``start`` is
    a multiple of a power of two no smaller than ``end - start`` (every range in a proof is)."""
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(roots: Sequence[bytes]) -> bytes:
    """The root of a range from its complete nodes' roots (``nodes_of`` order): folded from the right, as the
    tree hashes a range whose size is not a power of two."""
    if not roots:
        return EMPTY_ROOT
    acc = roots[-1]
    for root in reversed(roots[:-1]):
        acc = node_hash(root, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form the inclusion proof of leaf ``index`` in a tree of ``size`` leaves,
    in proof order (RFC 9162 2.1.3.1: the sibling nearest the leaf first)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return list(reversed(ranges))


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form the consistency proof from a tree of ``old`` leaves to one of ``new``
    (RFC 9162 2.1.4.1), in proof order."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new} leaves")
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        ranges.append((start, end))
    return list(reversed(ranges))


class Frontier:
    """The right edge of a growing tree: the roots of its complete subtrees, largest first. Appending a
    leaf reports the nodes it completes, so storage can keep them."""

    def __init__(self, size: int = 0, roots: Iterable[bytes] = ()) -> None:
        self.size = size
        self.roots = list(roots)
        if len(self.roots) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier roots")

    @staticmethod
    def nodes(size: int) -> list[Node]:
        """The complete nodes on the frontier of a tree of ``size`` leaves, largest first."""
        return nodes_of(0, size)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns every node (level, index, hash) it completes, the leaf itself first."""
        made = [(0, self.size, leaf)]
        index, level, acc = self.size, 0, leaf
        while index & 1:
            acc = node_hash(self.roots.pop(), acc)
            index, level = index >> 1, level + 1
            made.append((level, index, acc))
        self.roots.append(acc)
        self.size += 1
        return made

    def root(self) -> bytes:
        """The root hash of the tree so far."""
        return fold(self.roots)


def subtree_root(level: int, index: int, leaves: Callable[[int, int], Sequence[bytes]]) -> bytes:
    """The root of a complete node computed from its leaf hashes (``leaves(start, end)``)."""
    frontier = Frontier()
    for leaf in leaves(index << level, (index + 1) << level):
        frontier.append(leaf)
    return frontier.root()
