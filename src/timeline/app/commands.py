"""Commands: record one proposed event (a claim, a revision, a denial, a confirmation, a retraction,
evidence, a correction, a subject, source or document and their amendments) as one unit of work.

A command runs in a write transaction shared with the writes that arrive together (group commit), with
its caller's metadata on every event it appends, its expected version checked, and its Idempotency-Key
honoured: the first answer to a key is kept in the same transaction as the events, so a retry gets that
answer back and records nothing, and a key reused for another request is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from timeline.app.errors import IdempotencyKeyReused, Rejected
from timeline.domain.errors import DomainError
from timeline.domain.events import DomainEvent
from timeline.domain.streams import references, stream_of
from timeline.groupcommit import Committer
from timeline.service import Recorder
from timeline.store import idempotency
from timeline.store.eventlog import RecordedEvent
from timeline.store.idempotency import StoredResponse


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks for a change and through what, as recorded in each event's metadata."""

    recorded_by: str
    # Names the input in each event's origin, e.g. "POST /claims".
    label: str
    request_id: str
    idempotency_key: str | None = None
    # What exactly was asked (a digest of the request), to tell a retry from a reused key.
    fingerprint: str = ""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a command did: the stream it wrote to, the stream's version now, and the events appended
    (none when the very same thing was recorded before)."""

    stream_id: str
    version: int
    appended: list[RecordedEvent]


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's answer to a command (kept for its Idempotency-Key): a status and an encoded body.
    ``outcome`` is None when the answer is the one kept from the first request with the same key."""

    status_code: int
    body: bytes
    outcome: Outcome | None


# How a caller answers an outcome (say, 201 and a JSON body); run inside the unit of work, so the answer
# to an Idempotency-Key is kept with the events it describes.
Answer = Callable[[Outcome], tuple[int, bytes]]


async def record(
    committer: Committer,
    propose: Callable[[], DomainEvent],
    caller: Caller,
    answer: Answer,
    *,
    expected_version: int | None = None,
) -> Reply:
    """Record the event ``propose`` makes, as ``caller``, if its stream is still at ``expected_version``.
    Raises ``Rejected`` (a rule), ``PreconditionFailed`` (the version) or ``IdempotencyKeyReused``."""
    try:
        event = propose()
    except DomainError as error:
        raise Rejected("", error) from None
    stream_id = stream_of(event)
    # Worked out once: the batch probes these streams, and the rules check them (``named=``).
    named = references(event)
    key = caller.idempotency_key

    async def unit(recorder: Recorder) -> Reply:
        conn = recorder.conn
        if key is not None:
            earlier = await idempotency.lookup(conn, caller.recorded_by, key)
            if earlier is not None:
                if earlier.request_hash != caller.fingerprint:
                    raise IdempotencyKeyReused(key)
                return Reply(status_code=earlier.status_code, body=earlier.body, outcome=None)
        recorder.act_as(
            recorded_by=caller.recorded_by,
            label=caller.label,
            request_id=caller.request_id,
            idempotency_key=key,
        )
        # Inserted and projected with the rest of its batch, before the batch commits.
        appended = await recorder.record(event, origin="", expected_version=expected_version, named=named)
        outcome = Outcome(stream_id=stream_id, version=await recorder.version(stream_id), appended=appended)
        status, body = answer(outcome)
        if key is not None:
            stored = StoredResponse(request_hash=caller.fingerprint, status_code=status, body=body)
            await idempotency.store(conn, caller.recorded_by, key, stored)
        return Reply(status_code=status, body=body, outcome=outcome)

    # Concurrent writes share one transaction and one commit (group commit); one that fails is undone alone.
    # Its Idempotency-Key is looked up with the batch's, in one query, and stored with theirs.
    return await committer.run(
        unit,
        reads=[stream_id],
        probes=named,
        proposed=[event],
        keys=[(caller.recorded_by, key)] if key is not None else (),
    )
