"""Stream records: the state the rules read, one small row per stream, kept in the write transaction.

A record is a snapshot of one stream at a version. The writer reads it together with the stream's events
after that version and folds those on top, so a record that lags (the table starts empty after migration
0008; ``eventlog.append`` writes none) is caught up from the log, never trusted blindly. A write renews a
stream's record once ``EVERY`` events have gathered past it: a short stream (most claims) costs no record, a
long one is never folded from more than ``EVERY`` events. Optimistic concurrency stays with the log's unique
(stream, version) key.
"""

from __future__ import annotations

import msgspec

from timeline.domain import claims as rules
from timeline.domain.claims import Amendment, Claim, Registration
from timeline.domain.events import (
    DomainEvent,
    StatementMade,
)

# Bumped whenever the fold below (or the domain's ``evolve``) changes what a state holds: a record written in
# another format is ignored and its stream refolded from the log.
FORMAT = 1
# Events a stream gathers past its record before a write renews it: folding that many costs about what
# reading one record does, and a stream shorter than this (most claims) never writes one.
EVERY = 8


class StreamState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A stream folded to ``version``: a claim's state, or a registration's first and current definition."""

    version: int = 0
    claim: Claim | None = None
    first: Registration | None = None
    current: Registration | None = None
    # A subject's statements (in its stream), so the same one recorded again is recognised.
    statements: tuple[StatementMade, ...] = ()


EMPTY = StreamState()
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StreamState)


def evolve(state: StreamState, event: DomainEvent) -> StreamState:
    """The state after one more event of the stream."""
    version = state.version + 1
    if rules.is_claim_event(event):  # most events, told apart cheaply (see ``is_claim_event``)
        return StreamState(version=version, claim=rules.evolve(state.claim, event))
    if isinstance(event, Registration):
        return msgspec.structs.replace(state, version=version, first=state.first or event, current=event)
    if isinstance(event, StatementMade):
        return msgspec.structs.replace(state, version=version, statements=(*state.statements, event))
    if isinstance(event, Amendment):
        assert state.current is not None
        return msgspec.structs.replace(state, version=version, current=rules.amend(state.current, event))
    raise AssertionError(f"no stream fold for {type(event).__name__}")  # pragma: no cover


def encode(state: StreamState) -> str:
    """A record's ``state`` column."""
    return _encoder.encode(state).decode()


def decode(text: str) -> StreamState:
    """A record's ``state`` column back as a state."""
    return _decoder.decode(text)
