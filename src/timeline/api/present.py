"""Turning stored records into response bodies (names of sources looked up once per response)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from timeline.api import headlines
from timeline.api.audit_schemas import EventProofOut, InclusionOut, StoredEventOut
from timeline.api.catalog_schemas import ClaimSummary, DocumentOut, SourceOut, SubjectOut
from timeline.api.schemas import (
    Change,
    ClaimOut,
    ConfirmationOut,
    CorrectionOut,
    CorrectionRef,
    DenialOut,
    DocumentRef,
    EstimateOut,
    EstimatesOut,
    EventOut,
    EvidenceOut,
    FigureOut,
    HistoryEntryOut,
    SourceRef,
    TimelineEntryOut,
    WithdrawalOut,
)
from timeline.app import queries
from timeline.domain import claims as rules
from timeline.domain.claims import Claim, ClaimEvent, Registration
from timeline.domain.events import DocumentRegistered, RecordCorrected, SourceRegistered, SubjectRegistered
from timeline.domain.sides import same_side
from timeline.projections import ClaimRecord, Estimate, TimelineEntry
from timeline.store import chain
from timeline.store.audit import StoredRow
from timeline.store.eventlog import RecordedEvent


def _ref(names: Mapping[str, str], source_id: str) -> SourceRef:
    return SourceRef(id=source_id, name=names[source_id])


def claim_out(record: ClaimRecord, sources: Mapping[str, str]) -> ClaimOut:
    """The response body of one claim."""
    c = record.claim
    relations = sources.relations if isinstance(sources, queries.Names) else {}
    withdrawn = {w.denial_id: w.withdrawal_id for w in c.withdrawals}
    deniers = [d.denied_by for d in rules.standing_denials(c)]

    def side(confirmer: str) -> list[SourceRef]:
        return [_ref(sources, d) for d in dict.fromkeys(deniers) if same_side(confirmer, d, relations)]

    confirmations = [
        ConfirmationOut(
            confirmation_id=x.confirmation_id,
            source=_ref(sources, x.confirmed_by),
            statement=x.statement,
            stated_on=x.stated_on,
            addresses=x.addresses,
            denying_side=side(x.confirmed_by),
        )
        for x in c.confirmations
    ]
    return ClaimOut(
        claim_id=c.claim_id,
        subject_id=c.subject_id,
        source=_ref(sources, c.source_id),
        statement=c.statement,
        modality=c.modality,
        stated_on=c.stated_on,
        metric=c.metric,
        quantity=c.quantity,
        status=c.status,
        disputed_by=[_ref(sources, s) for s in c.disputed_by],
        confirmed_by=[_ref(sources, s) for s in c.confirmed_by],
        denials=[
            DenialOut(
                denial_id=d.denial_id,
                source=_ref(sources, d.denied_by),
                statement=d.statement,
                stated_on=d.stated_on,
                addresses=d.addresses,
                withdrawn_by=withdrawn.get(d.denial_id),
            )
            for d in c.denials
        ],
        confirmations=confirmations,
        evidence=[
            EvidenceOut(
                evidence_id=e.evidence_id,
                kind=e.kind,
                produced_by=_ref(sources, e.produced_by),
                description=e.description,
                stated_on=e.stated_on,
                url=e.url,
            )
            for e in c.evidence
        ],
        corrections=[
            CorrectionOut(
                correction_id=f.correction_id,
                corrects_version=f.corrects_version,
                changes=f.changes,
                reason=f.reason,
            )
            for f in c.corrections
        ],
        revisions=len(c.revisions),
        retracted=c.retraction is not None,
        document_ids=list(c.document_ids),
        version=c.version,
        made_position=record.made_position,
        updated_position=record.updated_position,
        occurred=c.occurred,
        figure_status=rules.figure_status(c),
        confirmed_by_denying_side=any(x.denying_side for x in confirmations),
        withdrawals=[
            WithdrawalOut(
                withdrawal_id=w.withdrawal_id,
                denial_id=w.denial_id,
                source=_ref(sources, w.withdrawn_by),
                statement=w.statement,
                stated_on=w.stated_on,
            )
            for w in c.withdrawals
        ],
    )


def estimates_out(
    subject_id: str, metric: str | None, as_of: str | None, found: queries.Estimates
) -> EstimatesOut:
    """The estimates of a subject, now or at a cut."""
    return EstimatesOut(
        subject_id=subject_id,
        subject_name=found.subject_name,
        metric=metric,
        estimates=[estimate_out(e, found.names) for e in found.estimates],
        as_of=as_of,
        known_at_position=found.cut.known_position if found.cut else None,
    )


def claim_summary(record: ClaimRecord) -> ClaimSummary:
    """A claim in a list."""
    c = record.claim
    return ClaimSummary(
        claim_id=c.claim_id,
        subject_id=c.subject_id,
        statement=c.statement,
        modality=c.modality,
        stated_on=c.stated_on,
        metric=c.metric,
        quantity=c.quantity,
        status=c.status,
        disputed_by=list(c.disputed_by),
        confirmed_by=list(c.confirmed_by),
        version=c.version,
    )


def figure_out(record: ClaimRecord, sources: Mapping[str, str]) -> FigureOut:
    """One figure of a source, from the claim holding it."""
    c = record.claim
    assert c.quantity is not None
    return FigureOut(
        claim_id=c.claim_id,
        statement=c.statement,
        quantity=c.quantity,
        modality=c.modality,
        stated_on=c.stated_on,
        # The figure's own status: a confirmation of only what happened does not confirm the figure.
        status=rules.figure_status(c) or c.status,
        disputed_by=[_ref(sources, s) for s in c.disputed_by],
        confirmed_by=[_ref(sources, s) for s in c.confirmed_by],
        occurred=c.occurred,
    )


def estimate_out(estimate: Estimate, sources: Mapping[str, str]) -> EstimateOut:
    """One source's latest figures under a metric: asserted and projected, and the headline one flat."""
    c = estimate.headline.claim
    assert c.metric is not None
    shown = figure_out(estimate.headline, sources)
    return EstimateOut(
        metric=c.metric,
        source=_ref(sources, c.source_id),
        quantity=shown.quantity,
        modality=shown.modality,
        stated_on=shown.stated_on,
        status=shown.status,
        disputed_by=shown.disputed_by,
        confirmed_by=shown.confirmed_by,
        claim_id=shown.claim_id,
        statement=shown.statement,
        kind="asserted" if estimate.asserted is not None else "projected",
        asserted=figure_out(estimate.asserted, sources) if estimate.asserted else None,
        projected=figure_out(estimate.projected, sources) if estimate.projected else None,
    )


