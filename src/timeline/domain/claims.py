"""Claim state: one claim folded from its events, and the current definition of a subject, source or document.

``evolve`` is the only way state is built, so replay, rebuild and the live path agree. What each command may
append is decided in ``domain/rules.py``.

Status, from strongest to weakest: ``retracted`` (its source withdrew it), ``contested`` (denied by some,
confirmed by others), ``disputed`` (denied), ``confirmed`` (corroborated), ``standing`` (none of these).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, TypeGuard, get_args

import msgspec

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

Status = Literal["standing", "confirmed", "disputed", "contested", "retracted"]
ClaimEvent = (
    ClaimMade
    | ClaimRevised
    | ClaimDenied
    | ClaimRetracted
    | ClaimConfirmed
    | EvidenceAttached
    | RecordCorrected
    | DenialWithdrawn
)
Registration = SubjectRegistered | SourceRegistered | DocumentRegistered
Amendment = SubjectAmended | SourceAmended | DocumentAmended
# Every claim event's class. Event classes are final (none is subclassed), so the fold tells them apart by
# exact type: an ``isinstance`` against a union of these structs costs 60-100 ns for each class it misses,
# and the write path asked a dozen such questions of every event
# (bench/results-2026-12-05-fourteenth-fold.txt).
CLAIM_EVENT_TYPES: frozenset[type] = frozenset(get_args(ClaimEvent))


def is_claim_event(event: object) -> TypeGuard[ClaimEvent]:
    """Whether an event is one of a claim's (made, revised, denied... corrected)."""
    return type(event) in CLAIM_EVENT_TYPES


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
    # Denials their own sources withdrew (the denials stay in ``denials``; their sources leave
    # ``disputed_by`` unless another denial of theirs stands).
    withdrawals: tuple[DenialWithdrawn, ...] = ()
    # When the thing happened, as the latest word on it says (None: not said).
    occurred: Occurred | None = None


def _merge_documents(current: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return current + tuple(d for d in more if d not in current)


def _add(sources: tuple[str, ...], source: str) -> tuple[str, ...]:
    return sources if source in sources else (*sources, source)


def standing_denials(claim: Claim) -> tuple[ClaimDenied, ...]:
    """The claim's denials that their sources have not withdrawn."""
    return _standing(claim.denials, claim.withdrawals)


def _standing(
    denials: tuple[ClaimDenied, ...], withdrawals: tuple[DenialWithdrawn, ...]
) -> tuple[ClaimDenied, ...]:
    withdrawn = {w.denial_id for w in withdrawals}
    return tuple(d for d in denials if d.denial_id not in withdrawn)


def _deniers(denials: tuple[ClaimDenied, ...]) -> tuple[str, ...]:
    sources: tuple[str, ...] = ()
    for d in denials:
        sources = _add(sources, d.denied_by)
    return sources


def figure_status(claim: Claim) -> Status | None:
    """The status of the claim's figure (None without one): a denial of the claim or of what it says
    happened disputes the figure too, but only a confirmation of the claim or of its figure confirms it."""
    if claim.quantity is None:
        return None
    if claim.retraction is not None:
        return "retracted"
    disputed = bool(standing_denials(claim))
    confirmed = any(x.addresses != "proposition" for x in claim.confirmations)
    if disputed and confirmed:
        return "contested"
    return "disputed" if disputed else "confirmed" if confirmed else "standing"


def _status(
    retraction: ClaimRetracted | None, disputed_by: tuple[str, ...], confirmed_by: tuple[str, ...]
) -> Status:
    if retraction is not None:
        return "retracted"
    if disputed_by and confirmed_by:
        return "contested"
    if disputed_by:
        return "disputed"
    if confirmed_by:
        return "confirmed"
    return "standing"


def _made(event: ClaimMade, recorded: tuple[ClaimEvent, ...]) -> Claim:
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
        recorded=recorded,
        occurred=event.occurred,
    )


