"""Current-state views folded from the log: claims, the latest estimate per source, subject timelines.

Pure functions and plain containers, no I/O. The live path loads the rows an event touches into a
``Views``, applies the event, and writes back what changed; ``timeline rebuild`` applies every event to an
empty ``Views``. Both run ``apply``, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from timeline.domain import claims as rules
from timeline.domain.claims import Claim, Registration
from timeline.domain.events import (
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DocumentRegistered,
    DomainEvent,
    Quantity,
    SourceRegistered,
    StatedDate,
    SubjectRegistered,
)
from timeline.domain.values import period_start


class ClaimRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A claim's folded state and the log positions where it was made and last changed."""

    claim: Claim
    made_position: int
    updated_position: int


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One dated happening on a subject's timeline: a claim made, revised, denied or retracted."""

    position: int
    subject_id: str
    occurred_on: StatedDate
    kind: str
    claim_id: str
    source_id: str
    statement: str
    quantity: Quantity | None = None


EstimateKey = tuple[str, str, str]  # (subject_id, metric, source_id)


class Views(msgspec.Struct, kw_only=True):
    """The rows of every view that a batch of events may touch (all of them, during a rebuild).

    ``claims`` must hold every claim sharing an estimate key with a claim being changed, because the
    latest estimate of a source is chosen among all its claims on that subject and metric.
    """

    claims: dict[str, ClaimRecord] = msgspec.field(default_factory=dict)
    estimates: dict[EstimateKey, str | None] = msgspec.field(default_factory=dict)
    registrations: dict[str, tuple[int, Registration]] = msgspec.field(default_factory=dict)
    timeline: list[TimelineEntry] = msgspec.field(default_factory=list)
    changed_claims: set[str] = msgspec.field(default_factory=set)
    changed_estimates: set[EstimateKey] = msgspec.field(default_factory=set)
    changed_registrations: set[str] = msgspec.field(default_factory=set)
    position: int = 0


def estimate_key(claim: Claim) -> EstimateKey | None:
    """The (subject, metric, source) an estimate is kept for, or None for a claim without a figure."""
    if claim.metric is None:
        return None
    return (claim.subject_id, claim.metric, claim.source_id)


def latest_estimate(records: Iterable[ClaimRecord]) -> ClaimRecord | None:
    """A source's current estimate: its most recently stated figure that it has not retracted."""
    live = [r for r in records if r.claim.status != "retracted" and r.claim.quantity is not None]
    if not live:
        return None
    return max(live, key=lambda r: (period_start(r.claim.stated_on), r.updated_position))


def timeline_entry(position: int, event: DomainEvent, claim: Claim) -> TimelineEntry | None:
    """The timeline entry a claim event adds to its subject's timeline."""
    match event:
        case ClaimMade():
            kind, source, stated, quantity = (
                "made",
                event.source_id,
                event.stated_on,
                event.quantity,
            )
        case ClaimRevised():
            kind, source, stated, quantity = (
                "revised",
                claim.source_id,
                event.stated_on,
                event.quantity,
            )
        case ClaimDenied():
            kind, source, stated, quantity = "denied", event.denied_by, event.stated_on, None
        case ClaimRetracted():
            kind, source, stated, quantity = "retracted", claim.source_id, event.stated_on, None
        case _:
            return None
    return TimelineEntry(
        position=position,
        subject_id=claim.subject_id,
        occurred_on=stated,
        kind=kind,
        claim_id=claim.claim_id,
        source_id=source,
        statement=event.statement,
        quantity=quantity,
    )


def registration_stream(event: Registration) -> str:
    """The stream id a registration lives in (also its key in the registrations view)."""
    match event:
        case SubjectRegistered():
            return f"subject-{event.subject_id}"
        case SourceRegistered():
            return f"source-{event.source_id}"
        case DocumentRegistered():
            return f"document-{event.document_id}"
    raise AssertionError(event)  # pragma: no cover


def apply(views: Views, position: int, event: DomainEvent) -> Views:
    """Fold one event (at its log position) into the views, noting which rows changed."""
    views.position = position
    if isinstance(event, SubjectRegistered | SourceRegistered | DocumentRegistered):
        stream = registration_stream(event)
        views.registrations[stream] = (position, event)
        views.changed_registrations.add(stream)
        return views
    record = views.claims.get(event.claim_id)
    claim = rules.evolve(record.claim if record else None, event)
    made = record.made_position if record else position
    views.claims[claim.claim_id] = ClaimRecord(claim=claim, made_position=made, updated_position=position)
    views.changed_claims.add(claim.claim_id)
    key = estimate_key(claim)
    if key is not None:
        chosen = latest_estimate(r for r in views.claims.values() if estimate_key(r.claim) == key)
        views.estimates[key] = chosen.claim.claim_id if chosen else None
        views.changed_estimates.add(key)
    entry = timeline_entry(position, event, claim)
    if entry is not None:
        views.timeline.append(entry)
    return views


def occurred_on(entry: TimelineEntry) -> dt.date:
    """The timeline sort date of an entry: the first day of the period it was stated in."""
    return period_start(entry.occurred_on)
