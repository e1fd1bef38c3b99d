"""Response bodies of the HTTP API: their own types, apart from events and table rows."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import msgspec

from timeline.api.audit_schemas import EventProofOut
from timeline.domain.events import CorrectedFields, DomainEvent, Modality, Occurred, Quantity, StatedDate
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
    # What it bears on: the claim as a whole, what the claim says happened ("proposition"), or its figure.
    addresses: str = "claim"
    # The id of the source's own withdrawal of this denial, if it withdrew it.
    withdrawn_by: str | None = None


class ConfirmationOut(msgspec.Struct, kw_only=True):
    """A corroboration of a claim by another source."""

    confirmation_id: str
    source: SourceRef
    statement: str
    stated_on: StatedDate
    addresses: str = "claim"
    # Standing deniers of the claim on whose side this source is (part of it, speaking for it, or both part
    # of the same source): "confirmed by a part of the side that denied it".
    denying_side: list[SourceRef] = []


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
    # When the claim says the thing happened, if it says.
    occurred: Occurred | None = None
    # The status of its figure alone (null without one): a confirmation of only what happened leaves the
    # figure unconfirmed.
    figure_status: str | None = None
    # Whether a confirmation comes from the side of a source that denies the claim.
    confirmed_by_denying_side: bool = False
    withdrawals: list[WithdrawalOut] = []


class WithdrawalOut(msgspec.Struct, kw_only=True):
    """A source's withdrawal of its own denial."""

    withdrawal_id: str
    denial_id: str
    source: SourceRef
    statement: str
    stated_on: StatedDate


class FigureOut(msgspec.Struct, kw_only=True):
    """One figure of a source: the claim that holds it, as it stands."""

    claim_id: str
    statement: str
    quantity: Quantity
    modality: Modality
    stated_on: StatedDate
    status: str
    disputed_by: list[SourceRef]
    confirmed_by: list[SourceRef]
    occurred: Occurred | None = None


class EstimateOut(msgspec.Struct, kw_only=True):
    """One source's latest figures for a subject and metric: ``asserted`` (what it says now) and
    ``projected`` (what it expects, with the quantity's ``horizon``), each null when there is none. The
    top-level figure fields repeat the asserted figure, or the projection when nothing is asserted
    (``kind`` says which), as before both were kept."""

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
    kind: Literal["asserted", "projected"]
    asserted: FigureOut | None
    projected: FigureOut | None


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
    # Null for a statement, which is nobody's claim (``statement_id`` names it).
    claim_id: str | None
    source: SourceRef
    statement: str
    quantity: Quantity | None
    corrected: bool
    url: str | None = None
    claim_status: str | None = None
    document_ids: list[str] = []
    metric: str | None = None
    addresses: str | None = None
    statement_id: str | None = None
    # The entry in one line for a reader, e.g. "Unnamed sources: up to 12,000 soldiers sent".
    headline: str = ""
    # When the claim says the thing happened (``occurred_on`` is then its start) and when it was said.
    occurred: Occurred | None = None
    stated_on: StatedDate | None = None


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


class RebuildOut(msgspec.Struct, kw_only=True):
    """How many events the views were refolded from."""

    replayed: int
    views_position: int