def entry_out(
    entry: TimelineEntry, sources: Mapping[str, str], claims: Mapping[str, ClaimRecord] | None = None
) -> TimelineEntryOut:
    """One timeline entry with the documents it came from, and its claim's status given the claims."""
    record = (claims or {}).get(entry.claim_id) if entry.claim_id is not None else None
    kinds = sources.kinds if isinstance(sources, queries.Names) else {}
    return TimelineEntryOut(
        position=entry.position,
        occurred_on=entry.occurred_on,
        kind=entry.kind,
        claim_id=entry.claim_id,
        source=_ref(sources, entry.source_id),
        statement=entry.statement,
        quantity=entry.quantity,
        corrected=entry.corrected,
        url=entry.url,
        claim_status=record.claim.status if record else None,
        occurred=entry.occurred,
        stated_on=entry.stated_on,
        document_ids=list(entry.document_ids),
        metric=entry.metric,
        addresses=entry.addresses,
        statement_id=entry.statement_id,
        headline=headlines.headline(entry, sources, kinds, claims),
    )


def event_out(e: RecordedEvent) -> EventOut:
    """One stored event."""
    return EventOut(
        position=e.position,
        event_id=e.event_id,
        stream_id=e.stream_id,
        stream_version=e.stream_version,
        type=e.type,
        schema_version=e.schema_version,
        data=e.event,
        metadata=e.metadata,
        valid_from=e.valid_from,
        recorded_at=e.recorded_at,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def subject_out(reg: Registration) -> SubjectOut:
    """A subject's definition."""
    assert isinstance(reg, SubjectRegistered)
    return SubjectOut(subject_id=reg.subject_id, name=reg.name, description=reg.description)


def source_out(reg: Registration) -> SourceOut:
    """A source's definition."""
    assert isinstance(reg, SourceRegistered)
    return SourceOut(
        source_id=reg.source_id,
        name=reg.name,
        kind=reg.kind,
        country=reg.country,
        description=reg.description,
        aliases=list(reg.aliases),
        part_of=reg.part_of,
        speaks_for=reg.speaks_for,
    )


def document_out(reg: Registration) -> DocumentOut:
    """A document's details."""
    assert isinstance(reg, DocumentRegistered)
    return DocumentOut(
        document_id=reg.document_id,
        title=reg.title,
        published_on=reg.published_on,
        author=reg.author,
        publisher=reg.publisher,
        url=reg.url,
    )


_SHOWN = (
    "subject_id",
    "source_id",
    "metric",
    "statement",
    "modality",
    "stated_on",
    "quantity",
    "status",
    "disputed_by",
    "confirmed_by",
)


def _shown(claim: Claim | None) -> dict[str, Any]:
    if claim is None:
        return dict.fromkeys((*_SHOWN, "evidence"))
    shown = {name: msgspec.to_builtins(getattr(claim, name)) for name in _SHOWN}
    shown["evidence"] = [e.evidence_id for e in claim.evidence]
    return shown


def history(recorded: list[RecordedEvent], titles: dict[str, str]) -> list[HistoryEntryOut]:
    """A claim's events with what each changed in the claim as shown at the time, and later corrections."""
    corrections: dict[int, list[CorrectionRef]] = {}
    for r in recorded:
        if isinstance(r.event, RecordCorrected):
            corrections.setdefault(r.event.corrects_version, []).append(
                CorrectionRef(
                    correction_id=r.event.correction_id,
                    position=r.position,
                    recorded_at=r.recorded_at,
                    changes=r.event.changes,
                    reason=r.event.reason,
                )
            )
    entries = []
    claim: Claim | None = None
    for r in recorded:
        assert isinstance(r.event, ClaimEvent)
        before = _shown(claim)
        claim = rules.evolve(claim, r.event)
        after = _shown(claim)
        base = msgspec.structs.asdict(event_out(r))
        entries.append(
            HistoryEntryOut(
                **base,
                changes=[
                    Change(field=name, before=before[name], after=after[name])
                    for name in after
                    if before[name] != after[name]
                ],
                documents=[
                    DocumentRef(id=d, title=titles.get(d, d)) for d in getattr(r.event, "document_ids", ())
                ],
                corrected_by=corrections.get(r.stream_version, []),
            )
        )
    return entries


def event_proof(row: StoredRow, size: int, hashes: list[str]) -> EventProofOut:
    """An event as stored (the export's form) with its inclusion proof in the tree of ``size`` events."""
    stored = StoredEventOut(
        position=row.position,
        event_id=str(row.event_id),
        stream_id=row.stream_id,
        stream_version=row.stream_version,
        type=row.type,
        schema_version=row.schema_version,
        valid_from=row.valid_from,
        recorded_at=chain.timestamp(row.recorded_at),
        data=row.data,
        metadata=row.metadata,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
    inclusion = InclusionOut(position=row.position, leaf_index=row.position - 1, size=size, hashes=hashes)
    return EventProofOut(stored=stored, inclusion=inclusion)
