"""A stored time-travel snapshot's row (``store.snapshots`` says what it holds): found at or around a
position, checked against the log and against its digest, and its parts read one at a time, each checked
against its hash. ``store.decoded`` decodes and keeps what a reader takes from them; ``encoded`` is what the
snapshot taker reads, its claims left as stored."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store.schema import events, time_travel_snapshots
from timeline.store.snapshots import FORMAT, PARTS, Carried, Snapshot, digest, part_hash

_log = logging.getLogger(__name__)
versions_decoder = msgspec.json.Decoder(dict[str, int])


def row_at(subject_id: str, position: int, *, before: bool) -> sa.Select[Any]:
    """The subject's last snapshot row at or before ``position`` (or first after), with the hash the log
    holds at its position."""
    s = time_travel_snapshots
    at = s.c.position <= position if before else s.c.position > position
    return (
        sa.select(s.c.position, s.c.format, s.c.chain_hash, s.c.digest, s.c.parts, events.c.hash)
        .join(events, events.c.position == s.c.position, isouter=True)
        .where(s.c.subject_id == subject_id, at)
        .order_by(s.c.position.desc() if before else s.c.position)
        .limit(1)
    )


def confirmed(subject_id: str, row: sa.Row[Any]) -> bool:
    """Whether the log still holds, at the row's position, the event it was folded up to, and the row's
    digest covers its parts (each part is checked against its hash as it is read)."""
    at, fmt, chain_hash, recorded_digest, parts, logged_hash = tuple(row)
    if fmt != FORMAT:
        return False
    if logged_hash != chain_hash or digest(subject_id, at, chain_hash, parts) != recorded_digest:
        _log.warning(
            "the time-travel snapshot of %s at position %d does not match the log; folding from the log",
            subject_id,
            at,
        )
        return False
    return True


async def part(conn: AsyncConnection, subject_id: str, position: int, parts: str, name: str) -> bytes | None:
    """One stored part of a snapshot whose ``parts`` were checked against its digest, if it matches its
    hash there (else None: edited, or another row's since)."""
    found = await parts_of(conn, subject_id, position, parts, (name,))
    return None if found is None else found[name]


async def parts_of(
    conn: AsyncConnection, subject_id: str, position: int, parts: str, names: Sequence[str]
) -> dict[str, bytes] | None:
    """The named stored parts of a snapshot whose ``parts`` were checked against its digest, in one read,
    if each matches its hash there (else None: edited, or another row's since)."""
    s = time_travel_snapshots
    found = (
        await conn.execute(
            sa.select(*(s.c[name] for name in names)).where(
                s.c.subject_id == subject_id, s.c.position == position, s.c.parts == parts
            )
        )
    ).first()
    if found is None:  # pruned since (only outside a read transaction's snapshot)
        return None
    stored = {name: bytes(part) for name, part in zip(names, found, strict=True)}
    hashes = parts.split()
    for name, part in stored.items():
        if part_hash(part) != hashes[PARTS.index(name)]:
            _log.warning(
                "the %s of the time-travel snapshot of %s at position %d does not match its hash; folding "
                "from the log",
                name,
                subject_id,
                position,
            )
            return None
    return stored


def malformed(subject_id: str, position: int, part: str) -> None:
    """Log that a snapshot's part, though it matches its hash, does not decode as one (the digest is no
    signature: a row can be rewritten whole): it is not used, and cuts and takes fold from the log."""
    _log.warning(
        "the %s of the time-travel snapshot of %s at position %d is not a snapshot's; folding from the log",
        part,
        subject_id,
        position,
    )


class _EncodedState(msgspec.Struct, frozen=True, kw_only=True):
    claims: dict[str, msgspec.Raw]
    sources: list[str]


_encoded_state_decoder = msgspec.json.Decoder(_EncodedState)
_encoded_earlier_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


async def encoded(conn: AsyncConnection, subject_id: str, position: int) -> Snapshot | None:
    """The latest snapshot of the subject at or before ``position`` that the log confirms, with every claim
    left as stored (``carried``: what a new snapshot keeps of it), else None. Not cached: the snapshot
    taker reads each once, to take the next."""
    row = (await conn.execute(row_at(subject_id, position, before=True))).first()
    if row is None or not confirmed(subject_id, row):
        return None
    at, parts = row[0], row[4]
    if (stored := await parts_of(conn, subject_id, at, parts, PARTS)) is None:
        return None
    # Its hashes hold, but the digest is no signature: a row rewritten whole may hold anything, and a taker
    # that failed on it would fail on every batch after.
    try:
        state = _encoded_state_decoder.decode(stored["state"])
        carried = Carried(
            claims=state.claims,
            earlier=_encoded_earlier_decoder.decode(stored["earlier"]),
            versions=versions_decoder.decode(stored["versions"]),
        )
    except msgspec.DecodeError:
        carried = None
    if (
        carried is None
        or carried.versions.keys() != carried.claims.keys()
        or carried.earlier.keys() - carried.claims.keys()
    ):
        malformed(subject_id, at, "parts")
        return None
    return Snapshot(position=at, claims={}, sources=state.sources, parts=parts, carried=carried)
