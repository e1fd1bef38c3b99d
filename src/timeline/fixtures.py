"""Fixture files: one YAML document per article, decoded into typed Structs and turned into events.

Errors name the file, the place in it (``events[3].quantity.value``), its line, and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import yaml

from timeline.domain.errors import DomainError, InvalidValue
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    CorrectedFields,
    DocumentRegistered,
    DomainEvent,
    EvidenceAttached,
    EvidenceKind,
    Modality,
    Quantity,
    SourceAmended,
    SourceKind,
    SourceRegistered,
    StatedDate,
    SubjectAmended,
    SubjectRegistered,
)
from timeline.domain.values import DATE_PATTERN, IDENT_MAX, IDENT_PATTERN, in_words, parse_stated_date

Ident = Annotated[
    str,
    msgspec.Meta(
        pattern=IDENT_PATTERN,
        max_length=IDENT_MAX,
        description="A stable id: lowercase letters, digits, '.', '_' and '-'.",
    ),
]
DateText = Annotated[
    str,
    msgspec.Meta(
        pattern=DATE_PATTERN,
        description="YYYY-MM-DD, YYYY-MM or YYYY: the precision is the form it is written in.",
    ),
]
Text = Annotated[str, msgspec.Meta(min_length=1)]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class FixtureDocument(_Strict, frozen=True):
    """The article the fixture was written from."""

    id: Ident
    title: Text
    published_on: DateText
    author: str | None = None
    publisher: str | None = None
    url: str | None = None


class FixtureSubject(_Strict, frozen=True):
    """Something claims are about."""

    id: Ident
    name: Text
    description: str = ""


class FixtureSource(_Strict, frozen=True):
    """Someone who makes claims."""

    id: Ident
    name: Text
    kind: SourceKind
    country: str | None = None
    description: str = ""
    aliases: list[Text] = []


class DraftNote(_Strict, frozen=True):
    """Where a drafted entry came from; an entry still marked ``review: true`` is refused on import."""

    sentence: str
    span: Annotated[list[int], msgspec.Meta(min_length=2, max_length=2)]
    review: bool = True
    notes: str = ""


class _Entry(_Strict, frozen=True, tag_field="type"):
    draft: DraftNote | None = None


class ClaimEntry(_Entry, frozen=True, kw_only=True, tag="claim"):
    """A source's claim about a subject, with its figure if it gives one."""

    id: Ident
    subject: Ident
    source: Ident
    statement: Text
    modality: Modality = "asserted"
    stated_on: DateText | None = None
    metric: Ident | None = None
    quantity: Quantity | None = None


class RevisionEntry(_Entry, frozen=True, kw_only=True, tag="revision"):
    """The claim's own source updates its figure or wording."""

    id: Ident
    claim: Ident
    statement: Text
    stated_on: DateText | None = None
    quantity: Quantity | None = None
    modality: Modality | None = None


class DenialEntry(_Entry, frozen=True, kw_only=True, tag="denial"):
    """Another source denies one or several claims."""

    id: Ident
    source: Ident
    claims: Annotated[list[Ident], msgspec.Meta(min_length=1)]
    statement: Text
    stated_on: DateText | None = None


class RetractionEntry(_Entry, frozen=True, kw_only=True, tag="retraction"):
    """The claim's own source withdraws it."""

    id: Ident
    claim: Ident
    statement: Text
    stated_on: DateText | None = None


class ConfirmationEntry(_Entry, frozen=True, kw_only=True, tag="confirmation"):
    """Another source corroborates a claim."""

    id: Ident
    claim: Ident
    source: Ident
    statement: Text
    stated_on: DateText | None = None


class EvidenceEntry(_Entry, frozen=True, kw_only=True, tag="evidence"):
    """A video, image, document or geolocation bearing on a claim, and who produced it."""

    id: Ident
    claim: Ident
    kind: EvidenceKind
    source: Ident
    description: Text
    url: str | None = None
    stated_on: DateText | None = None


