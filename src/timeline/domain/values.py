"""Checks and conversions for the value types inside events (dates with precision, quantities)."""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata

import msgspec

from timeline.domain.errors import InvalidValue
from timeline.domain.events import (
    DocumentAmended,
    DocumentRegistered,
    DomainEvent,
    Occurred,
    Precision,
    Quantity,
    RecordCorrected,
    StatedDate,
)

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


_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_WRITTEN = {"day": "YYYY-MM-DD", "week": "YYYY-Www", "month": "YYYY-MM", "year": "YYYY"}


def parse_occurred_date(text: str, *, field: str) -> StatedDate:
    """Read a date of when something happened: a stated date's forms or an ISO week ("2024-W42")."""
    if _WEEK.fullmatch(text):
        stated = StatedDate(date=text, precision="week")
        check_period(stated, field=field)
        return stated
    try:
        return parse_stated_date(text, field=field)
    except InvalidValue:
        raise InvalidValue(
            f"expected a date as YYYY-MM-DD, YYYY-Www (an ISO week), YYYY-MM or YYYY, got {text!r}",
            field=field,
        ) from None


def check_stated_date(stated: StatedDate, *, field: str = "stated_on") -> None:
    """Raise unless the date is a day, month or year written to exactly its precision: a week says when a
    thing happened (``occurred``), never when a source spoke, published or expects a figure."""
    if stated.precision == "week":
        raise InvalidValue(
            f"a week ({stated.date!r}) is only for when a thing happened ('occurred'); {field} takes "
            "a day, a month or a year: YYYY-MM-DD, YYYY-MM or YYYY",
            field=field,
        )
    check_period(stated, field=field)


def check_period(stated: StatedDate, *, field: str) -> None:
    """Raise unless the date is a real day, ISO week, month or year written to exactly its precision."""
    expected = {"day": 10, "week": 8, "month": 7, "year": 4}[stated.precision]
    if len(stated.date) != expected or (stated.precision == "week") != bool(_WEEK.fullmatch(stated.date)):
        raise InvalidValue(
            f"a {stated.precision}-precision date is written as {_WRITTEN[stated.precision]}, "
            f"got {stated.date!r}",
            field=field,
        )
    try:
        period_start(stated)
    except ValueError as exc:
        raise InvalidValue(f"{stated.date!r} is not a calendar date: {exc}", field=field) from None


def check_occurred(occurred: Occurred, *, field: str = "occurred") -> None:
    """Raise unless both ends are real dates and the range does not end before it starts."""
    check_period(occurred.start, field=f"{field}.start")
    if occurred.end is not None:
        check_period(occurred.end, field=f"{field}.end")
        if period_end(occurred.end) < period_start(occurred.start):
            raise InvalidValue(
                f"the range ends ({occurred.end.date}) before it starts ({occurred.start.date})",
                field=f"{field}.end",
            )
    if occurred.wording is not None:
        check_visible(occurred.wording, field=f"{field}.wording")


# A write asks for each event's date five or six times (the rules, valid time, ranking, the timeline).
@functools.lru_cache(maxsize=4096)
def period_start(stated: StatedDate) -> dt.date:
    """The first day of the period the date names (its position on a timeline)."""
    if stated.precision == "week":
        found = _WEEK.fullmatch(stated.date)
        if found is None:
            raise ValueError(f"{stated.date!r} is not an ISO week")
        return dt.date.fromisocalendar(int(found[1]), int(found[2]), 1)
    padded = {"day": "", "month": "-01", "year": "-01-01"}[stated.precision]
    return dt.date.fromisoformat(stated.date + padded)


def period_end(stated: StatedDate) -> dt.date:
    """The last day of the period the date names."""
    start = period_start(stated)
    match stated.precision:
        case "day":
            return start
        case "week":
            return start + dt.timedelta(days=6)
        case "month":
            following = dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
            return following - dt.timedelta(days=1)
        case _:
            return dt.date(start.year, 12, 31)


