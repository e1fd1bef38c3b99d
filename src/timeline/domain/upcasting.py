"""Reading events stored by earlier versions: upcasters registered per event type and schema version.

Stored bytes are never rewritten (the hash chain covers them). When an event's stored shape changes
incompatibly, its ``SCHEMA_VERSION`` is bumped and an upcaster from the previous version is registered
here; every read decodes through ``decode``, which chains the upcasters from the stored version to the
current one. An event at its current version (every event, until the first bump) is decoded directly.
See docs/events.md, "Versions and upcasters".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from timeline.domain.events import SCHEMA_VERSION, DomainEvent, decode_event

# One stored version's fields (the JSON object, ``type`` tag included) to the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (event type, the version it upcasts from) -> the upcaster to ``from_version + 1``.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownVersion(ValueError):
    """A stored event this version cannot read: an unknown type, a newer schema version, or a gap."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the decorated function as the upcaster of ``event_type`` from ``from_version``."""
    if event_type not in SCHEMA_VERSION:
        raise ValueError(f"no event type {event_type!r}")
    if not 1 <= from_version < SCHEMA_VERSION[event_type]:
        raise ValueError(
            f"{event_type} is at version {SCHEMA_VERSION[event_type]}; "
            f"an upcaster from version {from_version} would never run"
        )
    if (event_type, from_version) in UPCASTERS:
        raise ValueError(f"{event_type} already has an upcaster from version {from_version}")

    def register(upcast: Upcaster) -> Upcaster:
        UPCASTERS[event_type, from_version] = upcast
        return upcast

    return register


def missing() -> list[tuple[str, int]]:
    """The (type, version) steps with no upcaster: any is a version bump that forgot its upcaster."""
    steps = [(name, v) for name, current in SCHEMA_VERSION.items() for v in range(1, current)]
    return [step for step in steps if step not in UPCASTERS]


def upcast(event_type: str, schema_version: int, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored event brought from ``schema_version`` to its type's current version."""
    current = SCHEMA_VERSION.get(event_type)
    if current is None:
        raise UnknownVersion(f"no event type {event_type!r} in this version of timeline")
    if schema_version > current or schema_version < 1:
        raise UnknownVersion(
            f"{event_type} schema_version {schema_version} was written by another version of timeline "
            f"(this one reads {event_type} versions 1 to {current})"
        )
    for version in range(schema_version, current):
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownVersion(f"no upcaster for {event_type} from schema_version {version}")
        fields = step(fields)
    return fields


def decode(data: bytes | str, event_type: str, schema_version: int) -> DomainEvent:
    """The current event stored as ``data`` with ``event_type`` at ``schema_version``.

    Raises ``UnknownVersion``, ``msgspec.DecodeError`` or ``msgspec.ValidationError`` when it cannot."""
    if SCHEMA_VERSION.get(event_type) == schema_version:
        return decode_event(data)  # the hot path: one msgspec decode, no dict in between
    fields = msgspec.json.decode(data)
    if not isinstance(fields, dict):
        raise UnknownVersion(f"the stored {event_type} is not a JSON object")
    event: DomainEvent = msgspec.convert(upcast(event_type, schema_version, fields), DomainEvent)
    return event
