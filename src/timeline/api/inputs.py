"""Request bodies of the write API, and how each becomes a domain event.

Bodies are strict msgspec Structs (unknown fields are refused), so a wrong type, a missing field or a
stray key is reported with its JSON path before anything is recorded. Ids may be left out where the server
can choose one; stable ids chosen by the client make retries and references easier.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from timeline.api.problems import BadRequest
from timeline.domain.events import (
    Addresses,
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    CorrectedFields,
    DenialWithdrawn,
    EvidenceAttached,
    EvidenceKind,
    Modality,
    RecordCorrected,
    StatementMade,
)
from timeline.domain.values import IDEMPOTENCY_KEY_MAX, check_calendar_day, in_words, parse_stated_date
from timeline.fixtures import DateText, Ident
from timeline.fixtures.figures import OccurredSpec, QuantityIn, occurred_of, quantity_of

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Documents = Annotated[list[Ident], msgspec.Meta(min_length=1, max_length=100)]


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class _In(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ClaimIn(_In, frozen=True):
    """A new claim: who said what about which subject, when, reported where."""

    subject_id: Ident
    source_id: Ident
    statement: Text
    stated_on: DateText
    document_ids: Documents
    modality: Modality = "asserted"
    metric: Ident | None = None
    quantity: QuantityIn | None = None
    claim_id: Ident | None = None
    occurred: OccurredSpec | None = None

    def event(self) -> ClaimMade:
        """The event this body proposes."""
        return ClaimMade(
            claim_id=self.claim_id or _new_id(),
            subject_id=self.subject_id,
            source_id=self.source_id,
            statement=self.statement,
            modality=self.modality,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
            metric=self.metric,
            quantity=quantity_of(self.quantity),
            occurred=occurred_of(self.occurred),
        )


class RevisionIn(_In, frozen=True):
    """The claim's own source changed its figure or wording."""

    statement: Text
    stated_on: DateText
    document_ids: Documents
    quantity: QuantityIn | None = None
    modality: Modality | None = None
    revision_id: Ident | None = None
    occurred: OccurredSpec | None = None

    def event(self, claim_id: str) -> ClaimRevised:
        """The event this body proposes."""
        return ClaimRevised(
            claim_id=claim_id,
            revision_id=self.revision_id or _new_id(),
            statement=self.statement,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
            quantity=quantity_of(self.quantity),
            modality=self.modality,
            occurred=occurred_of(self.occurred),
        )


class DenialIn(_In, frozen=True):
    """Another source denied the claim."""

    source_id: Ident
    statement: Text
    stated_on: DateText
    document_ids: Documents
    denial_id: Ident | None = None
    # "claim" (as a whole), "proposition" (what it says happened, not its figure) or "figure".
    addresses: Addresses = "claim"

    def event(self, claim_id: str) -> ClaimDenied:
        """The event this body proposes."""
        return ClaimDenied(
            claim_id=claim_id,
            denial_id=self.denial_id or _new_id(),
            denied_by=self.source_id,
            statement=self.statement,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
            addresses=self.addresses,
        )


class DenialWithdrawalIn(_In, frozen=True):
    """A source withdrew its own earlier denial of the claim."""

    denial_id: Ident
    source_id: Ident
    statement: Text
    stated_on: DateText
    document_ids: Documents
    withdrawal_id: Ident | None = None

    def event(self, claim_id: str) -> DenialWithdrawn:
        """The event this body proposes."""
        return DenialWithdrawn(
            claim_id=claim_id,
            withdrawal_id=self.withdrawal_id or _new_id(),
            denial_id=self.denial_id,
            withdrawn_by=self.source_id,
            statement=self.statement,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
        )


class StatementIn(_In, frozen=True):
    """A source spoke on the subject without claiming a figure, denying or confirming."""

    source_id: Ident
    statement: Text
    stated_on: DateText
    document_ids: Documents
    modality: Modality = "asserted"
    statement_id: Ident | None = None

    def event(self, subject_id: str) -> StatementMade:
        """The event this body proposes."""
        return StatementMade(
            subject_id=subject_id,
            statement_id=self.statement_id or _new_id(),
            source_id=self.source_id,
            statement=self.statement,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
            modality=self.modality,
        )


