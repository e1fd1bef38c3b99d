"""Response bodies of the HTTP API: their own types, apart from events and table rows."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from timeline.domain.events import CorrectedFields, DomainEvent, Modality, Quantity, StatedDate
from timeline.store.eventlog import Metadata


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem: what went wrong and, for bad input, where."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemItem] | None = None


class ProblemItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thing wrong with the input: where (a path, a line) and what."""

    message: str
    path: str | None = None
    file: str | None = None
    line: int | None = None


class SourceRef(msgspec.Struct, kw_only=True):
    """A source by id and name."""

    id: str
    name: str


class DenialOut(msgspec.Struct, kw_only=True):
    """A denial of a claim by another source."""

    denial_id: str
    source: SourceRef
    statement: str
    stated_on: StatedDate


class ConfirmationOut(msgspec.Struct, kw_only=True):
    """A corroboration of a claim by another source."""

    confirmation_id: str
    source: SourceRef
    statement: str
    stated_on: StatedDate


class EvidenceOut(msgspec.Struct, kw_only=True):
    """Material bearing on a claim."""

    evidence_id: str
    kind: str
    produced_by: SourceRef
    description: str
    stated_on: StatedDate
    url: str | None


class CorrectionOut(msgspec.Struct, kw_only=True):
    """A fix of our record of one of the claim's events."""

    correction_id: str
    corrects_version: int
    changes: CorrectedFields
    reason: str


class ClaimOut(msgspec.Struct, kw_only=True):
    """A claim as it stands now (corrections applied; the history keeps what was first recorded)."""

    claim_id: str
    subject_id: str
    source: SourceRef
    statement: str
    modality: Modality
    stated_on: StatedDate
    metric: str | None
    quantity: Quantity | None
    status: str
    disputed_by: list[SourceRef]
    confirmed_by: list[SourceRef]
    denials: list[DenialOut]
    confirmations: list[ConfirmationOut]
    evidence: list[EvidenceOut]
    corrections: list[CorrectionOut]
    revisions: int
    retracted: bool
    document_ids: list[str]
    version: int
    made_position: int
    updated_position: int
    as_of: str | None = None
    known_at_position: int | None = None


class EstimateOut(msgspec.Struct, kw_only=True):
    """One source's latest figure for a subject and metric."""

    metric: str
    source: SourceRef
    quantity: Quantity
    modality: Modality
    stated_on: StatedDate
    status: str
    disputed_by: list[SourceRef]
    confirmed_by: list[SourceRef]
    claim_id: str
    statement: str


class EstimatesOut(msgspec.Struct, kw_only=True):
    """The latest estimate of each source on a subject."""

    subject_id: str
    subject_name: str
    metric: str | None
    estimates: list[EstimateOut]
    as_of: str | None = None
    known_at_position: int | None = None


class TimelineEntryOut(msgspec.Struct, kw_only=True):
    """A dated happening: a claim made, revised, denied, confirmed or retracted, or evidence attached;
    ``document_ids`` are the documents this happening was reported in (not all of its claim's)."""

    position: int
    occurred_on: StatedDate
    kind: str
    claim_id: str
    source: SourceRef
    statement: str
    quantity: Quantity | None
    corrected: bool
    url: str | None = None
    claim_status: str | None = None
    document_ids: list[str] = []


class TimelineOut(msgspec.Struct, kw_only=True):
    """A page of a subject's timeline; follow ``next`` for the rest."""

    subject_id: str
    subject_name: str
    entries: list[TimelineEntryOut]
    next: str | None
    as_of: str | None = None
    known_at_position: int | None = None


class EventOut(msgspec.Struct, kw_only=True):
    """An event as stored: its place in the log, the event itself and how it was recorded."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: DomainEvent
    metadata: Metadata
    valid_from: dt.date | None
    recorded_at: dt.datetime
    prev_hash: str
    hash: str


class EventsOut(msgspec.Struct, kw_only=True):
    """A page of the global log in order; ``next`` continues after the last event."""

    events: list[EventOut]
    head_position: int
    next: str | None


class Change(msgspec.Struct, kw_only=True):
    """One field of the claim's state, before and after an event (as the system showed it then)."""

    field: str
    before: Any
    after: Any


class DocumentRef(msgspec.Struct, kw_only=True):
    """A document by id and title."""

    id: str
    title: str


class CorrectionRef(msgspec.Struct, kw_only=True):
    """A later correction of this event."""

    correction_id: str
    position: int
    recorded_at: dt.datetime
    changes: CorrectedFields
    reason: str


class HistoryEntryOut(EventOut, kw_only=True, omit_defaults=True):
    """An event of a claim with what it changed, where it came from and how it was corrected later; with
    ``proof=true``, the event as stored and its inclusion proof (absent for an event no checkpoint covers)."""

    changes: list[Change]
    documents: list[DocumentRef]
    corrected_by: list[CorrectionRef]
    proof: EventProofOut | None = None


class HistoryOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every event of one claim, in order, as first recorded; with ``proof=true``, the signed checkpoint
    (a C2SP note) the proofs are against."""

    claim_id: str
    events: list[HistoryEntryOut]
    checkpoint: str | None = None


class ImportOut(msgspec.Struct, kw_only=True):
    """What an import added."""

    document_id: str
    import_id: str
    appended: int
    unchanged: int
    first_position: int | None
    last_position: int | None


class ResponseCacheOut(msgspec.Struct, kw_only=True):
    """This process's cache of read responses (each valid while the views stay where it was built)."""

    entries: int
    bytes: int
    limit_bytes: int
    hits: int
    misses: int


class HealthOut(msgspec.Struct, kw_only=True):
    """Whether the service can reach its database, how far the views are behind the log, and which events
    no signed checkpoint covers."""

    status: str
    database: str
    head_position: int
    views_position: int
    projections: dict[str, int]
    # The size of the latest signed checkpoint, and the events past it that no signature covers (from
    # unsigned_from to the head): all of them without a key; with one, events timeline did not append.
    signed_position: int = 0
    unsigned_events: int = 0
    unsigned_from: int | None = None
    response_cache: ResponseCacheOut | None = None


class WriteOut(msgspec.Struct, kw_only=True):
    """What a write recorded: the stream, its version now (also the ETag), and the new events."""

    stream_id: str
    version: int
    events: list[EventOut]


class SubjectOut(msgspec.Struct, kw_only=True):
    """A subject's current definition."""

    subject_id: str
    name: str
    description: str


class SourceOut(msgspec.Struct, kw_only=True):
    """A source's current definition."""

    source_id: str
    name: str
    kind: str
    country: str | None
    description: str
    aliases: list[str]


class DocumentOut(msgspec.Struct, kw_only=True):
    """A document's current details."""

    document_id: str
    title: str
    published_on: StatedDate
    author: str | None
    publisher: str | None
    url: str | None


class SubjectsOut(msgspec.Struct, kw_only=True):
    """A page of subjects by id."""

    subjects: list[SubjectOut]
    next: str | None


class SourcesOut(msgspec.Struct, kw_only=True):
    """A page of sources by id."""

    sources: list[SourceOut]
    next: str | None


class DocumentsOut(msgspec.Struct, kw_only=True):
    """A page of documents by id."""

    documents: list[DocumentOut]
    next: str | None


class ClaimSummary(msgspec.Struct, kw_only=True):
    """A claim in a list: what it says now and what became of it."""

    claim_id: str
    subject_id: str
    statement: str
    modality: Modality
    stated_on: StatedDate
    metric: str | None
    quantity: Quantity | None
    status: str
    disputed_by: list[str]
    confirmed_by: list[str]
    version: int


class SourceActivityOut(msgspec.Struct, kw_only=True):
    """What a source has on record (an asynchronous projection: may lag the log by a moment)."""

    claims_made: int
    denials: int
    confirmations: int
    evidence: int
    last_position: int


class SourceDetailOut(msgspec.Struct, kw_only=True):
    """A source and a page of the claims it made, with their fates."""

    source: SourceOut
    claims: list[ClaimSummary]
    next: str | None
    activity: SourceActivityOut | None = None


class RebuildOut(msgspec.Struct, kw_only=True):
    """How many events the views were refolded from."""

    replayed: int
    views_position: int


class HeadOut(msgspec.Struct, kw_only=True):
    """The last event's position and hash: note them, and later verify the log only grew from there."""

    position: int
    hash: str


class InclusionOut(msgspec.Struct, kw_only=True):
    """An RFC 9162 inclusion proof: the sibling subtree roots (base64), the one nearest the leaf first."""

    position: int
    leaf_index: int
    size: int
    hashes: list[str]


class ConsistencyOut(msgspec.Struct, kw_only=True):
    """An RFC 9162 consistency proof between two tree sizes (hashes in base64)."""

    from_size: int = msgspec.field(name="from")
    to_size: int = msgspec.field(name="to")
    hashes: list[str]


class CosignatureIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A witness's cosignature of the signed checkpoint of ``size`` events (a C2SP tlog-cosignature line),
    with the witness's verifier key (a cosignature/v1 key) to check it by."""

    size: int
    verifier_key: str
    signature: str


class CosignatureOut(msgspec.Struct, kw_only=True):
    """A cosignature kept."""

    size: int
    witness: str
    signed_at: dt.datetime


class StoredEventOut(msgspec.Struct, kw_only=True):
    """An event exactly as stored and hashed (the form of an export line), to recompute its hash from."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    valid_from: dt.date | None
    recorded_at: str
    data: str
    metadata: str
    prev_hash: str
    hash: str


class EventProofOut(msgspec.Struct, kw_only=True):
    """An event as stored, and its inclusion proof in the tree of the checkpoint the history names."""

    stored: StoredEventOut
    inclusion: InclusionOut
