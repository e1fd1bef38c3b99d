"""Stream ids and what an event names: spelled here once, for the write path, the views and the readers.

Every event lives in one stream: a claim's (``claim-<id>``) or a subject's, source's or document's
(``subject-<id>``, ``source-<id>``, ``document-<id>``). The ids are stored in the log, so their spelling
is part of the log's format (docs/events.md) and never changes.
"""

from __future__ import annotations

from typing import Literal, get_args

from timeline.domain.claims import ClaimEvent
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    DenialWithdrawn,
    DocumentAmended,
    DocumentRegistered,
    DomainEvent,
    EvidenceAttached,
    RecordCorrected,
    SourceAmended,
    SourceRegistered,
    StatementMade,
    SubjectAmended,
    SubjectRegistered,
)

Kind = Literal["claim", "subject", "source", "document"]
KINDS: tuple[Kind, ...] = ("claim", "subject", "source", "document")
# What a source does in a claim event that names it.
Role = Literal["maker", "denier", "confirmer", "producer", "corrected_to", "withdrawer", "speaker", "related"]


def stream_id(kind: Kind, ident: str) -> str:
    """The stream of a claim, subject, source or document."""
    return f"{kind}-{ident}"


def claim_stream(claim_id: str) -> str:
    """The stream of a claim's events."""
    return stream_id("claim", claim_id)


def subject_stream(subject_id: str) -> str:
    """The stream of a subject's registration and amendments."""
    return stream_id("subject", subject_id)


def source_stream(source_id: str) -> str:
    """The stream of a source's registration and amendments."""
    return stream_id("source", source_id)


def document_stream(document_id: str) -> str:
    """The stream of a document's registration and amendments."""
    return stream_id("document", document_id)


def parse(stream: str) -> tuple[Kind, str]:
    """A stream id's kind and the id of what it is the stream of; ``ValueError`` if it is no stream id."""
    kind, _, ident = stream.partition("-")
    for known in KINDS:
        if kind == known and ident:
            return known, ident
    raise ValueError(f"{stream!r} is not a stream id (expected one of {', '.join(KINDS)}, a dash, an id)")


# Each event type's stream: the kind and the field holding its id. Looked up by type: a ``match`` over the
# classes cost a few microseconds an event, and the write path asks up to four times an event.
_OWN_STREAM: dict[type, tuple[Kind, str]] = {
    SubjectRegistered: ("subject", "subject_id"),
    SubjectAmended: ("subject", "subject_id"),
    StatementMade: ("subject", "subject_id"),
    SourceRegistered: ("source", "source_id"),
    SourceAmended: ("source", "source_id"),
    DocumentRegistered: ("document", "document_id"),
    DocumentAmended: ("document", "document_id"),
}
_OWN_STREAM.update((cls, ("claim", "claim_id")) for cls in get_args(ClaimEvent))


def stream_of(event: DomainEvent) -> str:
    """The stream an event belongs to: one stream per claim, subject, source and document."""
    kind, field = _OWN_STREAM[type(event)]
    return stream_id(kind, getattr(event, field))


def source_roles(event: DomainEvent) -> list[tuple[str, Role]]:
    """The sources an event names and what each does in it: the maker of a claim, a denier, a confirmer, a
    producer of evidence, the source a correction gives the claim, a source withdrawing its denial, the
    speaker of a statement, or a source another is part of or speaks for."""
    match event:
        case ClaimMade():
            return [(event.source_id, "maker")]
        case ClaimDenied():
            return [(event.denied_by, "denier")]
        case ClaimConfirmed():
            return [(event.confirmed_by, "confirmer")]
        case EvidenceAttached():
            return [(event.produced_by, "producer")]
        case RecordCorrected() if event.changes.source_id is not None:
            return [(event.changes.source_id, "corrected_to")]
        case DenialWithdrawn():
            return [(event.withdrawn_by, "withdrawer")]
        case StatementMade():
            return [(event.source_id, "speaker")]
        case SourceRegistered() | SourceAmended():
            return [(s, "related") for s in (event.part_of, event.speaks_for) if s is not None]
    return []


def sources_named(event: DomainEvent) -> list[str]:
    """The sources a claim event names (see ``source_roles``)."""
    return [source for source, _ in source_roles(event)]


# The input field that names a source in each role (an error says where); "related" is part_of or speaks_for.
_FIELD_OF_ROLE: dict[Role, str] = {
    "maker": "source",
    "denier": "source",
    "confirmer": "source",
    "producer": "produced_by",
    "corrected_to": "changes.source_id",
    "withdrawer": "source",
    "speaker": "source",
}


def named_fields(event: DomainEvent) -> list[tuple[Kind, str, str]]:
    """What ``references`` names, each as (kind, id, the input field that names it), in the order an editor
    reads them: for an error that says which field names something unregistered. A statement's subject is
    its own stream (the rules check it is registered)."""
    named: list[tuple[Kind, str, str]] = []
    if isinstance(event, ClaimMade):
        named.append(("subject", event.subject_id, "subject"))
    for source, role in source_roles(event):
        related = "part_of" if source == getattr(event, "part_of", None) else "speaks_for"
        named.append(("source", source, _FIELD_OF_ROLE.get(role, related)))
    if isinstance(event, RecordCorrected) and event.changes.subject_id is not None:
        named.append(("subject", event.changes.subject_id, "changes.subject_id"))
    documents: tuple[str, ...] = getattr(event, "document_ids", ())
    named.extend(("document", d, f"documents[{i}]") for i, d in enumerate(documents))
    return named


def references(event: DomainEvent) -> set[str]:
    """The streams of the subjects, sources and documents an event names, other than its own stream:
    what must be registered before it can be recorded."""
    named = {document_stream(d) for d in getattr(event, "document_ids", ())}
    named.update(source_stream(s) for s in sources_named(event))
    if isinstance(event, ClaimMade | StatementMade):
        named.add(subject_stream(event.subject_id))
    elif isinstance(event, RecordCorrected) and event.changes.subject_id is not None:
        named.add(subject_stream(event.changes.subject_id))
    named.discard(stream_of(event))
    return named
