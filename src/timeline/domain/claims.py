"""Claim rules: the state of one claim folded from its events, and what each command may append.

``evolve`` is the only way state is built, so replay, rebuild and the live path agree. The ``decide_*``
functions take the current state and a proposed event and return the events to append: an empty list when the
same thing was already recorded (that is what makes imports idempotent), or raise a ``DomainError``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from timeline.domain.errors import DefinitionConflict, InvalidValue, RuleViolation, UnknownReference
from timeline.domain.events import (
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DocumentRegistered,
    DomainEvent,
    Modality,
    Quantity,
    SourceRegistered,
    StatedDate,
    SubjectRegistered,
)
from timeline.domain.values import check_quantity, check_stated_date

Status = Literal["standing", "disputed", "retracted"]
ClaimEvent = ClaimMade | ClaimRevised | ClaimDenied | ClaimRetracted
Registration = SubjectRegistered | SourceRegistered | DocumentRegistered


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A claim as it stands after all its events: current figure and wording, status, who disputes it."""

    claim_id: str
    subject_id: str
    source_id: str
    metric: str | None
    statement: str
    modality: Modality
    stated_on: StatedDate
    quantity: Quantity | None
    document_ids: tuple[str, ...]
    status: Status
    disputed_by: tuple[str, ...]
    revision_ids: tuple[str, ...]
    denials: tuple[ClaimDenied, ...]
    revisions: tuple[ClaimRevised, ...]
    made: ClaimMade
    retraction: ClaimRetracted | None
    version: int


def _merge_documents(current: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return current + tuple(d for d in more if d not in current)


def evolve(claim: Claim | None, event: ClaimEvent) -> Claim:
    """Apply one event to a claim's state. Events arrive already checked by the ``decide_*`` rules."""
    if isinstance(event, ClaimMade):
        return Claim(
            claim_id=event.claim_id,
            subject_id=event.subject_id,
            source_id=event.source_id,
            metric=event.metric,
            statement=event.statement,
            modality=event.modality,
            stated_on=event.stated_on,
            quantity=event.quantity,
            document_ids=event.document_ids,
            status="standing",
            disputed_by=(),
            revision_ids=(),
            denials=(),
            revisions=(),
            made=event,
            retraction=None,
            version=1,
        )
    if claim is None:
        raise ValueError(f"{type(event).__name__} for claim {event.claim_id!r} before ClaimMade")
    version = claim.version + 1
    match event:
        case ClaimRevised():
            return msgspec.structs.replace(
                claim,
                statement=event.statement,
                stated_on=event.stated_on,
                quantity=event.quantity if event.quantity is not None else claim.quantity,
                modality=event.modality or claim.modality,
                document_ids=_merge_documents(claim.document_ids, event.document_ids),
                revision_ids=(*claim.revision_ids, event.revision_id),
                revisions=(*claim.revisions, event),
                version=version,
            )
        case ClaimDenied():
            disputed_by = claim.disputed_by
            if event.denied_by not in disputed_by:
                disputed_by = (*disputed_by, event.denied_by)
            return msgspec.structs.replace(
                claim,
                status="retracted" if claim.status == "retracted" else "disputed",
                disputed_by=disputed_by,
                denials=(*claim.denials, event),
                version=version,
            )
        case ClaimRetracted():
            return msgspec.structs.replace(claim, status="retracted", retraction=event, version=version)
    raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover


def differences(old: msgspec.Struct, new: msgspec.Struct) -> list[str]:
    """Name each field whose value differs, as ``field: was X, now Y``."""
    before = msgspec.structs.asdict(old)
    after = msgspec.structs.asdict(new)
    return [
        f"{name}: recorded {msgspec.json.encode(before[name]).decode()}, "
        f"now {msgspec.json.encode(after[name]).decode()}"
        for name in before
        if before[name] != after[name]
    ]


def decide_registration(existing: Registration | None, new: Registration) -> list[DomainEvent]:
    """Register a subject, source or document; the identical definition again is a no-op."""
    if existing is None:
        if isinstance(new, DocumentRegistered):
            check_stated_date(new.published_on, field="published_on")
        return [new]
    if existing == new:
        return []
    kind = type(new).__name__.removesuffix("Registered").lower()
    raise DefinitionConflict(kind, _ident(new), differences(existing, new))


def _ident(reg: Registration) -> str:
    match reg:
        case SubjectRegistered():
            return reg.subject_id
        case SourceRegistered():
            return reg.source_id
        case DocumentRegistered():
            return reg.document_id
    raise AssertionError(reg)  # pragma: no cover


def decide_make(existing: Claim | None, event: ClaimMade) -> list[DomainEvent]:
    """Record a new claim; the very same claim again is a no-op, a different one under its id is not."""
    if existing is not None:
        if existing.made == event:
            return []
        raise DefinitionConflict("claim", event.claim_id, differences(existing.made, event))
    check_stated_date(event.stated_on)
    if (event.metric is None) != (event.quantity is None):
        raise InvalidValue(
            "a figure needs both 'metric' (what is counted) and 'quantity' (the figure); "
            f"got {'only metric' if event.quantity is None else 'only quantity'}",
            field="metric" if event.metric is None else "quantity",
        )
    if event.quantity is not None:
        check_quantity(event.quantity)
    if not event.document_ids:
        raise InvalidValue("a claim needs at least one document reporting it", field="documents")
    return [event]


def _require(claim: Claim | None, claim_id: str) -> Claim:
    if claim is None:
        raise UnknownReference("claim", claim_id, field="claim")
    return claim


def decide_revise(claim: Claim | None, event: ClaimRevised) -> list[DomainEvent]:
    """Supersede the claim's figure or wording by its own source; the earlier one stays in history."""
    current = _require(claim, event.claim_id)
    for earlier in current.revisions:
        if earlier.revision_id == event.revision_id:
            if earlier == event:
                return []
            raise DefinitionConflict("revision", event.revision_id, differences(earlier, event))
    if current.status == "retracted":
        raise RuleViolation(f"claim {event.claim_id!r} was retracted; a retracted claim is not revised")
    check_stated_date(event.stated_on)
    if event.quantity is not None:
        if current.metric is None:
            raise RuleViolation(
                f"claim {event.claim_id!r} has no figure to revise; record a new claim instead",
                field="quantity",
            )
        check_quantity(event.quantity)
    return [event]


def decide_deny(claim: Claim | None, event: ClaimDenied) -> list[DomainEvent]:
    """Record another source's denial: the claim becomes disputed and keeps everything it had."""
    current = _require(claim, event.claim_id)
    for earlier in current.denials:
        if earlier.denial_id == event.denial_id:
            if earlier == event:
                return []
            raise DefinitionConflict("denial", event.denial_id, differences(earlier, event))
    if event.denied_by == current.source_id:
        raise RuleViolation(
            f"source {event.denied_by!r} made claim {event.claim_id!r}; a source withdrawing its own "
            "claim is a retraction, not a denial",
            field="source",
        )
    check_stated_date(event.stated_on)
    return [event]


def decide_retract(claim: Claim | None, event: ClaimRetracted) -> list[DomainEvent]:
    """Record that the claim's own source withdrew it."""
    current = _require(claim, event.claim_id)
    if current.retraction is not None:
        if current.retraction == event:
            return []
        raise RuleViolation(
            f"claim {event.claim_id!r} was already retracted "
            f"(retraction {current.retraction.retraction_id!r})"
        )
    check_stated_date(event.stated_on)
    return [event]
