"""Claim rules: the state of one claim folded from its events, and what each command may append.

``evolve`` is the only way state is built, so replay, rebuild and the live path agree. The ``decide_*``
functions take the current state and a proposed event and return the events to append: an empty list when the
same thing was already recorded (that is what makes imports and retries idempotent), or raise a
``DomainError``.

Status, from strongest to weakest: ``retracted`` (its source withdrew it), ``contested`` (denied by some,
confirmed by others), ``disputed`` (denied), ``confirmed`` (corroborated), ``standing`` (none of these).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from timeline.domain.errors import DefinitionConflict, InvalidValue, RuleViolation, UnknownReference
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    CorrectedFields,
    DocumentAmended,
    DocumentRegistered,
    DomainEvent,
    EvidenceAttached,
    Modality,
    Occurred,
    Quantity,
    RecordCorrected,
    SourceAmended,
    SourceRegistered,
    StatedDate,
    SubjectAmended,
    SubjectRegistered,
)
from timeline.domain.values import check_occurred, check_quantity, check_stated_date

Status = Literal["standing", "confirmed", "disputed", "contested", "retracted"]
ClaimEvent = (
    ClaimMade
    | ClaimRevised
    | ClaimDenied
    | ClaimRetracted
    | ClaimConfirmed
    | EvidenceAttached
    | RecordCorrected
)
Registration = SubjectRegistered | SourceRegistered | DocumentRegistered
Amendment = SubjectAmended | SourceAmended | DocumentAmended


class Claim(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A claim as it stands after all its events (corrections applied): figure, wording, status, by whom."""

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
    confirmed_by: tuple[str, ...]
    # The ids of its revisions (the revisions themselves are in the log: the claim shows their result).
    revisions: tuple[str, ...]
    denials: tuple[ClaimDenied, ...]
    confirmations: tuple[ClaimConfirmed, ...]
    evidence: tuple[EvidenceAttached, ...]
    corrections: tuple[RecordCorrected, ...]
    retraction: ClaimRetracted | None
    version: int
    # Every event as recorded, in stream order: a correction refolds from these.
    recorded: tuple[ClaimEvent, ...]
    # When the thing happened, as the latest word on it says (None: not said).
    occurred: Occurred | None = None


def _merge_documents(current: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return current + tuple(d for d in more if d not in current)


def _add(sources: tuple[str, ...], source: str) -> tuple[str, ...]:
    return sources if source in sources else (*sources, source)


def _status(claim: Claim) -> Status:
    if claim.retraction is not None:
        return "retracted"
    if claim.disputed_by and claim.confirmed_by:
        return "contested"
    if claim.disputed_by:
        return "disputed"
    if claim.confirmed_by:
        return "confirmed"
    return "standing"


def _step(claim: Claim | None, event: ClaimEvent) -> Claim:
    """Apply one (already corrected) event without looking back."""
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
            confirmed_by=(),
            revisions=(),
            denials=(),
            confirmations=(),
            evidence=(),
            corrections=(),
            retraction=None,
            version=1,
            recorded=(),
            occurred=event.occurred,
        )
    if claim is None:
        raise ValueError(f"{type(event).__name__} for claim {event.claim_id!r} before ClaimMade")
    version = claim.version + 1
    match event:
        case ClaimRevised():
            claim = msgspec.structs.replace(
                claim,
                statement=event.statement,
                stated_on=event.stated_on,
                quantity=event.quantity if event.quantity is not None else claim.quantity,
                modality=event.modality or claim.modality,
                occurred=event.occurred or claim.occurred,
                document_ids=_merge_documents(claim.document_ids, event.document_ids),
                revisions=(*claim.revisions, event.revision_id),
            )
        case ClaimDenied():
            claim = msgspec.structs.replace(
                claim,
                disputed_by=_add(claim.disputed_by, event.denied_by),
                denials=(*claim.denials, event),
            )
        case ClaimConfirmed():
            claim = msgspec.structs.replace(
                claim,
                confirmed_by=_add(claim.confirmed_by, event.confirmed_by),
                confirmations=(*claim.confirmations, event),
            )
        case EvidenceAttached():
            claim = msgspec.structs.replace(claim, evidence=(*claim.evidence, event))
        case ClaimRetracted():
            claim = msgspec.structs.replace(claim, retraction=event)
        case RecordCorrected():
            claim = msgspec.structs.replace(claim, corrections=(*claim.corrections, event))
    claim = msgspec.structs.replace(claim, version=version)
    return msgspec.structs.replace(claim, status=_status(claim))


