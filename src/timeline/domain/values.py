"""Checks and conversions for the value types inside events (dates with precision, quantities)."""

from __future__ import annotations

import datetime as dt
import re

from timeline.domain.errors import InvalidValue
from timeline.domain.events import Precision, Quantity, StatedDate

_DATE_FORMS: tuple[tuple[re.Pattern[str], Precision], ...] = (
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "day"),
    (re.compile(r"\d{4}-\d{2}"), "month"),
    (re.compile(r"\d{4}"), "year"),
)


def parse_stated_date(text: str, *, field: str = "stated_on") -> StatedDate:
    """Read "2024-10-21", "2024-10" or "2024" into a date whose precision is the form it was written in."""
    for pattern, precision in _DATE_FORMS:
        if pattern.fullmatch(text):
            stated = StatedDate(date=text, precision=precision)
            check_stated_date(stated, field=field)
            return stated
    raise InvalidValue(f"expected a date as YYYY-MM-DD, YYYY-MM or YYYY, got {text!r}", field=field)


def check_stated_date(stated: StatedDate, *, field: str = "stated_on") -> None:
    """Raise unless the date is a real calendar date written to exactly its precision."""
    expected = {"day": 10, "month": 7, "year": 4}[stated.precision]
    if len(stated.date) != expected:
        raise InvalidValue(
            f"a {stated.precision}-precision date is written as "
            f"{ {'day': 'YYYY-MM-DD', 'month': 'YYYY-MM', 'year': 'YYYY'}[stated.precision] }, "
            f"got {stated.date!r}",
            field=field,
        )
    try:
        period_start(stated)
    except ValueError as exc:
        raise InvalidValue(f"{stated.date!r} is not a calendar date: {exc}", field=field) from None


def period_start(stated: StatedDate) -> dt.date:
    """The first day of the period the date names (its position on a timeline)."""
    padded = {"day": "", "month": "-01", "year": "-01-01"}[stated.precision]
    return dt.date.fromisoformat(stated.date + padded)


def check_quantity(quantity: Quantity, *, field: str = "quantity") -> None:
    """Raise unless the quantity's fields fit its comparator (and bounds are the right way round)."""
    wants: dict[str, tuple[str, ...]] = {
        "exactly": ("value",),
        "about": ("value",),
        "at_least": ("lower",),
        "up_to": ("upper",),
        "between": ("lower", "upper"),
    }
    needed = wants[quantity.comparator]
    for name in needed:
        if getattr(quantity, name) is None:
            raise InvalidValue(
                f"comparator {quantity.comparator!r} needs {name!r}, got nothing",
                field=f"{field}.{name}",
            )
    for name in ("value", "lower", "upper"):
        if name not in needed and getattr(quantity, name) is not None:
            raise InvalidValue(
                f"comparator {quantity.comparator!r} takes only {', '.join(needed)}; got {name!r} too",
                field=f"{field}.{name}",
            )
    for name in ("value", "lower", "upper"):
        figure = getattr(quantity, name)
        if figure is not None and figure < 0:
            raise InvalidValue(f"a figure cannot be negative, got {figure}", field=f"{field}.{name}")
    if quantity.comparator == "between":
        assert quantity.lower is not None
        assert quantity.upper is not None
        if quantity.lower > quantity.upper:
            raise InvalidValue(
                f"lower bound {quantity.lower} is above upper bound {quantity.upper}",
                field=f"{field}.lower",
            )
    if not quantity.unit.strip():
        raise InvalidValue("expected a unit such as 'soldiers', got an empty string", field=f"{field}.unit")
