"""What a command or a query can refuse, beside the domain's rules: named so any caller can report it."""

from __future__ import annotations

from timeline.domain.errors import DomainError


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


class Rejected(Exception):
    """A proposed event broke a rule. ``origin`` says which input it came from, ``field`` where in it."""

    def __init__(self, origin: str, error: DomainError, *, detail: str | None = None) -> None:
        self.origin = origin
        self.error = error
        self.field = error.field
        self.message = detail or error.message
        super().__init__(f"{self.place}: {self.message}" if self.place else self.message)

    @property
    def place(self) -> str:
        """The full path of the problem, e.g. ``events[3].quantity.value``."""
        if not self.origin:
            return self.field or ""
        return f"{self.origin}.{self.field}" if self.field else self.origin


class PreconditionFailed(Exception):
    """The caller wrote against a version of the stream (If-Match) that is no longer current."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{stream_id} is at version {actual}, the request was made against version {expected}; "
            "fetch it again, check the change still makes sense, and retry with the new ETag"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
