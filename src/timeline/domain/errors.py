"""Errors raised by domain rules. Each says what is wrong in words a person recording claims can act on."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule of the domain; nothing it asked for is recorded."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Where in the command the problem is, relative to it (e.g. "quantity.upper").
        self.field = field


class InvalidValue(DomainError):
    """A value is malformed or inconsistent (bounds the wrong way round, a date that is not a date)."""


class UnknownReference(DomainError):
    """A command refers to a subject, source, document or claim that was never recorded."""

    def __init__(self, kind: str, ident: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(hint or f"unknown {kind} {ident!r}: record it before referring to it", field=field)
        self.kind = kind
        self.ident = ident


class DefinitionConflict(DomainError):
    """An id is already recorded with a different definition (or different content for an entry)."""

    def __init__(self, kind: str, ident: str, differences: list[str]) -> None:
        super().__init__(f"{kind} {ident!r} is already recorded differently: {'; '.join(differences)}")
        self.kind = kind
        self.ident = ident
        self.differences = differences


class RuleViolation(DomainError):
    """The command is well formed but not allowed in the claim's current state."""
