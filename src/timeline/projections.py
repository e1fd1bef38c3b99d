"""Current-state views folded from the log: claims, the latest estimate per source, subject timelines,
and the current definitions of subjects, sources and documents.

Pure functions and plain containers, no I/O. The live path loads the rows an event touches into a
``Views``, applies the event, and writes back what changed. ``timeline rebuild`` folds each claim's whole
stream with ``fold_rows`` (``apply`` without the ranking) and ranks the final states (``ranking.rank_final``,
the order ``latest_in`` ranks by); the property tests hold the two to the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from timeline.domain import claims as rules
from timeline.domain.claims import Amendment, Claim, ClaimEvent, Registration
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DenialWithdrawn,
    DomainEvent,
    EvidenceAttached,
    Occurred,
    Quantity,
    RecordCorrected,
    StatedDate,
    StatementMade,
)
from timeline.domain.streams import stream_of
from timeline.domain.values import period_start
from timeline.ranking import (
    NO_FIGURE,
    SLOTS,
    Chosen,
    EstimateKey,
    Slot,
    estimate_key,
    estimate_rank,
    live,
    rank_can_drop,
    slot_of,
)

# The estimate key and its chosen figures are ranking's; the views' users import them from here too.
__all__ = ["NO_FIGURE", "Chosen", "EstimateKey", "estimate_key"]


class ClaimRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """A claim's state, where it was made and where it last changed.

    A fold that holds the claim's history (``has_history``) also has every event in ``claim.recorded`` and
    its log position in ``positions`` (index 0 is version 1); a view row keeps neither (``current``): the
    history is in the log, and a fold reads it from there when a correction needs it.
    """

    claim: Claim
    made_position: int
    updated_position: int
    positions: tuple[int, ...] = ()

    @property
    def has_history(self) -> bool:
        """Whether every event of the claim, and its position, is at hand."""
        return len(self.positions) == self.claim.version == len(self.claim.recorded)


def current(record: ClaimRecord) -> ClaimRecord:
    """The record as its view row keeps it: the claim's current state, no history."""
    if not record.positions and not record.claim.recorded:
        return record
    return ClaimRecord(
        claim=msgspec.structs.replace(record.claim, recorded=()),
        made_position=record.made_position,
        updated_position=record.updated_position,
    )


def with_history(claim_events: Iterable[tuple[int, ClaimEvent]]) -> ClaimRecord:
    """A claim's record folded from its (position, event) pairs in stream order: history included."""
    claim: Claim | None = None
    positions = []
    for position, event in claim_events:
        claim = rules.evolve(claim, event)
        positions.append(position)
    if claim is None:
        raise ValueError("a claim needs at least its ClaimMade")
    return ClaimRecord(
        claim=claim, made_position=positions[0], updated_position=positions[-1], positions=tuple(positions)
    )


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One dated happening on a subject's timeline: a claim made, revised, denied, confirmed, retracted,
    a denial withdrawn, evidence attached, or a statement. ``corrected`` is true when our record of it was
    corrected later."""

    position: int
    subject_id: str
    occurred_on: StatedDate
    kind: str
    # None for a statement, which is nobody's claim (``statement_id`` names it).
    claim_id: str | None
    source_id: str
    statement: str
    quantity: Quantity | None = None
    corrected: bool = False
    # For evidence: where the material is, when the source gave a link.
    url: str | None = None
    # The documents this event came from (not its claim's: a denial is reported by its own article).
    document_ids: tuple[str, ...] = ()
    # What a figure counts (made, revised), and what a denial, confirmation or withdrawal bears on.
    metric: str | None = None
    addresses: str | None = None
    statement_id: str | None = None
    # When the claim says the thing happened (then ``occurred_on`` is its start, not the date stated).
    occurred: Occurred | None = None
    # The date the source said it, when the entry is dated by ``occurred`` instead.
    stated_on: StatedDate | None = None


class Views(msgspec.Struct, kw_only=True):
    """The rows of every view that a batch of events may touch (all of them, during a rebuild).

    ``claims`` must hold, for each estimate key the events touch, every claim that can be its latest
    estimate afterwards: the claims chosen now and the changed claims, and all claims under the key when
    one that is (or may be) chosen there can drop, or when its chosen claims are not in ``estimates``
    (see ``store.views.load_for``).
    """

    claims: dict[str, ClaimRecord] = msgspec.field(default_factory=dict)
    # The chosen claims per key (asserted, projected); a key missing here is not known yet.
    estimates: dict[EstimateKey, Chosen] = msgspec.field(default_factory=dict)
    # The claims under each estimate key; complete once ``indexed`` (built on first use, then kept).
    by_key: dict[EstimateKey, set[str]] = msgspec.field(default_factory=dict)
    indexed: bool = False
    registrations: dict[str, tuple[int, Registration]] = msgspec.field(default_factory=dict)
    timeline: dict[int, TimelineEntry | None] = msgspec.field(default_factory=dict)
    changed_claims: set[str] = msgspec.field(default_factory=set)
    changed_estimates: set[EstimateKey] = msgspec.field(default_factory=set)
    changed_registrations: set[str] = msgspec.field(default_factory=set)
    position: int = 0


class Estimate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A source's two current figures under one subject and metric; at least one is there."""

    asserted: ClaimRecord | None = None
    projected: ClaimRecord | None = None

    @property
    def headline(self) -> ClaimRecord:
        """The figure to show when only one is shown: the assertion, else the projection."""
        shown = self.asserted or self.projected
        assert shown is not None, "an estimate holds at least one figure"
        return shown


