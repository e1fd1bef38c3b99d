"""Bodies of the catalog routes: subjects, sources and documents as defined now, and a source's record."""

from __future__ import annotations

import msgspec

from timeline.domain.events import Modality, Quantity, StatedDate


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
    # The source it is part of and the one it speaks for (ids), if registered with them.
    part_of: str | None = None
    speaks_for: str | None = None


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
    statements: int
    denials: int
    denials_withdrawn: int
    confirmations: int
    evidence: int
    last_position: int


class SourceDetailOut(msgspec.Struct, kw_only=True):
    """A source and a page of the claims it made, with their fates."""

    source: SourceOut
    claims: list[ClaimSummary]
    next: str | None
    activity: SourceActivityOut | None = None
