"""What a command or a query can refuse, beside the domain's rules: named so any caller can report it."""

from __future__ import annotations


class NotFound(Exception):
    """A subject, claim or other resource that was never recorded."""

    def __init__(self, kind: str, ident: str, *, when: str | None = None) -> None:
        super().__init__(
            f"no {kind} {ident!r} had been recorded {when}"
            if when
            else f"no {kind} {ident!r} has been recorded"
        )
        self.kind = kind
        self.ident = ident


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before for a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request; "
            "use a new key for a new request"
        )
