"""The write path: check each proposed event against the rules, append it, and update the views.

A ``Recorder`` lives inside one write transaction, so a batch (an import, a request) is all or nothing.
It reads each stream it touches as one record (``store.streams``: the version and folded state, checked
against the log), asks the domain's ``decide_*`` rules what to append, appends with the version it read as the
expected version, and writes the streams' new records with the events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.app.errors import PreconditionFailed, Rejected
from timeline.domain import rules
from timeline.domain.claims import (
    Amendment,
    Claim,
    ClaimEvent,
    Registration,
    entry_id,
    is_claim_event,
    registration_id,
)
from timeline.domain.errors import DefinitionConflict, DomainError, UnknownReference
from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    DenialWithdrawn,
    DomainEvent,
    EvidenceAttached,
    RecordCorrected,
    StatementMade,
)
from timeline.domain.streams import claim_stream, named_fields, references, stream_of
from timeline.domain.streams import parse as parse_stream
from timeline.domain.streams import stream_id as stream_named
from timeline.domain.values import check_fields, check_not_after, valid_from
from timeline.store import driver, eventlog, streams, views
from timeline.store.eventlog import Metadata, RecordedEvent
from timeline.store.readahead import ReadAhead


@dataclass
class _Stream:
    """A stream as this transaction sees it: its state when read, then after each event appended here."""

    states: list[streams.StreamState]
    # The version of the stream's record in the database (0: none).
    recorded: int = 0
    appended: list[RecordedEvent] = field(default_factory=list)

    @property
    def state(self) -> streams.StreamState:
        return self.states[-1]

    @property
    def version(self) -> int:
        return self.states[-1].version


# The rule that decides each kind of claim event.
_DECIDE_CLAIM: dict[type, Callable[[Claim | None, Any], list[DomainEvent]]] = {
    ClaimMade: rules.decide_make,
    ClaimRevised: rules.decide_revise,
    ClaimDenied: rules.decide_deny,
    ClaimConfirmed: rules.decide_confirm,
    EvidenceAttached: rules.decide_attach,
    ClaimRetracted: rules.decide_retract,
    RecordCorrected: rules.decide_correct,
    DenialWithdrawn: rules.decide_withdraw_denial,
}


def _ident_of(event: DomainEvent) -> str:
    if isinstance(event, ClaimEvent):
        return entry_id(event)
    if isinstance(event, StatementMade):
        return event.statement_id
    return registration_id(event)


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
        future_slack: dt.timedelta | None = None,
    ) -> None:
        self.conn = conn
        # Names the input (a fixture file, a request) in each event's metadata origin.
        self.label = label
        self.recorded_at = dt.datetime.now(dt.UTC)
        # Sources cannot have said something after today; the slack absorbs time zones and late editing.
        self.latest_date = (self.recorded_at + future_slack).date() if future_slack is not None else None
        self._base = Metadata(
            recorded_by=recorded_by,
            import_id=import_id,
            request_id=request_id,
            idempotency_key=idempotency_key,
        )
        self._last_base: Metadata | None = None
        self._last_metadata: Metadata | None = None
        self._streams: dict[str, _Stream] = {}
        self._batch: eventlog.Batch | None = None
        # The log's head link, read with the first streams (under the write lock it cannot move).
        self._head: tuple[int, str] | None = None
        # Read with the head: the row version of the views' checkpoint (see statements.APPEND_BODY).
        self._views_seen: int | None = None
        # Whether referenced streams exist; a stream recorded to here is known from ``_streams`` instead.
        self._exists: dict[str, bool] = {}
        # Claim rows for the views, read with the streams (one query fewer at ``finish``).
        self._ahead = ReadAhead()
        self.appended: list[RecordedEvent] = []
        self.unchanged = 0

    def act_as(
        self,
        *,
        recorded_by: str,
        label: str,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Record what follows on behalf of another request (group commit shares one Recorder)."""
        self.label = label
        self._base = Metadata(recorded_by=recorded_by, request_id=request_id, idempotency_key=idempotency_key)

    def mark(self) -> int:
        """A point to rewind to if what follows fails."""
        return len(self.appended)

    def rewind(self, mark: int) -> None:
        """Forget everything recorded since ``mark`` (nothing of it reached the database yet)."""
        dropped = self.appended[mark:]
        if not dropped:
            return
        del self.appended[mark:]
        for recorded in reversed(dropped):
            stream = self._streams[recorded.stream_id]
            stream.appended.pop()
            stream.states.pop()
        assert self._batch is not None
        del self._batch.rows[len(self._batch.rows) - len(dropped) :]
        self._batch.head = dropped[0].position - 1
        self._batch.head_hash = dropped[0].prev_hash

    async def _load(
        self, stream_ids: Iterable[str], probe: Iterable[str] = (), proposed: Iterable[DomainEvent] = ()
    ) -> None:
        """Read the streams not read yet, whether the ``probe`` streams exist, and (the first time) the
        head link, all in one query; with them the claim rows the views will want for the claims read and
        for the estimate keys the ``proposed`` events name."""
        missing = {s for s in stream_ids if s not in self._streams}
        unknown = {s for s in probe if s not in self._streams and s not in self._exists} - missing
        if not missing and not unknown:
            return
        head = self._head is None and self._batch is None
        claim_ids = [ident for kind, ident in map(parse_stream, missing) if kind == "claim"]
        keys = {
            (e.subject_id, e.metric, e.source_id)
            for e in proposed
            if isinstance(e, ClaimMade) and e.metric is not None
        }
        reading = await eventlog.read_for_write(
            self.conn,
            missing,
            probe=unknown,
            head=head,
            record_format=streams.FORMAT,
            claim_ids=claim_ids,
            keys=keys,
        )
        self._ahead.add(claim_ids, keys, reading.claims)
        for stream_id, later in reading.streams.items():
            record = reading.records.get(stream_id)
            state = streams.decode(record[1]) if record is not None else streams.EMPTY
            # The log's events past the record (none, unless something appended without one) go on top.
            for recorded in later:
                state = streams.evolve(state, recorded.event)
                assert state.version == recorded.stream_version, (stream_id, recorded.stream_version)
            self._streams[stream_id] = _Stream([state], record[0] if record is not None else 0)
        self._exists.update((s, s in reading.existing) for s in unknown)
        if head:
            self._head = reading.head
            self._views_seen = reading.views_seen

    async def _stream(self, stream_id: str) -> _Stream:
        await self._load([stream_id])
        return self._streams[stream_id]

    async def preload(
        self,
        stream_ids: Iterable[str],
        *,
        probe: Iterable[str] = (),
        proposed: Iterable[DomainEvent] = (),
    ) -> None:
        """Read many streams, and whether the ``probe`` streams exist, in one query ahead of recording (an
        import, or a batch of writes, knows what it will touch; ``proposed``, the events it will record, if
        known, lets the views' rows come in the same query)."""
        await self._load(stream_ids, probe, proposed)

    async def version(self, stream_id: str) -> int:
        """The stream's version as this transaction sees it."""
        return (await self._stream(stream_id)).version

    async def claim(self, claim_id: str) -> Claim | None:
        """A claim's state as this transaction sees it."""
        return (await self._stream(claim_stream(claim_id))).state.claim

    async def first_registration(self, stream_id: str) -> Registration | None:
        """The definition a subject, source or document was first registered with (None if it was not)."""
        return (await self._stream(stream_id)).state.first

    def _known_existence(self, stream_ids: set[str]) -> bool:
        """Note which of these streams exist as far as this transaction knows; False if some are unknown."""
        known = True
        for stream_id in stream_ids:
            if stream_id in self._streams:
                self._exists[stream_id] = self._streams[stream_id].version > 0
            elif stream_id not in self._exists:
                known = False
        return known

    async def record_all(
        self, events: Sequence[DomainEvent], *, origin: str, named: Sequence[set[str]] | None = None
    ) -> list[RecordedEvent]:
        """Record several events, reading every stream they touch in a few queries first (``named``: as
        ``record`` takes it, one set an event)."""
        named = [references(e) for e in events] if named is None else named
        # The streams they name but do not append to only need to exist: probed, not read and decoded whole.
        own = {stream_of(e) for e in events}
        await self.preload(own, probe=set().union(*named) - own, proposed=events)
        recorded = []
        for event, names in zip(events, named, strict=True):
            recorded.extend(await self._record(event, names, origin=origin))
        return recorded

    async def record(
        self,
        event: DomainEvent,
        *,
        origin: str,
        expected_version: int | None = None,
        named: set[str] | None = None,
    ) -> list[RecordedEvent]:
        """Check ``event`` against the rules and append it (or nothing, if it is already recorded).

        With ``expected_version`` (a client's If-Match), the stream must still be at that version.
        ``named``, when the caller has worked it out already, must be ``references(event)``: it is trusted.
        """
        names = references(event) if named is None else named
        return await self._record(event, names, origin=origin, expected_version=expected_version)

    async def _record(
        self, event: DomainEvent, named: set[str], *, origin: str, expected_version: int | None = None
    ) -> list[RecordedEvent]:
        """``record``, given the streams ``event`` names."""
        stream_id = stream_of(event)
        # The stream and whether the streams it names exist, in one round trip.
        known = self._streams
        if stream_id not in known or any(n not in known and n not in self._exists for n in named):
            await self._load([stream_id], probe=named)
        stream = known[stream_id]
        if expected_version is not None and expected_version != stream.version:
            raise PreconditionFailed(stream_id, expected_version, stream.version)
        try:
            check_fields(event)
            if self.latest_date is not None:
                check_not_after(event, self.latest_date)
            await self._check_references(event, named)
            decided = self._decide(stream, event)
        except DefinitionConflict as conflict:
            detail = await self._conflict_detail(stream, stream_id, event, conflict)
            raise Rejected(origin, conflict, detail=detail) from None
        except DomainError as error:
            raise Rejected(origin, error) from None
        if not decided:
            self.unchanged += 1
            return []
        metadata = self._metadata(origin)
        if self._batch is None:
            if self._head is None:
                self._batch = await eventlog.Batch.start(self.conn, self.recorded_at)
            else:
                self._batch = eventlog.Batch(*self._head, self.recorded_at)
        recorded = []
        for e in decided:
            recorded.append(self._batch.append(stream_id, stream.version + 1, e, valid_from(e), metadata))
            stream.states.append(streams.evolve(stream.state, e))
        stream.appended.extend(recorded)
        self.appended.extend(recorded)
        return recorded

    def _metadata(self, origin: str) -> Metadata:
        # One instance while the request and origin stay the same (a batch's events share it, and the log
        # encodes it once).
        text = f"{self.label} {origin}".strip()
        last = self._last_metadata
        if last is not None and last.origin == text and self._last_base is self._base:
            return last
        self._last_base = self._base
        self._last_metadata = Metadata(
            recorded_by=self._base.recorded_by,
            origin=text,
            import_id=self._base.import_id,
            request_id=self._base.request_id,
            idempotency_key=self._base.idempotency_key,
        )
        return self._last_metadata

    async def _check_references(self, event: DomainEvent, named: set[str]) -> None:
        # Checked in memory where it can be (a batch's streams are read with it): an await per event costs.
        if not self._known_existence(named):
            await self._load((), probe=named)
        exists = self._exists
        # A claim event names only other streams, each of them in ``named``: when all of them exist, there
        # is no field to point at (building the fields' list cost more than the rest of this check).
        if isinstance(event, ClaimEvent) and all(exists.get(s, False) for s in named):
            return
        for kind, ident, where in named_fields(event):
            if not self._exists.get(stream_named(kind, ident), False):
                raise UnknownReference(kind, ident, field=where)

    def _decide(self, stream: _Stream, event: DomainEvent) -> list[DomainEvent]:
        if is_claim_event(event):  # most events: one lookup by type (see ``is_claim_event``)
            return _DECIDE_CLAIM[type(event)](stream.state.claim, event)
        if isinstance(event, Registration):
            return rules.decide_registration(stream.state.first, event)
        if isinstance(event, Amendment):
            return rules.decide_amend(stream.state.current, event)
        if isinstance(event, StatementMade):
            return rules.decide_statement(stream.state.current, stream.state.statements, event)
        raise AssertionError(event)  # pragma: no cover

    async def _conflict_detail(
        self, stream: _Stream, stream_id: str, event: DomainEvent, conflict: DefinitionConflict
    ) -> str:
        # Name the place the first definition came from, so an editor can see both sides. The record keeps
        # no metadata: a refusal reads the stream's events from the log (and those appended here).
        ident = _ident_of(event)
        logged = await eventlog.read_stream(self.conn, stream_id)
        history = [r for r in logged if r.stream_version <= stream.states[0].version] + stream.appended
        earlier = next(
            (r for r in history if _ident_of(r.event) == ident and type(r.event) is type(event)),
            None,
        )
        if earlier is None:
            return conflict.message
        where = earlier.metadata.origin or "an earlier request"
        if earlier.metadata.import_id:
            where = f"{where} (import {earlier.metadata.import_id})"
        return f"{conflict.message}; first recorded at position {earlier.position} from {where}"

    async def finish(self, answers: Sequence[driver.Row] = ()) -> list[RecordedEvent]:
        """Insert everything recorded, update the views and store the idempotency keys' ``answers``
        (``idempotency.Pending.take``) with them; call once, before the transaction commits."""
        changes = driver.Changes()
        changes.views_seen = self._views_seen
        changes.answers = list(answers)
        if self._batch is not None:
            changes.events = self._batch.take()
        changes.streams = [
            (stream_id, stream.version, streams.FORMAT, streams.encode(stream.state))
            for stream_id, stream in sorted(self._streams.items())
            if stream.appended and stream.version - stream.recorded >= streams.EVERY
        ]
        # The events and the views' rows they change go in together (one statement on PostgreSQL).
        ahead, self._ahead = self._ahead, ReadAhead()  # the claims rows written now outdate it
        await views.project(
            self.conn, self.appended, before=self._claims_before(), changes=changes, ahead=ahead
        )
        return self.appended

    def _claims_before(self) -> dict[str, Claim | None]:
        """The state of each claim this transaction appended to, as it was before: lets the views find
        every row they need in one query (they check it against the rows they read)."""
        first: dict[str, RecordedEvent] = {}
        for recorded in self.appended:
            if is_claim_event(recorded.event):
                first.setdefault(recorded.event.claim_id, recorded)
        # A stream's appended events are its last ones: the state before is the one it was read in.
        return {claim_id: self._streams[r.stream_id].states[0].claim for claim_id, r in first.items()}


__all__ = ["Amendment", "Recorder"]