class FixtureCorrectedFields(_Strict, frozen=True):
    """The fields a correction replaces; leave out what was recorded right."""

    statement: Text | None = None
    quantity: Quantity | None = None
    stated_on: DateText | None = None
    modality: Modality | None = None
    source: Ident | None = None
    subject: Ident | None = None
    metric: Ident | None = None


class CorrectionEntry(_Entry, frozen=True, kw_only=True, tag="correction"):
    """Our record of an earlier entry was wrong: ``corrects`` is that entry's id (the claim's id for the
    claim itself, or the id of one of its revisions, denials, confirmations, evidence or retraction)."""

    id: Ident
    claim: Ident
    corrects: Ident
    changes: FixtureCorrectedFields
    reason: Text


class SubjectAmendmentEntry(_Entry, frozen=True, kw_only=True, tag="subject-amendment"):
    """A subject's name or description changes."""

    subject: Ident
    name: Text | None = None
    description: str | None = None


class SourceAmendmentEntry(_Entry, frozen=True, kw_only=True, tag="source-amendment"):
    """A source's name, kind, country, description or aliases change."""

    source: Ident
    name: Text | None = None
    kind: SourceKind | None = None
    country: str | None = None
    description: str | None = None
    aliases: list[Text] | None = None


Entry = (
    ClaimEntry
    | RevisionEntry
    | DenialEntry
    | RetractionEntry
    | ConfirmationEntry
    | EvidenceEntry
    | CorrectionEntry
    | SubjectAmendmentEntry
    | SourceAmendmentEntry
)


class CorrectionRef(msgspec.Struct, frozen=True, kw_only=True):
    """A correction whose target is named by entry id; the importer resolves it to a stream version."""

    claim_id: str
    correction_id: str
    corrects: str
    changes: CorrectedFields
    reason: str


class Fixture(_Strict, frozen=True):
    """One article: its document, the subjects and sources it introduces, and its claims in order."""

    document: FixtureDocument
    subjects: list[FixtureSubject] = []
    sources: list[FixtureSource] = []
    events: list[Entry] = []


class FixtureError(Exception):
    """A fixture could not be read or recorded; says where and what."""

    def __init__(self, file: str, path: str, line: int | None, message: str) -> None:
        self.file = file
        self.path = path
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


