"""Sides: which sources speak as one, from the relations sources are registered with (``part_of``,
``speaks_for``), so a view can say that a claim was confirmed by part of the side that denied it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def same_side(a: str, b: str, relations: Mapping[str, Sequence[str]]) -> bool:
    """Whether two different sources are one side: one is part of (or speaks for) the other, or both are
    part of (or speak for) the same source. One step only: the relations of the two sources themselves."""
    if a == b:
        return False
    return bool({a, *relations.get(a, ())} & {b, *relations.get(b, ())})
