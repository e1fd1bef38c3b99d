"""The hash chain over the log: each event's hash covers its canonical bytes and the previous hash.

The recipe (also in docs/audit.md, so anyone can check a log without timeline):

    canonical = "\\n".join([position, event_id, stream_id, stream_version, type, schema_version,
                            data, metadata, valid_from or "", recorded_at])
    hash      = sha256(prev_hash + "\\n" + canonical), as 64 lowercase hex digits

``data`` and ``metadata`` are the stored JSON text exactly; ``recorded_at`` is UTC as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``; numbers are decimal; the first event's ``prev_hash`` is 64 zeros.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid

GENESIS = "0" * 64


@functools.lru_cache(maxsize=16)  # the events of one write share their time; verify meets runs of them
def timestamp(value: dt.datetime) -> str:
    """A recording time as it enters the hash: UTC, microseconds, a Z."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    *,
    position: int,
    event_id: uuid.UUID | str,
    stream_id: str,
    stream_version: int,
    type: str,
    schema_version: int,
    data: str,
    metadata: str,
    valid_from: dt.date | None,
    recorded_at: dt.datetime,
) -> bytes:
    """The bytes an event's hash covers (besides the previous hash)."""
    fields = (position, event_id, stream_id, stream_version, type, schema_version, data, metadata)
    return canonical_of(*fields, valid_from, timestamp(recorded_at))


def canonical_of(
    position: int,
    event_id: uuid.UUID | str,
    stream_id: str,
    stream_version: int,
    type: str,
    schema_version: int,
    data: str,
    metadata: str,
    valid_from: dt.date | None,
    stamp: str,
) -> bytes:
    """``canonical`` with positional arguments and the recording time as ``timestamp`` wrote it, for the
    write path (a call per event; a batch's events share one time, written once)."""
    return (
        f"{position}\n{event_id}\n{stream_id}\n{stream_version}\n{type}\n{schema_version}\n{data}\n"
        f"{metadata}\n{valid_from.isoformat() if valid_from is not None else ''}\n{stamp}"
    ).encode()


def link(prev_hash: str, canonical_bytes: bytes) -> str:
    """The hash of an event, chained to the one before it."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_bytes).hexdigest()
