"""The write path: check each proposed event against the rules, append it, and update the views.

A ``Recorder`` lives inside one write transaction, so a batch (an import, a request) is all or nothing.
It reads each stream it touches from the log itself, folds it with the domain's ``evolve``, asks the
domain's ``decide_*`` rules what to append, and appends with the version it read as the expected version.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.domain import claims as rules
from timeline.domain.claims import Claim, Registration
from timeline.domain.errors import DefinitionConflict, DomainError, UnknownReference
from timeline.domain.events import (
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DocumentRegistered,
    DomainEvent,
    SourceRegistered,
    SubjectRegistered,
    stream_of,
)
from timeline.domain.values import period_start
from timeline.store import eventlog, views
from timeline.store.eventlog import Metadata, NewEvent, RecordedEvent


class Rejected(Exception):
    """A proposed event broke a rule. ``origin`` says which input it came from, ``field`` where in it."""

    def __init__(self, origin: str, error: DomainError, *, detail: str | None = None) -> None:
        self.origin = origin
        self.error = error
        self.field = error.field
        self.message = detail or error.message
        super().__init__(f"{self.place}: {self.message}")

    @property
    def place(self) -> str:
        """The full path of the problem, e.g. ``events[3].quantity.value``."""
        return f"{self.origin}.{self.field}" if self.field else self.origin


@dataclass
class _Stream:
    events: list[RecordedEvent] = field(default_factory=list)

    @property
    def version(self) -> int:
        return len(self.events)


def _valid_from(event: DomainEvent) -> dt.date | None:
    stated = getattr(event, "stated_on", None) or getattr(event, "published_on", None)
    return period_start(stated) if stated is not None else None


def _ident_of(event: DomainEvent) -> str:
    for name in ("revision_id", "denial_id", "retraction_id", "claim_id"):
        if hasattr(event, name):
            return str(getattr(event, name))
    return stream_of(event).split("-", 1)[1]


class Recorder:
    """Records proposed events within one write transaction; ``finish`` updates the views."""

    def __init__(
        self,
        conn: AsyncConnection,
        *,
        recorded_by: str,
        label: str,
        import_id: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.conn = conn
        # Names the input (a fixture file, a request) in each event's metadata origin.
        self.label = label
        self.recorded_at = dt.datetime.now(dt.UTC)
        self._base = Metadata(
            recorded_by=recorded_by,
            import_id=import_id,
            request_id=request_id,
            idempotency_key=idempotency_key,
        )
        self._streams: dict[str, _Stream] = {}
        self.appended: list[RecordedEvent] = []
        self.unchanged = 0

    async def _stream(self, stream_id: str) -> _Stream:
        if stream_id not in self._streams:
            self._streams[stream_id] = _Stream(await eventlog.read_stream(self.conn, stream_id))
        return self._streams[stream_id]

    async def _require(self, kind: str, ident: str, origin: str, where: str) -> None:
        if (await self._stream(f"{kind}-{ident}")).version == 0:
            raise Rejected(origin, UnknownReference(kind, ident, field=where))

    async def record(self, event: DomainEvent, *, origin: str) -> list[RecordedEvent]:
        """Check ``event`` against the rules and append it (or nothing, if it is already recorded)."""
        stream_id = stream_of(event)
        stream = await self._stream(stream_id)
        try:
            await self._check_references(event, origin)
            decided = self._decide(stream, event)
        except DefinitionConflict as conflict:
            raise Rejected(origin, conflict, detail=self._conflict_detail(stream, event, conflict)) from None
        except DomainError as error:
            raise Rejected(origin, error) from None
        if not decided:
            self.unchanged += 1
            return []
        metadata = Metadata(
            recorded_by=self._base.recorded_by,
            origin=f"{self.label} {origin}",
            import_id=self._base.import_id,
            request_id=self._base.request_id,
            idempotency_key=self._base.idempotency_key,
        )
        recorded = await eventlog.append(
            self.conn,
            stream_id,
            stream.version,
            [NewEvent(event=e, valid_from=_valid_from(e), metadata=metadata) for e in decided],
            recorded_at=self.recorded_at,
        )
        stream.events.extend(recorded)
        self.appended.extend(recorded)
        return recorded

    async def _check_references(self, event: DomainEvent, origin: str) -> None:
        match event:
            case ClaimMade():
                await self._require("subject", event.subject_id, origin, "subject")
                await self._require("source", event.source_id, origin, "source")
                for i, doc in enumerate(event.document_ids):
                    await self._require("document", doc, origin, f"documents[{i}]")
            case ClaimDenied():
                await self._require("source", event.denied_by, origin, "source")
                for i, doc in enumerate(event.document_ids):
                    await self._require("document", doc, origin, f"documents[{i}]")
            case ClaimRevised() | ClaimRetracted():
                for i, doc in enumerate(event.document_ids):
                    await self._require("document", doc, origin, f"documents[{i}]")

    def _decide(self, stream: _Stream, event: DomainEvent) -> list[DomainEvent]:
        if isinstance(event, SubjectRegistered | SourceRegistered | DocumentRegistered):
            existing: Registration | None = None
            if stream.events:
                first = stream.events[0].event
                assert isinstance(first, SubjectRegistered | SourceRegistered | DocumentRegistered)
                existing = first
            return rules.decide_registration(existing, event)
        claim = self.claim_state(stream)
        match event:
            case ClaimMade():
                return rules.decide_make(claim, event)
            case ClaimRevised():
                return rules.decide_revise(claim, event)
            case ClaimDenied():
                return rules.decide_deny(claim, event)
            case ClaimRetracted():
                return rules.decide_retract(claim, event)
        raise AssertionError(event)  # pragma: no cover

    @staticmethod
    def claim_state(stream: _Stream) -> Claim | None:
        """Fold a claim stream's events into its state."""
        claim: Claim | None = None
        for recorded in stream.events:
            assert isinstance(recorded.event, ClaimMade | ClaimRevised | ClaimDenied | ClaimRetracted)
            claim = rules.evolve(claim, recorded.event)
        return claim

    @staticmethod
    def _conflict_detail(stream: _Stream, event: DomainEvent, conflict: DefinitionConflict) -> str:
        # Name the place the first definition came from, so an editor can see both sides.
        ident = _ident_of(event)
        earlier = next(
            (r for r in stream.events if _ident_of(r.event) == ident and type(r.event) is type(event)),
            None,
        )
        if earlier is None:
            return conflict.message
        where = earlier.metadata.origin or "an earlier request"
        if earlier.metadata.import_id:
            where = f"{where} (import {earlier.metadata.import_id})"
        return f"{conflict.message}; first recorded at position {earlier.position} from {where}"

    async def finish(self) -> list[RecordedEvent]:
        """Update the views with everything appended; call once, before the transaction commits."""
        await views.project(self.conn, self.appended)
        return self.appended
