"""Domain events: the facts timeline records, one frozen msgspec Struct per kind.

Every event is tagged with its ``type`` in the stored JSON, so a reader of the raw log can tell what it
is without this code. Fields are only ever added with defaults; a breaking change bumps the event's
``SCHEMA_VERSION`` and must come with an upcaster applied on read (stored bytes are never rewritten).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Modality = Literal["asserted", "alleged", "projected", "speculative", "opinion"]
# "week" (an ISO week, "2024-W42") is for when a thing happened (``Occurred``); sources' dates never use it.
Precision = Literal["day", "week", "month", "year"]
# "more_than"/"less_than" are strict bounds ("over 1,000"); "at_least"/"up_to" include the bound.
Comparator = Literal["exactly", "about", "at_least", "more_than", "up_to", "less_than", "between"]
# What a denial or confirmation bears on: the claim as a whole (as every one recorded before this field
# existed does), only what the claim says happened, or only its figure.
Addresses = Literal["claim", "proposition", "figure"]
SourceKind = Literal[
    "government", "agency", "person", "media", "organisation", "coalition", "anonymous", "experts"
]


class StatedDate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When the source said it: an ISO date cut to its precision ("2024-10-21", "2024-10" or "2024")."""

    date: str
    precision: Precision


class Quantity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A figure as the source gave it: exact or approximate, one-sided ("at least", "over") or a range.

    ``horizon``, for a projection only: when the projected figure is expected ("by December": 2024-12).
    """

    comparator: Comparator
    unit: str
    value: int | float | None = None
    lower: int | float | None = None
    upper: int | float | None = None
    horizon: StatedDate | None = None


class Occurred(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """When the thing a claim is about happened (not when it was said): one period (a day, an ISO week
    "2024-W42", a month, a year) or a range from ``start`` to ``end`` inclusive, with the source's words."""

    start: StatedDate
    end: StatedDate | None = None
    wording: str | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every domain event; the subclass name is the stored ``type``.

    Untracked by the garbage collector (``gc=False``, inherited): an event is immutable and holds only
    strings, numbers, tuples and other frozen structs, so it cannot be part of a reference cycle, and
    folding 10,000 of them no longer sets off collections that walk the whole heap.
    """


class SubjectRegistered(Event, frozen=True, kw_only=True):
    """A subject that claims are about, e.g. North Korean troops sent to Russia."""

    subject_id: str
    name: str
    description: str = ""


class SourceRegistered(Event, frozen=True, kw_only=True):
    """Someone who makes claims: a government, an agency, a person, a newspaper, unnamed sources."""

    source_id: str
    name: str
    kind: SourceKind
    country: str | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()
    # Relations to other sources, so a view can tell when a confirmation comes from the denier's own side.
    part_of: str | None = None
    speaks_for: str | None = None


class SubjectAmended(Event, frozen=True, kw_only=True):
    """A subject's name or description changed; fields left out (null) stay as they were."""

    subject_id: str
    name: str | None = None
    description: str | None = None


class SourceAmended(Event, frozen=True, kw_only=True):
    """A source's name, kind, country, description or aliases changed; null fields stay as they were."""

    source_id: str
    name: str | None = None
    kind: SourceKind | None = None
    country: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] | None = None
    part_of: str | None = None
    speaks_for: str | None = None


class DocumentAmended(Event, frozen=True, kw_only=True):
    """A document's details changed (a corrected headline, a new URL); null fields stay as they were."""

    document_id: str
    title: str | None = None
    published_on: StatedDate | None = None
    author: str | None = None
    publisher: str | None = None
    url: str | None = None


class DocumentRegistered(Event, frozen=True, kw_only=True):
    """A document (usually a news article) that reports claims."""

    document_id: str
    title: str
    published_on: StatedDate
    author: str | None = None
    publisher: str | None = None
    url: str | None = None


class ClaimMade(Event, frozen=True, kw_only=True):
    """A source said something about a subject, reported by one or more documents."""

    claim_id: str
    subject_id: str
    source_id: str
    statement: str
    modality: Modality
    stated_on: StatedDate
    document_ids: tuple[str, ...]
    metric: str | None = None
    quantity: Quantity | None = None
    # Added later, with a default: events recorded before decode unchanged.
    occurred: Occurred | None = None