def latest_in(records: Iterable[ClaimRecord], slot: Slot) -> ClaimRecord | None:
    """A source's latest live figure of one kind (asserted or projected), by ``estimate_rank``."""
    figures = [r for r in records if live(r.claim) and slot_of(r.claim) == slot]
    return max(figures, key=lambda r: estimate_rank(r.claim)) if figures else None


def ranked_in(records: Iterable[ClaimRecord], slot: Slot) -> list[ClaimRecord]:
    """A source's live figures of one kind, highest ``estimate_rank`` first (``latest_in`` is the first)."""
    figures = [r for r in records if live(r.claim) and slot_of(r.claim) == slot]
    return sorted(figures, key=lambda r: estimate_rank(r.claim), reverse=True)


def latest_estimates(records: Iterable[ClaimRecord]) -> Chosen:
    """A source's current estimates under one key: the ids of its latest asserted figure and of its latest
    projection that it has not retracted (None where there is none)."""
    held = list(records)
    asserted, projected = (latest_in(held, slot) for slot in SLOTS)
    return (
        asserted.claim.claim_id if asserted else None,
        projected.claim.claim_id if projected else None,
    )


def effective_events(claim: Claim) -> list[ClaimEvent]:
    """The claim's events as they should have been recorded: every correction applied to its target."""
    out = list(claim.recorded)
    for correction in claim.corrections:
        index = correction.corrects_version - 1
        out[index] = rules.corrected(out[index], correction.changes)
    return out