# The source field of each event kind, which a correction of "source_id" replaces.
_SOURCE_FIELD = {
    ClaimMade: "source_id",
    ClaimDenied: "denied_by",
    ClaimConfirmed: "confirmed_by",
    EvidenceAttached: "produced_by",
}


def corrected(event: ClaimEvent, changes: CorrectedFields) -> ClaimEvent:
    """The event as it should have been recorded, with a correction's fields replaced."""
    updates = {}
    for name, value in msgspec.structs.asdict(changes).items():
        if value is None:
            continue
        target = _SOURCE_FIELD.get(type(event), "source_id") if name == "source_id" else name
        updates[target] = value
    return msgspec.structs.replace(event, **updates)


def replay(events: Sequence[ClaimEvent]) -> Claim:
    """Fold a claim's recorded events, each with every correction of it applied, in stream order."""
    fixes: dict[int, list[CorrectedFields]] = {}
    for event in events:
        if isinstance(event, RecordCorrected):
            fixes.setdefault(event.corrects_version, []).append(event.changes)
    claim: Claim | None = None
    for version, event in enumerate(events, start=1):
        effective = event
        for changes in fixes.get(version, ()):
            effective = corrected(effective, changes)
        claim = _step(claim, effective)
    if claim is None:
        raise ValueError("a claim needs at least its ClaimMade")
    return msgspec.structs.replace(claim, recorded=tuple(events))


def evolve(claim: Claim | None, event: ClaimEvent) -> Claim:
    """Apply one event to a claim's state. Events arrive already checked by the ``decide_*`` rules."""
    if isinstance(event, RecordCorrected):
        assert claim is not None
        return replay((*claim.recorded, event))
    recorded = (*claim.recorded, event) if claim is not None else (event,)
    return msgspec.structs.replace(_step(claim, event), recorded=recorded)


def entry_id(event: ClaimEvent) -> str:
    """The id an editor gave the event: the claim's id for ClaimMade, else its revision, denial... id."""
    match event:
        case ClaimMade():
            return event.claim_id
        case ClaimRevised():
            return event.revision_id
        case ClaimDenied():
            return event.denial_id
        case ClaimConfirmed():
            return event.confirmation_id
        case EvidenceAttached():
            return event.evidence_id
        case ClaimRetracted():
            return event.retraction_id
        case RecordCorrected():
            return event.correction_id
    raise AssertionError(event)  # pragma: no cover


def differences(old: msgspec.Struct, new: msgspec.Struct) -> list[str]:
    """Name each field whose value differs, as ``field: recorded X, now Y``."""
    before = msgspec.structs.asdict(old)
    after = msgspec.structs.asdict(new)
    return [
        f"{name}: recorded {msgspec.json.encode(before[name]).decode()}, "
        f"now {msgspec.json.encode(after[name]).decode()}"
        for name in before
        if before[name] != after[name]
    ]


def check_statement(text: str, *, field: str = "statement") -> None:
    """Raise unless the text says something."""
    if not text.strip():
        raise InvalidValue("expected the source's words, got an empty statement", field=field)


# Registrations -----------------------------------------------------------------------------------------


def registration_id(reg: Registration | Amendment) -> str:
    """The id of the subject, source or document a registration or amendment is about."""
    match reg:
        case SubjectRegistered() | SubjectAmended():
            return reg.subject_id
        case SourceRegistered() | SourceAmended():
            return reg.source_id
        case DocumentRegistered() | DocumentAmended():
            return reg.document_id
    raise AssertionError(reg)  # pragma: no cover


def amend(current: Registration, amendment: Amendment) -> Registration:
    """The definition after an amendment: its non-null fields replace the current ones."""
    updates = {
        name: value
        for name, value in msgspec.structs.asdict(amendment).items()
        if value is not None and name not in ("subject_id", "source_id", "document_id")
    }
    return msgspec.structs.replace(current, **updates)


