"""Turning stored records into response bodies (names of sources looked up once per response)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api.schemas import (
    ClaimOut,
    DenialOut,
    EstimateOut,
    EventOut,
    SourceRef,
    TimelineEntryOut,
)
from timeline.domain.events import SourceRegistered
from timeline.projections import ClaimRecord, TimelineEntry
from timeline.store import queries
from timeline.store.eventlog import RecordedEvent


async def source_names(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, SourceRef]:
    """Look up the display names of the given sources."""
    wanted = set(ids)
    found = await queries.registrations_among(conn, (f"source-{i}" for i in wanted))
    refs = {}
    for ident in wanted:
        definition = found.get(f"source-{ident}")
        name = definition.name if isinstance(definition, SourceRegistered) else ident
        refs[ident] = SourceRef(id=ident, name=name)
    return refs


def claim_out(record: ClaimRecord, sources: dict[str, SourceRef]) -> ClaimOut:
    """The response body of one claim."""
    c = record.claim
    return ClaimOut(
        claim_id=c.claim_id,
        subject_id=c.subject_id,
        source=sources[c.source_id],
        statement=c.statement,
        modality=c.modality,
        stated_on=c.stated_on,
        metric=c.metric,
        quantity=c.quantity,
        status=c.status,
        disputed_by=[sources[s] for s in c.disputed_by],
        denials=[
            DenialOut(
                denial_id=d.denial_id,
                source=sources[d.denied_by],
                statement=d.statement,
                stated_on=d.stated_on,
            )
            for d in c.denials
        ],
        revisions=len(c.revisions),
        document_ids=list(c.document_ids),
        version=c.version,
        made_position=record.made_position,
        updated_position=record.updated_position,
    )


def sources_of(records: Iterable[ClaimRecord]) -> set[str]:
    """Every source a set of claims names: their makers and whoever denied them."""
    ids: set[str] = set()
    for r in records:
        ids.add(r.claim.source_id)
        ids.update(d.denied_by for d in r.claim.denials)
    return ids


def estimate_out(record: ClaimRecord, sources: dict[str, SourceRef]) -> EstimateOut:
    """One source's latest estimate."""
    c = record.claim
    assert c.metric is not None
    assert c.quantity is not None
    return EstimateOut(
        metric=c.metric,
        source=sources[c.source_id],
        quantity=c.quantity,
        modality=c.modality,
        stated_on=c.stated_on,
        status=c.status,
        disputed_by=[sources[s] for s in c.disputed_by],
        claim_id=c.claim_id,
        statement=c.statement,
    )


def entry_out(entry: TimelineEntry, sources: dict[str, SourceRef]) -> TimelineEntryOut:
    """One timeline entry."""
    return TimelineEntryOut(
        position=entry.position,
        occurred_on=entry.occurred_on,
        kind=entry.kind,
        claim_id=entry.claim_id,
        source=sources[entry.source_id],
        statement=entry.statement,
        quantity=entry.quantity,
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
    )