def timeline_entry(
    position: int, event: ClaimEvent, claim: Claim, *, corrected: bool = False
) -> TimelineEntry | None:
    """The entry a claim event puts on its subject's timeline (corrections put none of their own)."""
    # Dispatched on the exact type (event classes are final): a ``match`` tried each class in turn, and an
    # ``isinstance`` miss on these structs costs 60-100 ns (bench/results-2026-12-05-fourteenth-fold.txt).
    quantity = None
    addresses: str | None = None
    occurred: Occurred | None = None
    url = None
    if type(event) is ClaimMade:
        kind, source, statement = "made", event.source_id, event.statement
        quantity, occurred = event.quantity, event.occurred
    elif type(event) is ClaimRevised:
        kind, source, statement = "revised", claim.source_id, event.statement
        quantity, occurred = event.quantity, event.occurred
    elif type(event) is ClaimDenied:
        kind, source, statement = "denied", event.denied_by, event.statement
        addresses = event.addresses
    elif type(event) is ClaimConfirmed:
        kind, source, statement = "confirmed", event.confirmed_by, event.statement
        addresses = event.addresses
    elif type(event) is DenialWithdrawn:
        kind, source, statement = "denial_withdrawn", event.withdrawn_by, event.statement
        denied = next((d for d in claim.denials if d.denial_id == event.denial_id), None)
        addresses = denied.addresses if denied is not None else None
    elif type(event) is ClaimRetracted:
        kind, source, statement = "retracted", claim.source_id, event.statement
    elif type(event) is EvidenceAttached:
        kind, source, statement = "evidence", event.produced_by, event.description
        url = event.url
    else:
        return None
    return TimelineEntry(
        position=position,
        subject_id=claim.subject_id,
        occurred_on=occurred.start if occurred else event.stated_on,
        occurred=occurred,
        stated_on=event.stated_on if occurred else None,
        kind=kind,
        claim_id=claim.claim_id,
        source_id=source,
        statement=statement,
        quantity=quantity,
        corrected=corrected,
        url=url,
        document_ids=event.document_ids,
        metric=claim.metric if quantity is not None else None,
        addresses=addresses,
    )


def statement_entry(position: int, event: StatementMade) -> TimelineEntry:
    """The entry a statement puts on its subject's timeline."""
    return TimelineEntry(
        position=position,
        subject_id=event.subject_id,
        occurred_on=event.stated_on,
        kind="statement",
        claim_id=None,
        source_id=event.source_id,
        statement=event.statement,
        document_ids=event.document_ids,
        statement_id=event.statement_id,
    )


def _members(views: Views, key: EstimateKey) -> set[str]:
    """The claims under an estimate key. The first call indexes every claim held, in one pass (one pass
    per key instead made a batch quadratic in its claims); ``apply`` keeps the index current after."""
    if not views.indexed:
        for cid, r in views.claims.items():
            if (k := estimate_key(r.claim)) is not None:
                views.by_key.setdefault(k, set()).add(cid)
        views.indexed = True
    return views.by_key.setdefault(key, set())


def _rescan(views: Views, key: EstimateKey | None) -> None:
    if key is None:
        return
    _choose(views, key, latest_estimates(views.claims[cid] for cid in _members(views, key)))


def _choose(views: Views, key: EstimateKey, chosen: Chosen) -> None:
    # The row changes only if the figures do: most events leave them, and a rebuild rewrote it for each.
    if views.estimates.get(key) != chosen or key not in views.estimates:
        views.estimates[key] = chosen
        views.changed_estimates.add(key)


def _maybe_chosen(views: Views, key: EstimateKey, claim_id: str) -> bool:
    chosen = views.estimates.get(key)  # None: not known here, so it may be
    return chosen is None or claim_id in chosen


def _promote(views: Views, key: EstimateKey | None, record: ClaimRecord) -> None:
    """The claim's rank can only have risen (in its own slot): it beats the figure chosen in that slot or
    leaves it in place."""
    if key is None:
        return
    if key not in views.estimates:
        _rescan(views, key)
        return
    claim = record.claim
    index = SLOTS.index(slot := slot_of(claim))
    chosen = list(views.estimates[key])
    current = chosen[index]
    # ``latest_in`` of the two candidates, written out (every event of a batch comes here): the claim wins
    # only if it is live and ranks strictly higher than a live figure held in its slot.
    if live(claim) and (
        current is None
        or current == claim.claim_id
        or not live(held := views.claims[current].claim)
        or slot_of(held) != slot
        or estimate_rank(claim) > estimate_rank(held)
    ):
        chosen[index] = claim.claim_id
    _choose(views, key, (chosen[0], chosen[1]))


