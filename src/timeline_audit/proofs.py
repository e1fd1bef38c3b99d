"""What the auditor recomputes itself: an event's chain hash, RFC 9162 leaf and node hashes, roots, and the
checks of inclusion and consistency proofs (RFC 9162 2.1.3.2 and 2.1.4.2). Standard library only; nothing
here is shared with the server's code."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any


def chain_hash(e: Mapping[str, Any]) -> str:
    """An event's hash from its stored fields (an export line), as docs/audit.md defines it."""
    fields = [
        e["position"],
        e["event_id"],
        e["stream_id"],
        e["stream_version"],
        e["type"],
        e["schema_version"],
        e["data"],
        e["metadata"],
        e["valid_from"] or "",
        e["recorded_at"],
    ]
    canonical = "\n".join(str(f) for f in fields)
    return hashlib.sha256(f"{e['prev_hash']}\n{canonical}".encode()).hexdigest()


def leaf(chain_hash_hex: str) -> bytes:
    """The tree's leaf hash of an event: SHA-256(0x00 || its 32-byte chain hash)."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(chain_hash_hex)).digest()


def node(left: bytes, right: bytes) -> bytes:
    """An interior node's hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """Roots of a growing tree, from its leaves in order (the right edge kept, as a stack)."""

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[tuple[int, bytes]] = []  # (leaves under it, hash)

    def add(self, leaf_hash: bytes) -> None:
        """Append a leaf."""
        count, acc = 1, leaf_hash
        while self._edge and self._edge[-1][0] == count:
            count, acc = count * 2, node(self._edge.pop()[1], acc)
        self._edge.append((count, acc))
        self.size += 1

    def root(self) -> bytes:
        """The root of the tree so far (SHA-256 of nothing when empty)."""
        if not self._edge:
            return hashlib.sha256(b"").digest()
        acc = self._edge[-1][1]
        for _, h in reversed(self._edge[:-1]):
            acc = node(h, acc)
        return acc


def _shift_until_set(fn: int, sn: int) -> tuple[int, int]:
    while not fn & 1 and fn != 0:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def inclusion_ok(leaf_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """Whether ``path`` proves leaf ``index`` with hash ``leaf_hash`` is in the tree of ``size`` with
    ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                fn, sn = _shift_until_set(fn, sn)
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def consistency_ok(old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]) -> bool:
    """Whether ``path`` proves the tree of ``new`` leaves with ``new_root`` extends the one of ``old`` with
    ``old_root``."""
    if not 0 < old <= new:
        return False
    if old == new:
        return not path and old_root == new_root
    if not path:
        return False
    hashes = list(path)
    if old & (old - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        hashes.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                fn, sn = _shift_until_set(fn, sn)
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