# libyaml's parser when PyYAML has it (about ten times faster); the resolver below is ours either way.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """Safe YAML where dates stay strings (their written form carries their precision) and, as in YAML 1.2,
    only true/false are booleans: a statement reading ``no`` or ``off`` stays text."""


_DROPPED = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class ParsedFixture:
    """A decoded fixture, with its YAML node tree for pointing at lines."""

    file: str
    fixture: Fixture
    root: yaml.Node

    def line_of(self, path: str) -> int | None:
        """The 1-based line of a path like ``events[3].quantity.value`` (or of its nearest parent)."""
        return _line_of(self.root, path)


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _line_of(root: yaml.Node, path: str) -> int | None:
    node = root
    for match in _STEP.finditer("." + path if path and not path.startswith("[") else path):
        key, index = match.groups()
        child: yaml.Node | None = None
        if key is not None and isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if child is not None and isinstance(child, yaml.ScalarNode):
                return child.start_mark.line + 1
        elif index is not None and isinstance(node, yaml.SequenceNode):
            i = int(index)
            child = node.value[i] if i < len(node.value) else None
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def parse(text: str | bytes, file: str) -> ParsedFixture:
    """Decode fixture text (YAML or JSON) into a ``Fixture``; raise ``FixtureError`` saying where and what."""
    if len(text) > MAX_FIXTURE_BYTES:
        raise FixtureError(file, "", None, f"over the limit of {MAX_FIXTURE_BYTES:,} bytes for one fixture")
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Named here, by the byte itself: libyaml reports some invalid sequences as character -1.
            line = raw[: exc.start].count(b"\n") + 1
            raise FixtureError(
                file,
                "",
                line,
                f"not valid YAML: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not UTF-8 text",
            ) from None
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _check_expanded_size(root, file)
            data: Any = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise FixtureError(
            file, "", mark.line + 1 if mark else None, f"not valid YAML: {exc.problem}"
        ) from None
    except yaml.reader.ReaderError as exc:
        # Raised before any parsing, for bytes that are not UTF-8 or characters YAML forbids (NUL, ...).
        line = _reader_line(text, exc)
        raise FixtureError(file, "", line, f"not valid YAML: {_reader_problem(exc)}") from None
    if root is None or not isinstance(data, dict):
        raise FixtureError(file, "", 1, "expected a mapping with 'document', 'sources', 'events'")
    try:
        fixture = msgspec.convert(data, Fixture)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `$")
        path = where.rstrip("`").lstrip(".") if where else ""
        if not message:
            message, path = str(exc), ""
        raise FixtureError(file, path, _line_of(root, path), in_words(message)) from None
    return ParsedFixture(file=file, fixture=fixture, root=root)


# A fixture is one article's claims: a few thousand YAML nodes. Aliases may repeat a node, but a document
# whose aliases expand it past this many nodes (a "billion laughs" bomb) is refused before anything is
# built from it.
MAX_EXPANDED_NODES = 200_000
MAX_FIXTURE_BYTES = 5_000_000


def _check_expanded_size(root: yaml.Node, file: str) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a node reached again through itself (a recursive alias) counts once
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        total = min(total, MAX_EXPANDED_NODES + 1)
        sizes[id(node)] = total
        return total

    if size(root) > MAX_EXPANDED_NODES:
        raise FixtureError(
            file,
            "",
            1,
            f"its aliases expand it past {MAX_EXPANDED_NODES:,} YAML nodes; write the entries out",
        )


def _reader_line(text: str | bytes, exc: yaml.reader.ReaderError) -> int:
    # The reader counts characters once it has decoded, bytes when it could not.
    before = text[: exc.position]
    return (before.count(b"\n") if isinstance(before, bytes) else before.count("\n")) + 1


def _reader_problem(exc: yaml.reader.ReaderError) -> str:
    # The C reader gives the character as a number, the Python one as text or, undecodable, as bytes.
    char: Any = exc.character
    code = char[0] if isinstance(char, bytes) else char if isinstance(char, int) else ord(char)
    if isinstance(char, bytes) or "UTF-8" in exc.reason:
        return f"byte 0x{code:02x} at offset {exc.position} is not UTF-8 text ({exc.reason})"
    return f"character U+{code:04X} at offset {exc.position} is not allowed in YAML ({exc.reason})"


def _date(text: str | None, default: StatedDate, path: str) -> StatedDate:
    return default if text is None else parse_stated_date(text, field=path)


def to_events(parsed: ParsedFixture) -> Iterator[tuple[str, DomainEvent | CorrectionRef]]:
    """The events a fixture proposes, in order, each with its place in the file.

    Raises ``FixtureError`` for a date that is well formed but not a real date.
    """
    try:
        yield from _to_events(parsed.fixture)
    except DomainError as exc:
        path = exc.field or ""
        raise FixtureError(parsed.file, path, parsed.line_of(path), exc.message) from None


def _to_events(fx: Fixture) -> Iterator[tuple[str, DomainEvent | CorrectionRef]]:
    doc = fx.document
    published = parse_stated_date(doc.published_on, field="document.published_on")
    docs = (doc.id,)
    yield (
        "document",
        DocumentRegistered(
            document_id=doc.id,
            title=doc.title,
            published_on=published,
            author=doc.author,
            publisher=doc.publisher,
            url=doc.url,
        ),
    )
    for i, s in enumerate(fx.subjects):
        yield (
            f"subjects[{i}]",
            SubjectRegistered(subject_id=s.id, name=s.name, description=s.description),
        )
    for i, src in enumerate(fx.sources):
        yield (
            f"sources[{i}]",
            SourceRegistered(
                source_id=src.id,
                name=src.name,
                kind=src.kind,
                country=src.country,
                description=src.description,
            ),
        )
    for i, entry in enumerate(fx.events):
        at = f"events[{i}]"
        if entry.draft is not None and entry.draft.review:
            raise InvalidValue(
                "this entry was drafted from the article and not reviewed yet: check it against its "
                "sentence, then set draft.review to false (or remove draft)",
                field=f"{at}.draft.review",
            )
        if isinstance(entry, SubjectAmendmentEntry | SourceAmendmentEntry | CorrectionEntry):
            yield at, _other(entry, at)
            continue
        stated = _date(entry.stated_on, published, f"{at}.stated_on")
        match entry:
            case ClaimEntry():
                yield (
                    at,
                    ClaimMade(
                        claim_id=entry.id,
                        subject_id=entry.subject,
                        source_id=entry.source,
                        statement=entry.statement,
                        modality=entry.modality,
                        stated_on=stated,
                        document_ids=docs,
                        metric=entry.metric,
                        quantity=entry.quantity,
                    ),
                )
            case RevisionEntry():
                yield (
                    at,
                    ClaimRevised(
                        claim_id=entry.claim,
                        revision_id=entry.id,
                        statement=entry.statement,
                        stated_on=stated,
                        document_ids=docs,
                        quantity=entry.quantity,
                        modality=entry.modality,
                    ),
                )
            case DenialEntry():
                for claim_id in entry.claims:
                    yield (
                        at,
                        ClaimDenied(
                            claim_id=claim_id,
                            denial_id=entry.id,
                            denied_by=entry.source,
                            statement=entry.statement,
                            stated_on=stated,
                            document_ids=docs,
                        ),
                    )
            case RetractionEntry():
                yield (
                    at,
                    ClaimRetracted(
                        claim_id=entry.claim,
                        retraction_id=entry.id,
                        statement=entry.statement,
                        stated_on=stated,
                        document_ids=docs,
                    ),
                )
            case ConfirmationEntry():
                yield (
                    at,
                    ClaimConfirmed(
                        claim_id=entry.claim,
                        confirmation_id=entry.id,
                        confirmed_by=entry.source,
                        statement=entry.statement,
                        stated_on=stated,
                        document_ids=docs,
                    ),
                )
            case EvidenceEntry():
                yield (
                    at,
                    EvidenceAttached(
                        claim_id=entry.claim,
                        evidence_id=entry.id,
                        kind=entry.kind,
                        produced_by=entry.source,
                        description=entry.description,
                        url=entry.url,
                        stated_on=stated,
                        document_ids=docs,
                    ),
                )


def _other(
    entry: SubjectAmendmentEntry | SourceAmendmentEntry | CorrectionEntry, at: str
) -> DomainEvent | CorrectionRef:
    match entry:
        case SubjectAmendmentEntry():
            return SubjectAmended(subject_id=entry.subject, name=entry.name, description=entry.description)
        case SourceAmendmentEntry():
            return SourceAmended(
                source_id=entry.source,
                name=entry.name,
                kind=entry.kind,
                country=entry.country,
                description=entry.description,
                aliases=tuple(entry.aliases) if entry.aliases is not None else None,
            )
        case CorrectionEntry():
            c = entry.changes
            return CorrectionRef(
                claim_id=entry.claim,
                correction_id=entry.id,
                corrects=entry.corrects,
                reason=entry.reason,
                changes=CorrectedFields(
                    statement=c.statement,
                    quantity=c.quantity,
                    stated_on=parse_stated_date(c.stated_on, field=f"{at}.changes.stated_on")
                    if c.stated_on
                    else None,
                    modality=c.modality,
                    source_id=c.source,
                    subject_id=c.subject,
                    metric=c.metric,
                ),
            )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a fixture file, for editors to validate against."""
    return msgspec.json.schema(Fixture)