def decide_registration(existing: Registration | None, new: Registration) -> list[DomainEvent]:
    """Register a subject, source or document; the identical definition again is a no-op."""
    if existing is None:
        if isinstance(new, DocumentRegistered):
            check_stated_date(new.published_on, field="published_on")
        return [new]
    if existing == new:
        return []
    kind = type(new).__name__.removesuffix("Registered").lower()
    raise DefinitionConflict(kind, registration_id(new), differences(existing, new))


def decide_amend(current: Registration | None, amendment: Amendment) -> list[DomainEvent]:
    """Change a registered definition; an amendment that changes nothing appends nothing."""
    kind = type(amendment).__name__.removesuffix("Amended").lower()
    if current is None:
        raise UnknownReference(kind, registration_id(amendment))
    fields = msgspec.structs.asdict(amendment)
    if all(v is None for k, v in fields.items() if not k.endswith("_id")):
        raise InvalidValue(f"an amendment of a {kind} must change at least one field")
    if isinstance(amendment, DocumentAmended) and amendment.published_on is not None:
        check_stated_date(amendment.published_on, field="published_on")
    if amend(current, amendment) == current:
        return []
    return [amendment]


# Claims -------------------------------------------------------------------------------------------------


def _check_figure(metric: str | None, quantity: Quantity | None, *, prefix: str = "") -> None:
    if (metric is None) != (quantity is None):
        raise InvalidValue(
            "a figure needs both 'metric' (what is counted) and 'quantity' (the figure); "
            f"got {'only metric' if quantity is None else 'only quantity'}",
            field=prefix + ("metric" if metric is None else "quantity"),
        )
    if quantity is not None:
        check_quantity(quantity, field=prefix + "quantity")


def _check_horizon(modality: Modality, quantity: Quantity | None, *, field: str) -> None:
    """Only a projection says when its figure is expected."""
    if quantity is not None and quantity.horizon is not None and modality != "projected":
        raise InvalidValue(
            "only a projected figure has a horizon (when it is expected); "
            f"this claim's modality is {modality!r}",
            field=field,
        )


def decide_make(existing: Claim | None, event: ClaimMade) -> list[DomainEvent]:
    """Record a new claim; the very same claim again is a no-op, a different one under its id is not."""
    if existing is not None:
        first = existing.recorded[0]
        if first == event:
            return []
        assert isinstance(first, ClaimMade)
        raise DefinitionConflict("claim", event.claim_id, differences(first, event))
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    _check_figure(event.metric, event.quantity)
    _check_horizon(event.modality, event.quantity, field="quantity.horizon")
    if event.occurred is not None:
        check_occurred(event.occurred)
    if not event.document_ids:
        raise InvalidValue("a claim needs at least one document reporting it", field="documents")
    return [event]


def _require(claim: Claim | None, claim_id: str) -> Claim:
    if claim is None:
        raise UnknownReference("claim", claim_id, field="claim")
    return claim


def _repeat(claim: Claim, event: ClaimEvent, id_field: str) -> bool:
    """True if this very event was recorded before; raise if its id names something else on the claim.

    Ids are unique within a claim across kinds, so a correction (or a fixture) can name its target by id.
    """
    ident = getattr(event, id_field)
    for earlier in claim.recorded:
        if entry_id(earlier) != ident:
            continue
        if earlier == event:
            return True
        kind = id_field.removesuffix("_id")
        if type(earlier) is type(event):
            raise DefinitionConflict(kind, ident, differences(earlier, event))
        raise DefinitionConflict(
            kind, ident, [f"the id is already used on claim {claim.claim_id!r} by a {type(earlier).__name__}"]
        )
    return False


