"""The rules: what each command may append, given the current state.

The ``decide_*`` functions take the current state (``domain/claims.py``) and a proposed event and return the
events to append: an empty list when the same thing was already recorded (that is what makes imports and
retries idempotent), or raise a ``DomainError``.
"""

from __future__ import annotations

import msgspec

from timeline.domain.claims import (
    SOURCE_FIELD,
    Amendment,
    Claim,
    ClaimEvent,
    Registration,
    amend,
    entry_id,
    evolve,
    registration_id,
    replay,
)
from timeline.domain.errors import DefinitionConflict, InvalidValue, RuleViolation, UnknownReference
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    CorrectedFields,
    DenialWithdrawn,
    DocumentAmended,
    DocumentRegistered,
    DomainEvent,
    EvidenceAttached,
    Modality,
    Quantity,
    RecordCorrected,
    SourceAmended,
    SourceRegistered,
    StatementMade,
)
from timeline.domain.values import check_occurred, check_quantity, check_stated_date, period_start


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


def decide_registration(existing: Registration | None, new: Registration) -> list[DomainEvent]:
    """Register a subject, source or document; the identical definition again is a no-op."""
    if existing is None:
        if isinstance(new, DocumentRegistered):
            check_stated_date(new.published_on, field="published_on")
        if isinstance(new, SourceRegistered):
            _check_relations(new)
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
    if isinstance(amendment, SourceAmended):
        _check_relations(amendment)
    if amend(current, amendment) == current:
        return []
    return [amendment]


def _check_relations(source: SourceRegistered | SourceAmended) -> None:
    for name in ("part_of", "speaks_for"):
        if getattr(source, name) == source.source_id:
            raise InvalidValue(f"source {source.source_id!r} cannot be related to itself", field=name)


def decide_statement(
    subject: Registration | None, earlier: tuple[StatementMade, ...], event: StatementMade
) -> list[DomainEvent]:
    """Record a statement on a subject (its stream); the very same statement again is a no-op."""
    if subject is None:
        raise UnknownReference("subject", event.subject_id, field="subject")
    for known in earlier:
        if known.statement_id != event.statement_id:
            continue
        if known == event:
            return []
        raise DefinitionConflict("statement", event.statement_id, differences(known, event))
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    if not event.document_ids:
        raise InvalidValue("a statement needs at least one document reporting it", field="documents")
    return [event]


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


def _require(claim: Claim | None, claim_id: str, *, hint: str | None = None) -> Claim:
    if claim is None:
        raise UnknownReference("claim", claim_id, field="claim", hint=hint)
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
    after = evolve(current, event)
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
    _check_addresses(current, event.addresses)
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    return [event]


def decide_confirm(claim: Claim | None, event: ClaimConfirmed) -> list[DomainEvent]:
    """Record another source's corroboration of the claim."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "confirmation_id"):
        return []
    _other_source(current, event.confirmed_by, "a confirmation", "record a revision if it restated it")
    _check_addresses(current, event.addresses)
    check_statement(event.statement)
    check_stated_date(event.stated_on)
    return [event]


def _check_addresses(current: Claim, addresses: str) -> None:
    if addresses == "figure" and current.quantity is None:
        raise RuleViolation(
            f"claim {current.claim_id!r} gives no figure; address the claim or its proposition",
            field="addresses",
        )


def decide_withdraw_denial(claim: Claim | None, event: DenialWithdrawn) -> list[DomainEvent]:
    """Record that a source withdrew its own earlier denial: the claim is no longer disputed by it."""
    current = _require(claim, event.claim_id)
    if _repeat(current, event, "withdrawal_id"):
        return []
    denial = next((d for d in current.denials if d.denial_id == event.denial_id), None)
    if denial is None:
        raise RuleViolation(
            f"claim {event.claim_id!r} has no denial {event.denial_id!r} to withdraw", field="denial"
        )
    if denial.denied_by != event.withdrawn_by:
        raise RuleViolation(
            f"denial {event.denial_id!r} was made by {denial.denied_by!r}; only its own source withdraws it",
            field="source",
        )
    check_stated_date(event.stated_on)
    if period_start(event.stated_on) < period_start(denial.stated_on):
        raise RuleViolation(
            f"denial {event.denial_id!r} was made on {denial.stated_on.date}; it cannot be withdrawn before",
            field="stated_on",
        )
    earlier = next((w for w in current.withdrawals if w.denial_id == event.denial_id), None)
    if earlier is not None:
        raise RuleViolation(
            f"denial {event.denial_id!r} was already withdrawn (withdrawal {earlier.withdrawal_id!r})",
            field="denial",
        )
    check_statement(event.statement)
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


def _check_corrected_figure(changes: CorrectedFields, fixed: Claim) -> None:
    """When it happened must be a real period, and a horizon stays on a projection only."""
    if changes.occurred is not None:
        check_occurred(changes.occurred, field="changes.occurred")
    horizon_given = changes.quantity is not None and changes.quantity.horizon is not None
    _check_horizon(
        fixed.modality,
        fixed.quantity,
        field="changes.quantity.horizon" if horizon_given else "changes.modality",
    )


def uncorrectable(claim_id: str) -> str:
    """Why a correction names no claim: only a claim's stream is corrected, never a statement's record."""
    return (
        f"unknown claim {claim_id!r}: a correction fixes our record of a claim's events only; a statement "
        "(StatementMade) cannot be corrected, so record a new statement that says what changed "
        "(docs/events.md, RecordCorrected)"
    )


def decide_correct(claim: Claim | None, event: RecordCorrected) -> list[DomainEvent]:
    """Fix our record of an earlier event of the claim; the original stays in the history."""
    current = _require(claim, event.claim_id, hint=uncorrectable(event.claim_id))
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
    allowed = set(msgspec.structs.asdict(target)) | ({"source_id"} if type(target) in SOURCE_FIELD else set())
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
    fixed = replay((*current.recorded, event))
    _check_corrected_figure(changes, fixed)
    if isinstance(target, ClaimMade):
        _check_figure(fixed.metric, fixed.quantity, prefix="changes.")
    if fixed.source_id in fixed.disputed_by or fixed.source_id in fixed.confirmed_by:
        raise RuleViolation(
            f"after this correction source {fixed.source_id!r} would deny or confirm its own claim",
            field="changes.source_id",
        )
    addressed = [d.addresses for d in fixed.denials] + [x.addresses for x in fixed.confirmations]
    if fixed.quantity is None and "figure" in addressed:
        raise RuleViolation(
            f"after this correction claim {event.claim_id!r} would have no figure for a denial or "
            "confirmation of its figure to address",
            field="changes.addresses" if event.changes.addresses else "changes",
        )
    return [event]
