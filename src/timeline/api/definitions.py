"""Request bodies that register or amend a subject, source or document, and the event each proposes.

Strict like every write body (``api/inputs.py``): unknown fields are refused, each with its JSON path.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from timeline.api.inputs import Name
from timeline.domain.events import (
    DocumentAmended,
    DocumentRegistered,
    SourceAmended,
    SourceKind,
    SourceRegistered,
    SubjectAmended,
    SubjectRegistered,
)
from timeline.domain.values import parse_stated_date
from timeline.fixtures import DateText, Ident


class _In(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class SubjectIn(_In, frozen=True):
    """A new subject."""

    subject_id: Ident
    name: Name
    description: str = ""

    def event(self) -> SubjectRegistered:
        """The event this body proposes."""
        return SubjectRegistered(subject_id=self.subject_id, name=self.name, description=self.description)


class SubjectPatch(_In, frozen=True):
    """Fields of a subject to change."""

    name: Name | None = None
    description: str | None = None

    def event(self, subject_id: str) -> SubjectAmended:
        """The event this body proposes."""
        return SubjectAmended(subject_id=subject_id, name=self.name, description=self.description)


class SourceIn(_In, frozen=True):
    """A new source."""

    source_id: Ident
    name: Name
    kind: SourceKind
    country: Annotated[str, msgspec.Meta(max_length=10)] | None = None
    description: str = ""
    aliases: list[Name] = []
    # The source it is part of (a ministry of its government) and the one it speaks for (a spokesperson).
    part_of: Ident | None = None
    speaks_for: Ident | None = None

    def event(self) -> SourceRegistered:
        """The event this body proposes."""
        return SourceRegistered(
            source_id=self.source_id,
            name=self.name,
            kind=self.kind,
            country=self.country,
            description=self.description,
            aliases=tuple(self.aliases),
            part_of=self.part_of,
            speaks_for=self.speaks_for,
        )


class SourcePatch(_In, frozen=True):
    """Fields of a source to change."""

    name: Name | None = None
    kind: SourceKind | None = None
    country: Annotated[str, msgspec.Meta(max_length=10)] | None = None
    description: str | None = None
    aliases: list[Name] | None = None
    part_of: Ident | None = None
    speaks_for: Ident | None = None

    def event(self, source_id: str) -> SourceAmended:
        """The event this body proposes."""
        return SourceAmended(
            source_id=source_id,
            name=self.name,
            kind=self.kind,
            country=self.country,
            description=self.description,
            aliases=tuple(self.aliases) if self.aliases is not None else None,
            part_of=self.part_of,
            speaks_for=self.speaks_for,
        )


class DocumentIn(_In, frozen=True):
    """A new document (usually a news article)."""

    document_id: Ident
    title: Name
    published_on: DateText
    author: Name | None = None
    publisher: Name | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None

    def event(self) -> DocumentRegistered:
        """The event this body proposes."""
        return DocumentRegistered(
            document_id=self.document_id,
            title=self.title,
            published_on=parse_stated_date(self.published_on, field="published_on"),
            author=self.author,
            publisher=self.publisher,
            url=self.url,
        )


class DocumentPatch(_In, frozen=True):
    """Fields of a document to change."""

    title: Name | None = None
    published_on: DateText | None = None
    author: Name | None = None
    publisher: Name | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None

    def event(self, document_id: str) -> DocumentAmended:
        """The event this body proposes."""
        return DocumentAmended(
            document_id=document_id,
            title=self.title,
            published_on=parse_stated_date(self.published_on, field="published_on")
            if self.published_on
            else None,
            author=self.author,
            publisher=self.publisher,
            url=self.url,
        )
