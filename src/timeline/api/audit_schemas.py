"""Bodies of the audit routes: checkpoints' heads, Merkle proofs, cosignatures and events as stored."""

from __future__ import annotations

import datetime as dt

import msgspec


class HeadOut(msgspec.Struct, kw_only=True):
    """The last event's position and hash: note them, and later verify the log only grew from there."""

    position: int
    hash: str


class InclusionOut(msgspec.Struct, kw_only=True):
    """An RFC 9162 inclusion proof: the sibling subtree roots (base64), the one nearest the leaf first."""

    position: int
    leaf_index: int
    size: int
    hashes: list[str]


class ConsistencyOut(msgspec.Struct, kw_only=True):
    """An RFC 9162 consistency proof between two tree sizes (hashes in base64)."""

    from_size: int = msgspec.field(name="from")
    to_size: int = msgspec.field(name="to")
    hashes: list[str]


class CosignatureIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A witness's cosignature of the signed checkpoint of ``size`` events (a C2SP tlog-cosignature line),
    with the witness's verifier key (a cosignature/v1 key) to check it by."""

    size: int
    verifier_key: str
    signature: str


class CosignatureOut(msgspec.Struct, kw_only=True):
    """A cosignature kept."""

    size: int
    witness: str
    signed_at: dt.datetime


class StoredEventOut(msgspec.Struct, kw_only=True):
    """An event exactly as stored and hashed (the form of an export line), to recompute its hash from."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    valid_from: dt.date | None
    recorded_at: str
    data: str
    metadata: str
    prev_hash: str
    hash: str


class EventProofOut(msgspec.Struct, kw_only=True):
    """An event as stored, and its inclusion proof in the tree of the checkpoint the history names."""

    stored: StoredEventOut
    inclusion: InclusionOut