def _next_record(record: ClaimRecord | None, position: int, event: ClaimEvent) -> ClaimRecord:
    """The claim's record after one more event (its history kept only if it had all of it)."""
    if type(event) is RecordCorrected and (record is None or not record.has_history):
        # A correction refolds the claim and redoes its entries: it needs every earlier event.
        raise ValueError(f"correcting claim {event.claim_id!r} needs its history (read it from the log)")
    claim = rules.evolve(record.claim if record else None, event)
    if record is None:
        return ClaimRecord(
            claim=claim, made_position=position, updated_position=position, positions=(position,)
        )
    return ClaimRecord(
        claim=claim,
        made_position=record.made_position,
        updated_position=position,
        positions=(*record.positions, position) if record.has_history else (),
    )


def apply(views: Views, position: int, event: DomainEvent) -> Views:
    """Fold one event (at its log position) into the views, noting which rows changed."""
    if (moved := fold_rows(views, position, event)) is not None:
        _rerank(views, *moved)
    return views


def _fold_other(views: Views, position: int, event: DomainEvent) -> None:
    """Fold a registration, an amendment or a statement."""
    if isinstance(event, Registration):
        stream = stream_of(event)
        views.registrations[stream] = (position, event)
        views.changed_registrations.add(stream)
    elif isinstance(event, Amendment):
        stream = stream_of(event)
        first, definition = views.registrations[stream]
        views.registrations[stream] = (first, rules.amend(definition, event))
        views.changed_registrations.add(stream)
    elif isinstance(event, StatementMade):
        views.timeline[position] = statement_entry(position, event)
    else:  # pragma: no cover
        raise AssertionError(f"no fold for {type(event).__name__}")


def fold_rows(
    views: Views, position: int, event: DomainEvent
) -> tuple[ClaimRecord | None, ClaimRecord] | None:
    """``apply`` without the estimates: the claim's row and timeline entries, a definition, a statement.
    Returns a claim event's (record before, record after), for ranking; None for other events. A fold
    that sees each claim's whole stream at once ranks only the final records (``ranking.rank_final``)."""
    views.position = position
    if rules.is_claim_event(event):
        return _fold_claim(views, position, event)
    _fold_other(views, position, event)
    return None


def _fold_claim(views: Views, position: int, event: ClaimEvent) -> tuple[ClaimRecord | None, ClaimRecord]:
    """Fold a claim event: the claim's row and its timeline entries (all of them, for a correction)."""
    record = views.claims.get(event.claim_id)
    updated = _next_record(record, position, event)
    claim = updated.claim
    views.claims[claim.claim_id] = updated
    views.changed_claims.add(claim.claim_id)
    if type(event) is RecordCorrected:
        # A correction can change any earlier entry of the claim (its date, figure, even its subject).
        fixed = {c.corrects_version for c in claim.corrections}
        pairs = zip(updated.positions, effective_events(claim), strict=True)
        for version, (at, effective) in enumerate(pairs, 1):
            views.timeline[at] = timeline_entry(at, effective, claim, corrected=version in fixed)
    else:
        views.timeline[position] = timeline_entry(position, event, claim)
    return record, updated


def _rerank(views: Views, record: ClaimRecord | None, updated: ClaimRecord) -> None:
    """Keep the estimates and the index of claims by key right after ``record`` became ``updated``."""
    claim = updated.claim
    before = estimate_key(record.claim) if record else None
    after = estimate_key(claim)
    if before != after and views.indexed:
        if before is not None:
            views.by_key.setdefault(before, set()).discard(claim.claim_id)
        if after is not None:
            views.by_key.setdefault(after, set()).add(claim.claim_id)
    if (rank_can_drop(record.claim if record else None, claim) or before not in (None, after)) and (
        before is not None and _maybe_chosen(views, before, claim.claim_id)
    ):
        # It may have been the figure chosen under its key and no longer be: every claim there competes.
        _rescan(views, before)
        if after != before:
            _promote(views, after, updated)
    else:
        # Under its old key it was not chosen, so what is chosen there stands; wherever it is now, it
        # can only have risen against what is chosen there.
        _promote(views, after, updated)


def occurred_on(entry: TimelineEntry) -> dt.date:
    """The timeline sort date of an entry: the first day of the period it was stated in."""
    return period_start(entry.occurred_on)