def decide_revise(claim: Claim | None, event: ClaimRevised) -> list[DomainEvent]:
    """Supersede the claim's figure or wording by its own source; the earlier one stays in history."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "revision_id"):
        return []
    if current.status == "retracted":
        raise RuleViolation(
            f"claim {event.claim_id!r} was retracted by its source; a retracted claim is not revised"
        )
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    if event.quantity is not None:
        if current.metric is None:
            raise RuleViolation(
                f"claim {event.claim_id!r} has no figure to revise; record a new claim instead",
                field="quantity",
            )
        check_quantity(event.quantity)
    if event.occurred is not None:
        check_occurred(event.occurred)
    after = _step(current, event)
    horizon_given = event.quantity is not None and event.quantity.horizon is not None
    _check_horizon(after.modality, after.quantity, field="quantity.horizon" if horizon_given else "modality")
    return [event]


def _other_source(current: Claim, source: str, event_name: str, instead: str) -> None:
    if source == current.source_id:
        raise RuleViolation(
            f"source {source!r} made claim {current.claim_id!r}; {event_name} by the claim's own source "
            f"is not recorded, {instead}",
            field="source",
        )


def decide_deny(claim: Claim | None, event: ClaimDenied) -> list[DomainEvent]:
    """Record another source's denial: the claim becomes disputed and keeps everything it had."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "denial_id"):
        return []
    _other_source(current, event.denied_by, "a denial", "record a retraction instead")
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    return [event]


def decide_confirm(claim: Claim | None, event: ClaimConfirmed) -> list[DomainEvent]:
    """Record another source's corroboration of the claim."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "confirmation_id"):
        return []
    _other_source(current, event.confirmed_by, "a confirmation", "record a revision if it restated it")
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    return [event]


def decide_attach(claim: Claim | None, event: EvidenceAttached) -> list[DomainEvent]:
    """Attach evidence to the claim; it is kept whatever the claim's status."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "evidence_id"):
        return []
    check_statement(event.description, field="description")
    check_stated_date(event.stated_on)
    return [event]


def decide_retract(claim: Claim | None, event: ClaimRetracted) -> list[DomainEvent]:
    """Record that the claim's own source withdrew it."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "retraction_id"):
        return []
    if current.retraction is not None:
        raise RuleViolation(
            f"claim {event.claim_id!r} was already retracted "
            f"(retraction {current.retraction.retraction_id!r})"
        )
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    return [event]


def decide_correct(claim: Claim | None, event: RecordCorrected) -> list[DomainEvent]:
    """Fix our record of an earlier event of the claim; the original stays in the history."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "correction_id"):
        return []
    if not 1 <= event.corrects_version <= len(current.recorded):
        raise RuleViolation(
            f"claim {event.claim_id!r} has events 1 to {len(current.recorded)}; "
            f"there is no event {event.corrects_version} to correct",
            field="corrects_version",
        )
    check_statement(event.reason, field="reason")
    target = current.recorded[event.corrects_version - 1]
    if isinstance(target, RecordCorrected):
        raise RuleViolation(
            f"event {event.corrects_version} is itself a correction; correct event "
            f"{target.corrects_version} instead",
            field="corrects_version",
        )
    given = {k for k, v in msgspec.structs.asdict(event.changes).items() if v is not None}
    if not given:
        raise InvalidValue("a correction must change at least one field", field="changes")
    allowed = set(msgspec.structs.asdict(target)) | (
        {"source_id"} if type(target) in _SOURCE_FIELD else set()
    )
    for name in sorted(given):
        if name not in allowed:
            raise InvalidValue(
                f"a {type(target).__name__} has no {name!r} to correct",
                field=f"changes.{name}",
            )
    changes = event.changes
    if changes.statement is not None:
        check_statement(changes.statement, field="changes.statement")
    if changes.stated_on is not None:
        check_stated_date(changes.stated_on, field="changes.stated_on")
    if changes.quantity is not None:
        check_quantity(changes.quantity, field="changes.quantity")
    if changes.occurred is not None:
        check_occurred(changes.occurred, field="changes.occurred")
    fixed = replay((*current.recorded, event))
    horizon_given = changes.quantity is not None and changes.quantity.horizon is not None
    _check_horizon(
        fixed.modality,
        fixed.quantity,
        field="changes.quantity.horizon" if horizon_given else "changes.modality",
    )
    if isinstance(target, ClaimMade):
        _check_figure(fixed.metric, fixed.quantity, prefix="changes.")
    if fixed.source_id in fixed.disputed_by or fixed.source_id in fixed.confirmed_by:
        raise RuleViolation(
            f"after this correction source {fixed.source_id!r} would deny or confirm its own claim",
            field="changes.source_id",
        )
    return [event]
