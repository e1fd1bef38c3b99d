"""The fold of the asynchronous source_activity projection: which source an event counts for, and as what."""

from __future__ import annotations

from timeline.domain.events import DomainEvent
from timeline.domain.streams import source_roles

# The source_activity column each role counts in (a source a correction moves a claim to counts nowhere).
_COUNTERS = {
    "maker": "claims_made",
    "denier": "denials",
    "confirmer": "confirmations",
    "producer": "evidence",
    "speaker": "statements",
    "withdrawer": "denials_withdrawn",
}


def activity_counts(event: DomainEvent) -> list[tuple[str, str]]:
    """Which source an event counts for, and as what (the source_activity projection's fold)."""
    return [(source, _COUNTERS[role]) for source, role in source_roles(event) if role in _COUNTERS]