def _step(claim: Claim | None, event: ClaimEvent, recorded: tuple[ClaimEvent, ...] = ()) -> Claim:
    """Apply one (already corrected) event without looking back; ``recorded`` is the new state's history."""
    # Dispatched on the exact type, not ``isinstance``: a miss of ``isinstance`` on these structs costs
    # 60-100 ns a class, and a fold made a dozen an event (bench/results-2026-12-05-fourteenth-fold.txt).
    # Event classes are final. The next state is one ``replace``, version and status included.
    if type(event) is ClaimMade:
        return _made(event, recorded)
    if claim is None:
        raise ValueError(f"{type(event).__name__} for claim {event.claim_id!r} before ClaimMade")
    retraction, disputed_by, confirmed_by = claim.retraction, claim.disputed_by, claim.confirmed_by
    replace = msgspec.structs.replace
    if type(event) is ClaimRevised:
        return replace(
            claim,
            statement=event.statement,
            stated_on=event.stated_on,
            quantity=event.quantity if event.quantity is not None else claim.quantity,
            modality=event.modality or claim.modality,
            occurred=event.occurred or claim.occurred,
            document_ids=_merge_documents(claim.document_ids, event.document_ids),
            revisions=(*claim.revisions, event.revision_id),
            version=claim.version + 1,
            recorded=recorded,
        )
    if type(event) is ClaimDenied:
        disputed_by = _add(disputed_by, event.denied_by)
        return replace(
            claim,
            disputed_by=disputed_by,
            denials=(*claim.denials, event),
            status=_status(retraction, disputed_by, confirmed_by),
            version=claim.version + 1,
            recorded=recorded,
        )
    if type(event) is ClaimConfirmed:
        confirmed_by = _add(confirmed_by, event.confirmed_by)
        return replace(
            claim,
            confirmed_by=confirmed_by,
            confirmations=(*claim.confirmations, event),
            status=_status(retraction, disputed_by, confirmed_by),
            version=claim.version + 1,
            recorded=recorded,
        )
    if type(event) is EvidenceAttached:
        return replace(claim, evidence=(*claim.evidence, event), version=claim.version + 1, recorded=recorded)
    if type(event) is ClaimRetracted:
        return replace(
            claim, retraction=event, status="retracted", version=claim.version + 1, recorded=recorded
        )
    if type(event) is RecordCorrected:
        return replace(
            claim, corrections=(*claim.corrections, event), version=claim.version + 1, recorded=recorded
        )
    assert type(event) is DenialWithdrawn, event
    withdrawals = (*claim.withdrawals, event)
    disputed_by = _deniers(_standing(claim.denials, withdrawals))
    return replace(
        claim,
        withdrawals=withdrawals,
        disputed_by=disputed_by,
        status=_status(retraction, disputed_by, confirmed_by),
        version=claim.version + 1,
        recorded=recorded,
    )


# The source field of each event kind, which a correction of "source_id" replaces.
SOURCE_FIELD = {
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
        target = SOURCE_FIELD.get(type(event), "source_id") if name == "source_id" else name
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


# The write path folds each claim event from the same state object up to three times: into the stream record
# the rules read, ahead to learn which estimates the views must load, and in the views' own fold. Each of them
# stays the plain ``evolve`` that rebuild and time travel run; while a write is open (``remembering``), the
# first fold of an event is remembered by the identity of its two inputs (kept alive here, so an id cannot be
# reused while its entry stands), and the others get the very same state back. Both are frozen, so the answer
# cannot have changed. A batch of 100 claims spent 2.1 microseconds an event on the two repeats (cProfile,
# bench batches of 100). While no write is open in the process nothing is remembered: a rebuild folds each
# event once, and a full memo had cost its fold about a third (bench/results-2026-12-05-fourteenth-fold.txt).
# An OrderedDict: a plain dict's oldest key, ``next(iter(d))``, is found by stepping over the slots its
# earlier deletions left, thousands of them once it is full (22 microseconds an evolve, most of a rebuild's).
_FOLDED: OrderedDict[tuple[int, int], tuple[Claim | None, ClaimEvent, Claim]] = OrderedDict()
# Enough for a request's batch (a group commit's included); the oldest entries go first. An import folds
# more at once and asks for more room.
_FOLDED_MAX = 4096


class _Room:
    def __init__(self) -> None:
        # The room each open ``remembering`` asked for (writes may overlap: on a loop's tasks, on threads).
        self.asked: list[int] = []
        # The largest of those and _FOLDED_MAX while any is open, else 0 (remember nothing); kept rather than
        # worked out: ``evolve`` reads it every fold.
        self.capacity = 0

    def resize(self) -> None:
        self.capacity = max(_FOLDED_MAX, *self.asked) if self.asked else 0


_room = _Room()


@contextmanager
def remembering(events: int = _FOLDED_MAX) -> Iterator[None]:
    """Remember the folds of up to ``events`` claim events (at least ``_FOLDED_MAX``) while inside: around a
    write, which folds each of its events up to three times. Once no write is inside, forget them all (the
    entries keep every state alive: about 2 kB an event)."""
    _room.asked.append(events)
    _room.resize()
    try:
        yield
    finally:
        _room.asked.remove(events)
        _room.resize()
        if not _room.asked:
            _FOLDED.clear()


def evolve(claim: Claim | None, event: ClaimEvent) -> Claim:
    """Apply one event to a claim's state. Events arrive already checked by the ``decide_*`` rules."""
    if not _room.capacity:
        return _fold(claim, event)
    key = (id(claim), id(event))
    known = _FOLDED.get(key)
    if known is not None and known[0] is claim and known[1] is event:
        return known[2]
    after = _fold(claim, event)
    if len(_FOLDED) >= _room.capacity:
        # Not contextlib.suppress: this runs on every fold of a write once the memo is full.
        try:  # noqa: SIM105
            _FOLDED.popitem(last=False)
        except KeyError:  # emptied meanwhile: a write on another thread left ``remembering``
            pass
    _FOLDED[key] = (claim, event, after)
    return after


def _fold(claim: Claim | None, event: ClaimEvent) -> Claim:
    if type(event) is RecordCorrected:
        assert claim is not None
        return replay((*claim.recorded, event))
    return _step(claim, event, (*claim.recorded, event) if claim is not None else (event,))


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
        case DenialWithdrawn():
            return event.withdrawal_id
    raise AssertionError(event)  # pragma: no cover


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
