"""Dates a sentence gives, resolved against the article's publication date."""

from __future__ import annotations

import datetime as dt
import re

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]  # fmt: skip
_MONTH_ABBR = {name[:3]: i for i, name in enumerate(MONTHS, start=1)} | {"sept": 9}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|" \
         r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"  # fmt: skip
# "said Monday", "on Monday", "Monday's attack", "late Tuesday"; not "Monday Night Football".
_WEEKDAY = re.compile(
    r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b(?!\s+night\s+football)"
)
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?")
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})\s+{_MONTH}\b(?:,?\s+(\d{{4}}))?")
# "will meet on Tuesday", "until Friday": a day to come, not the day it was said.
_FUTURE = re.compile(r"\b(?:will|to|until|till|next|by|before)\b(?:\s+\w+)?\s+(?:on\s+)?$")
_IN_MONTH = re.compile(rf"\b(?:in|since|during|by|early|late|mid-?)\s+{_MONTH}(?:,?\s+(\d{{4}}))?\b")


def stated_on(sentence: str, published: dt.date) -> str | None:
    """A date the sentence gives (day, or month), resolved against the article's date; None if it gives none.

    A weekday (preferred: it is how reports date what was said) is the latest such day on or before
    publication, "on Monday" in a Monday article being that day; a day to come ("will meet on Tuesday") is
    none.
    A month without a year is the latest such month on or before publication."""
    lower = sentence.lower()
    found = _WEEKDAY.search(lower)
    if found and not _FUTURE.search(lower, max(0, found.start() - 24), found.start()):
        back = (published.weekday() - WEEKDAYS.index(found.group(1))) % 7
        if re.search(rf"\blast\s+{found.group(1)}\b", lower) and back == 0:
            back = 7
        return (published - dt.timedelta(days=back)).isoformat()
    found = _MONTH_DAY.search(lower)
    if found:
        return _day(_month(found.group(1)), int(found.group(2)), found.group(3), published)
    found = _DAY_MONTH.search(lower)
    if found:
        return _day(_month(found.group(2)), int(found.group(1)), found.group(3), published)
    if re.search(r"\byesterday\b", lower):
        return (published - dt.timedelta(days=1)).isoformat()
    if re.search(r"\btoday\b|\bearlier today\b|\bthis morning\b", lower):
        return published.isoformat()
    if re.search(r"\blast week\b", lower):
        return (published - dt.timedelta(days=7)).isoformat()[:7]
    found = _IN_MONTH.search(lower)
    if found:
        month = _month(found.group(1))
        year = int(found.group(2)) if found.group(2) else published.year - (month > published.month)
        return f"{year}-{month:02}"
    return None


def _month(name: str) -> int:
    name = name.rstrip(".")
    return MONTHS.index(name) + 1 if name in MONTHS else _MONTH_ABBR[name[:4] if name == "sept" else name[:3]]


def _day(month: int, day: int, year: str | None, published: dt.date) -> str | None:
    guess = int(year) if year else published.year - (month > published.month)
    try:
        return dt.date(guess, month, day).isoformat()
    except ValueError:
        return None
