"""Turning stored records into response bodies (names of sources looked up once per response)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from timeline.api.schemas import (
    Change,
    ClaimOut,
    ClaimSummary,
    ConfirmationOut,
    CorrectionOut,
    CorrectionRef,
    DenialOut,
    DocumentOut,
    DocumentRef,
    EstimateOut,
    EstimatesOut,
    EventOut,
    EventProofOut,
    EvidenceOut,
    HistoryEntryOut,
    InclusionOut,
    SourceOut,
    SourceRef,
    StoredEventOut,
    SubjectOut,
    TimelineEntryOut,
)
from timeline.app import queries
from timeline.domain import claims as rules
from timeline.domain.claims import Claim, ClaimEvent, Registration
from timeline.domain.events import DocumentRegistered, RecordCorrected, SourceRegistered, SubjectRegistered
from timeline.projections import ClaimRecord, TimelineEntry
from timeline.store import chain
from timeline.store.audit import StoredRow
from timeline.store.eventlog import RecordedEvent


def _ref(names: Mapping[str, str], source_id: str) -> SourceRef:
    return SourceRef(id=source_id, name=names[source_id])


def claim_out(record: ClaimRecord, sources: Mapping[str, str]) -> ClaimOut:
    """The response body of one claim."""
    c = record.claim
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
            )
            for d in c.denials
        ],
        confirmations=[
            ConfirmationOut(
                confirmation_id=x.confirmation_id,
                source=_ref(sources, x.confirmed_by),
                statement=x.statement,
                stated_on=x.stated_on,
            )
            for x in c.confirmations
        ],
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
    )


def estimates_out(
    subject_id: str, metric: str | None, as_of: str | None, found: queries.Estimates
) -> EstimatesOut:
    """The estimates of a subject, now or at a cut."""
    return EstimatesOut(
        subject_id=subject_id,
        subject_name=found.subject_name,
        metric=metric,
        estimates=[estimate_out(r, found.names) for r in found.records],
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


def estimate_out(record: ClaimRecord, sources: Mapping[str, str]) -> EstimateOut:
    """One source's latest estimate."""
    c = record.claim
    assert c.metric is not None
    assert c.quantity is not None
    return EstimateOut(
        metric=c.metric,
        source=_ref(sources, c.source_id),
        quantity=c.quantity,
        modality=c.modality,
        stated_on=c.stated_on,
        status=c.status,
        disputed_by=[_ref(sources, s) for s in c.disputed_by],
        confirmed_by=[_ref(sources, s) for s in c.confirmed_by],
        claim_id=c.claim_id,
        statement=c.statement,
    )


def entry_out(
    entry: TimelineEntry, sources: Mapping[str, str], claims: Mapping[str, ClaimRecord] | None = None
) -> TimelineEntryOut:
    """One timeline entry with the documents it came from, and its claim's status given the claims."""
    record = (claims or {}).get(entry.claim_id)
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
        document_ids=list(entry.document_ids),
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