class ConfirmationIn(_In, frozen=True):
    """Another source corroborated the claim."""

    source_id: Ident
    statement: Text
    stated_on: DateText
    document_ids: Documents
    confirmation_id: Ident | None = None
    addresses: Addresses = "claim"

    def event(self, claim_id: str) -> ClaimConfirmed:
        """The event this body proposes."""
        return ClaimConfirmed(
            claim_id=claim_id,
            confirmation_id=self.confirmation_id or _new_id(),
            confirmed_by=self.source_id,
            statement=self.statement,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
            addresses=self.addresses,
        )


class RetractionIn(_In, frozen=True):
    """The claim's own source withdrew it."""

    statement: Text
    stated_on: DateText
    document_ids: Documents
    retraction_id: Ident | None = None

    def event(self, claim_id: str) -> ClaimRetracted:
        """The event this body proposes."""
        return ClaimRetracted(
            claim_id=claim_id,
            retraction_id=self.retraction_id or _new_id(),
            statement=self.statement,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
        )


class EvidenceIn(_In, frozen=True):
    """Material bearing on the claim and who produced it."""

    kind: EvidenceKind
    source_id: Ident
    description: Text
    stated_on: DateText
    document_ids: Documents
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    evidence_id: Ident | None = None

    def event(self, claim_id: str) -> EvidenceAttached:
        """The event this body proposes."""
        return EvidenceAttached(
            claim_id=claim_id,
            evidence_id=self.evidence_id or _new_id(),
            kind=self.kind,
            produced_by=self.source_id,
            description=self.description,
            stated_on=parse_stated_date(self.stated_on),
            document_ids=tuple(self.document_ids),
            url=self.url,
        )


class CorrectedFieldsIn(_In, frozen=True):
    """The fields to replace in the corrected event; leave out what was recorded right."""

    statement: Text | None = None
    quantity: QuantityIn | None = None
    stated_on: DateText | None = None
    modality: Modality | None = None
    source_id: Ident | None = None
    subject_id: Ident | None = None
    metric: Ident | None = None
    occurred: OccurredSpec | None = None
    addresses: Addresses | None = None


class CorrectionIn(_In, frozen=True):
    """Our record of one of the claim's events (by its stream version) was wrong."""

    corrects_version: Annotated[int, msgspec.Meta(ge=1)]
    changes: CorrectedFieldsIn
    reason: Text
    correction_id: Ident | None = None

    def event(self, claim_id: str) -> RecordCorrected:
        """The event this body proposes."""
        c = self.changes
        return RecordCorrected(
            claim_id=claim_id,
            correction_id=self.correction_id or _new_id(),
            corrects_version=self.corrects_version,
            reason=self.reason,
            changes=CorrectedFields(
                statement=c.statement,
                quantity=quantity_of(c.quantity, field="changes.quantity"),
                occurred=occurred_of(c.occurred, field="changes.occurred"),
                stated_on=parse_stated_date(c.stated_on, field="changes.stated_on") if c.stated_on else None,
                modality=c.modality,
                source_id=c.source_id,
                subject_id=c.subject_id,
                metric=c.metric,
                addresses=c.addresses,
            ),
        )


_JSON_TYPES = ("application/json",)


async def strict_json_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a write's body before the framework reads it: a wrong content type (415), an empty body, and
    what lax decoding would let through, such as a figure sent as a string ("12")."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
        raise BadRequest(
            "Content-Type",
            f"this route reads application/json, got {media_type or 'no content type'!r}",
            status=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    body = await request.body()
    if not body.strip():
        raise BadRequest("body", "expected a JSON object, got an empty body")
    field = request.route_handler.parsed_data_field
    if field is None:
        return
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `$")
        if not message:
            message, where = str(exc), ""
        raise BadRequest(where.rstrip("`").lstrip(".") or "body", in_words(message)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body", "JSON nested too deeply to read") from None


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The request's Idempotency-Key, checked against its documented limit."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        raise BadRequest("Idempotency-Key", f"expected 1 to {IDEMPOTENCY_KEY_MAX} characters, got {len(key)}")
    return key


def draft_inputs(body: bytes, date: str | None, *, max_bytes: int) -> tuple[str, dt.date | None]:
    """An article's text for drafting, and the date given for it; refuses what cannot be an article."""
    if len(body) > max_bytes:
        raise BadRequest(
            "body",
            f"an article is at most {max_bytes:,} bytes (TIMELINE_DRAFT_MAX_BYTES), got {len(body):,}",
            status=HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    published = check_calendar_day(date, field="date") if date is not None else None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "body", f"not UTF-8 text (byte 0x{body[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip():
        raise BadRequest("body", "expected the article's text (plain text or HTML), got an empty body")
    return text, published