def check_quantity(quantity: Quantity, *, field: str = "quantity") -> None:
    """Raise unless the quantity's fields fit its comparator (and bounds are the right way round)."""
    wants: dict[str, tuple[str, ...]] = {
        "exactly": ("value",),
        "about": ("value",),
        "at_least": ("lower",),
        "more_than": ("lower",),
        "up_to": ("upper",),
        "less_than": ("upper",),
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
    if not quantity.unit.strip() or len(quantity.unit) > UNIT_MAX:
        raise InvalidValue(
            f"expected a unit such as 'soldiers' (at most {UNIT_MAX} characters), got {quantity.unit!r}",
            field=f"{field}.unit",
        )
    if quantity.horizon is not None:
        check_stated_date(quantity.horizon, field=f"{field}.horizon")


# Input rules, stated once: the HTTP bodies, the fixtures and the command line all check against these.
IDENT_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
DATE_PATTERN = r"^\d{4}(-\d{2}(-\d{2})?)?$"
IDENT_WORDS = "an id: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
DATE_WORDS = "a date as YYYY-MM-DD, YYYY-MM or YYYY"
OCCURRED_PATTERN = r"^\d{4}(-\d{2}(-\d{2})?|-W\d{2})?$"
OCCURRED_WORDS = "a date as YYYY-MM-DD, YYYY-Www (an ISO week), YYYY-MM or YYYY"
IDENT_MAX = 120
NAME_MAX = 500
TEXT_MAX = 10_000
UNIT_MAX = 100
URL_MAX = 2000
COUNTRY_MAX = 10
ALIASES_MAX = 50
DOCUMENTS_MAX = 100
IDEMPOTENCY_KEY_MAX = 200
# Positions are BIGINT on PostgreSQL (a signed 64-bit integer).
POSITION_MAX = 2**63 - 1
_IDENT = re.compile(IDENT_PATTERN.rstrip("$").lstrip("^"))
_POSITION = re.compile(r"[0-9]+")
# Format and separator characters (zero-width spaces, joiners, BOMs) are not visible text.
_INVISIBLE = {"Cf", "Zs", "Zl", "Zp", "Cc"}


def parse_position(text: str, *, field: str) -> int:
    """Read a log position in ASCII digits (not a superscript '2'), at most ``POSITION_MAX``."""
    if not _POSITION.fullmatch(text):
        raise InvalidValue(f"expected a log position (digits 0-9), got {text!r}", field=field)
    position = int(text)
    if position > POSITION_MAX:
        raise InvalidValue(f"a log position is at most {POSITION_MAX}, got {text}", field=field)
    return position


def check_ident(text: str, *, field: str) -> None:
    """Raise unless the whole text is an id: lowercase letters, digits, '.', '_', '-' (no final newline)."""
    if len(text) > IDENT_MAX or not _IDENT.fullmatch(text):
        raise InvalidValue(
            f"expected an id of at most {IDENT_MAX} lowercase letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, got {text!r}",
            field=field,
        )


def check_visible(text: str, *, field: str) -> None:
    """Raise unless the text has at least one visible character (zero-width spaces alone are not text)."""
    if not any(unicodedata.category(char) not in _INVISIBLE for char in text):
        name = field.rpartition(".")[2].partition("[")[0]
        got = f"an empty {name}" if not text.strip() else f"{text!r}, which has no visible character"
        raise InvalidValue(f"expected visible text, got {got}", field=field)


def check_calendar_day(text: str, *, field: str) -> dt.date:
    """Read a calendar date written YYYY-MM-DD."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise InvalidValue(f"expected a calendar date as YYYY-MM-DD, got {text!r}", field=field)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"expected a calendar date as YYYY-MM-DD, got {text!r}", field=field) from None


_ID_FIELDS = {"denied_by", "confirmed_by", "produced_by", "metric"}
_VISIBLE = {"statement", "reason", "description", "name", "title", "author", "publisher", "wording"}
_LIMITS = {
    **dict.fromkeys(("statement", "reason", "description"), TEXT_MAX),
    **dict.fromkeys(("name", "title", "author", "publisher", "wording"), NAME_MAX),
    "url": URL_MAX,
    "country": COUNTRY_MAX,
}
# A description may be left empty; every other text must say something visible.
_MAY_BE_EMPTY = {"description"}


def check_fields(event: msgspec.Struct, *, prefix: str = "") -> None:
    """Raise unless every id, text, name, alias, unit and URL of a proposed event keeps the input rules."""
    # Every event of a write passes here: the common cases (an id, a text, a list of ids) are checked
    # inline, and a field's path is built only for a failure.
    for name, kind in _plan(type(event)):
        value = getattr(event, name)
        if value is None or type(value) is StatedDate:
            continue
        if kind == "id" and type(value) is str:
            if len(value) > IDENT_MAX or not _IDENT.fullmatch(value):
                check_ident(value, field=f"{prefix}{name}")
        elif kind == "text" and type(value) is str:
            if len(value) > _LIMITS[name]:
                _check_length(value, _LIMITS[name], field=f"{prefix}{name}")
            # Printable ASCII first: visible at once (the common case), no Unicode lookup.
            if name in _VISIBLE and not ("!" <= value[:1] <= "~") and (value or name not in _MAY_BE_EMPTY):
                check_visible(value, field=f"{prefix}{name}")
        elif (kind != "ids" or type(value) is not tuple or not _all_idents(value)) and (
            kind != "other" or isinstance(value, msgspec.Struct)
        ):
            _check_field(name, value, f"{prefix}{name}")


def _all_idents(values: tuple[object, ...]) -> bool:
    for ident in values:
        if type(ident) is not str or len(ident) > IDENT_MAX or not _IDENT.fullmatch(ident):
            return False
    return True


_PLANS: dict[type, tuple[tuple[str, str], ...]] = {}


def _plan(kind: type[msgspec.Struct]) -> tuple[tuple[str, str], ...]:
    """Each field of a Struct type with the check its name calls for (worked out once per type)."""
    plan = _PLANS.get(kind)
    if plan is None:
        plan = _PLANS[kind] = tuple((name, _kind_of(name)) for name in kind.__struct_fields__)
    return plan


def _kind_of(name: str) -> str:
    if name.endswith("_id") or name in _ID_FIELDS:
        return "id"
    if name.endswith("_ids"):
        return "ids"
    if name == "aliases":
        return "checked"
    if name in _LIMITS:
        return "text"
    return "other"


def _check_field(name: str, value: object, field: str) -> None:
    if isinstance(value, Quantity):
        _check_length(value.unit, UNIT_MAX, field=f"{field}.unit")
    elif isinstance(value, msgspec.Struct):
        if not isinstance(value, StatedDate):
            check_fields(value, prefix=f"{field}.")
    elif name.endswith("_id") or name in _ID_FIELDS:
        check_ident(str(value), field=field)
    elif name.endswith("_ids") and isinstance(value, tuple | list):
        for i, ident in enumerate(value):
            # The field's path is built only for a failure: most events name a few documents each.
            if type(ident) is not str or len(ident) > IDENT_MAX or not _IDENT.fullmatch(ident):
                check_ident(ident, field=f"{field}[{i}]")
    elif name == "aliases" and isinstance(value, tuple | list):
        if len(value) > ALIASES_MAX:
            raise InvalidValue(f"at most {ALIASES_MAX} aliases, got {len(value)}", field=field)
        for i, alias in enumerate(value):
            _check_length(alias, NAME_MAX, field=f"{field}[{i}]")
            check_visible(alias, field=f"{field}[{i}]")
    elif isinstance(value, str) and name in _LIMITS:
        _check_length(value, _LIMITS[name], field=field)
        if name in _VISIBLE and (value or name not in _MAY_BE_EMPTY):
            check_visible(value, field=field)


def _check_length(text: str, limit: int, *, field: str) -> None:
    if len(text) > limit:
        raise InvalidValue(f"at most {limit} characters, got {len(text)}", field=field)


def in_words(message: str) -> str:
    """A decoder's message with the id and date patterns said in words ("expected a date as YYYY-MM-DD")."""
    for pattern, words in (
        (IDENT_PATTERN, IDENT_WORDS),
        (DATE_PATTERN, DATE_WORDS),
        (OCCURRED_PATTERN, OCCURRED_WORDS),
    ):
        message = message.replace(f"Expected `str` matching regex {pattern!r}", f"expected {words}")
    return message


def stated_date(event: DomainEvent) -> StatedDate | None:
    """When the source said it (or, for a document, when it was published), if the event says."""
    stated = getattr(event, "stated_on", None) or getattr(event, "published_on", None)
    return stated if isinstance(stated, StatedDate) else None


def valid_from(event: DomainEvent) -> dt.date | None:
    """The date an event is about (its valid time): the start of its stated date's period, if it has one."""
    stated = stated_date(event)
    return period_start(stated) if stated is not None else None


def check_not_after(event: DomainEvent, latest: dt.date) -> None:
    """Refuse an event whose stated (or corrected, or published) date starts after ``latest``."""
    where = "published_on" if isinstance(event, DocumentRegistered | DocumentAmended) else "stated_on"
    dates = [(where, stated_date(event))]
    if isinstance(event, RecordCorrected):
        dates = [("changes.stated_on", event.changes.stated_on)]
    for name, stated in dates:
        if stated is None:
            continue
        try:
            start = period_start(stated)
        except ValueError:
            continue  # malformed dates are reported by the rules, with their reason
        if start > latest:
            raise InvalidValue(
                f"{stated.date} is in the future (latest accepted: {latest.isoformat()})", field=name
            )