class ClaimRevised(Event, frozen=True, kw_only=True):
    """The claim's own source updated its figure or wording; the previous one stays in the history."""

    claim_id: str
    revision_id: str
    statement: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]
    quantity: Quantity | None = None
    modality: Modality | None = None
    # When the thing happened, as the revision says (null: as the claim had it).
    occurred: Occurred | None = None


class ClaimDenied(Event, frozen=True, kw_only=True):
    """Another source denied the claim: it becomes disputed, never erased.

    One denial of several claims appends one of these to each claim's stream, sharing ``denial_id``.
    """

    claim_id: str
    denial_id: str
    denied_by: str
    statement: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]
    addresses: Addresses = "claim"


class ClaimRetracted(Event, frozen=True, kw_only=True):
    """The claim's own source withdrew it."""

    claim_id: str
    retraction_id: str
    statement: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]


class ClaimConfirmed(Event, frozen=True, kw_only=True):
    """Another source corroborated the claim, in its own words and on its own date."""

    claim_id: str
    confirmation_id: str
    confirmed_by: str
    statement: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]
    addresses: Addresses = "claim"


class DenialWithdrawn(Event, frozen=True, kw_only=True):
    """A source withdrew its own earlier denial (``denial_id``) of the claim; the denial stays on record."""

    claim_id: str
    withdrawal_id: str
    denial_id: str
    withdrawn_by: str
    statement: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]


class StatementMade(Event, frozen=True, kw_only=True):
    """A source spoke on a subject without claiming a figure, denying or confirming anything.

    Recorded in the subject's stream: it is on the subject's timeline and is nobody's claim.
    """

    subject_id: str
    statement_id: str
    source_id: str
    statement: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]
    modality: Modality = "asserted"


EvidenceKind = Literal["video", "image", "document", "geolocation", "audio", "data"]


class EvidenceAttached(Event, frozen=True, kw_only=True):
    """Material that bears on the claim: who produced it and what it shows. It changes no status."""

    claim_id: str
    evidence_id: str
    kind: EvidenceKind
    produced_by: str
    description: str
    stated_on: StatedDate
    document_ids: tuple[str, ...]
    url: str | None = None


class CorrectedFields(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, gc=False
):
    """The fields a correction replaces in the event it corrects; null fields are left as recorded."""

    statement: str | None = None
    quantity: Quantity | None = None
    stated_on: StatedDate | None = None
    modality: Modality | None = None
    source_id: str | None = None
    subject_id: str | None = None
    metric: str | None = None
    occurred: Occurred | None = None
    addresses: Addresses | None = None


class RecordCorrected(Event, frozen=True, kw_only=True):
    """Our record of an earlier event in this claim's stream was wrong (a typo, a wrong date or source).

    Not a revision: the source did not change its claim, we fix our entry. Views use the corrected values;
    the history keeps both the original event and this correction.
    """

    claim_id: str
    correction_id: str
    corrects_version: int
    changes: CorrectedFields
    reason: str


DomainEvent = (
    SubjectRegistered
    | SourceRegistered
    | DocumentRegistered
    | SubjectAmended
    | SourceAmended
    | DocumentAmended
    | ClaimMade
    | ClaimRevised
    | ClaimDenied
    | ClaimRetracted
    | ClaimConfirmed
    | EvidenceAttached
    | RecordCorrected
    | DenialWithdrawn
    | StatementMade
)

EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (
        SubjectRegistered,
        SourceRegistered,
        DocumentRegistered,
        SubjectAmended,
        SourceAmended,
        DocumentAmended,
        ClaimMade,
        ClaimRevised,
        ClaimDenied,
        ClaimRetracted,
        ClaimConfirmed,
        EvidenceAttached,
        RecordCorrected,
        DenialWithdrawn,
        StatementMade,
    )
}

# Bump an event's entry (and add an upcaster) when its stored shape changes incompatibly.
SCHEMA_VERSION: dict[str, int] = dict.fromkeys(EVENT_TYPES, 1)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[DomainEvent] = msgspec.json.Decoder(DomainEvent)


def encode_event(event: DomainEvent) -> bytes:
    """Encode an event as the JSON stored in the log (its ``type`` tag included)."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> DomainEvent:
    """Decode stored JSON back into its event Struct."""
    return _decoder.decode(data)
