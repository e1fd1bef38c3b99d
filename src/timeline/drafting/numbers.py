"""Figures in a sentence: numbers in digits or words, their comparator ("up to", "more than", "under",
"nearly", "between ... and") and their unit. Every figure of a sentence, not only the first; years,
dates, times, ages and labels ("Category 3", "COVID-19") are not figures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from timeline.drafting.text import wordset

ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
          "trillion": 1_000_000_000_000}  # fmt: skip
SHORT_SCALES = {"k": 1_000, "m": 1_000_000, "mn": 1_000_000, "bn": 1_000_000_000, "b": 1_000_000_000}
VAGUE = {
    "dozens": ("about", 12),
    "hundreds": ("at_least", 100),
    "thousands": ("at_least", 1_000),
    "tens of thousands": ("at_least", 10_000),
    "hundreds of thousands": ("at_least", 100_000),
    "millions": ("at_least", 1_000_000),
}
_VAGUE = re.compile(
    r"\b(tens\s+of\s+thousands|hundreds\s+of\s+thousands|dozens|hundreds|thousands|millions)"
    r" of ([a-z][\w-]*)",
    re.I,
)
_WORD = "|".join([*ONES, *TENS, *SCALES, "dozen"])
_DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"(?:\s+(?:hundred|thousand|million|billion|trillion)\b|(?:k|m|mn|bn|b)\b(?![.\w]))?"
NUMBER = re.compile(
    rf"(?<![\w.,$-])(\$)?(?:({_DIGITS}){_SCALE}|((?:a\s+)?(?:{_WORD})(?:(?:\s+and\s+|[\s-]+)(?:{_WORD}))*)\b)"
    rf"(?![\w-]*-(?:year|member|level|seat|story|storey|day|week|month|hour|point|man|strong)\b)",
    re.I,
)
# Comparator phrases, checked right before the number (the nearest one wins).
_BEFORE = [
    ("up_to", r"up to|as many as|as much as|at most|no more than|could (?:reach|rise to|hit|top|climb to)|"
              r"may (?:reach|rise to)|might reach|a maximum of"),
    ("at_least", r"at least|no fewer than|no less than|a minimum of"),
    # "more than 800" says above 800 and "under 50" below it: strict bounds, not "at least"/"up to".
    ("more_than", r"more than|over|upwards of|above|in excess of|surpass(?:ing|ed)|exceed(?:ing|ed)|"
                  r"passed|topped|rose above|risen above|just over"),
    ("less_than", r"less than|fewer than|under|below"),
    ("about", r"about|around|approximately|nearly|roughly|some|almost|an estimated|estimated at|close to|"
              r"just under|an average of|on average|about an|up to about"),
]  # fmt: skip
_COMPARATOR = re.compile(
    r"(?:" + "|".join(f"(?P<{name}>\\b(?:{words}))" for name, words in _BEFORE) + r")\s+(?:\$\s*)?$", re.I
)
_RANGE = re.compile(r"(?:\s*(?:%|percent|per cent))?\s*(?:and|to|-|\u2013)\s*(\$)?", re.I)
# Spans of time are not figures when they say when ("over the past two weeks", "for five years").
_DURATION = re.compile(r"\b(?:past|last|next|for|within|over|in|after|ago|coming)\s+(?:the\s+)?$", re.I)
_TIME_UNITS = frozenset({"seconds", "minutes", "hours", "days", "weeks", "months", "years", "decades", "day",
                         "week", "month", "year", "decade", "hour", "minute"})  # fmt: skip
_NOT_BEFORE = re.compile(
    r"(?:\b(?:magnitude|measuring|category|no|number|flight|level|phase|article|resolution|route|highway|interstate|"
    r"covid|g|tier|page|chapter|section|room|grade|class|step|stage)|"
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?)\s*[-.]?\s*$",
    re.I,
)
_NOT_AFTER = re.compile(
    r"^(?:st|nd|rd|th)\b|^\s*(?:a\.m|p\.m|am\b|pm\b|gmt|utc|o'clock)|^:\d|^\s*(?:january|february|march|april|"
    r"may|june|july|august|september|october|november|december)\b|^-(?:\w)",
    re.I,
)
_UNIT_SKIP = wordset(
    "of the a an new more additional other others further suspected mostly confirmed reported registered "
    "total daily single-day"
)
_MODALS = wordset("could would will may might can should must did does")
_NOT_UNIT = wordset(
    "was were is are be been has have had and or to in on at from by for with as that this it its but who "
    "which than per cent next last this ago later earlier since so far yet"
)


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure: where it is in the sentence, the quantity as a fixture writes it, and its unit."""

    start: int
    end: int
    quantity: dict[str, Any]
    unit: str
    vague: bool = False


def number(text: str) -> float | int:
    """A number in digits or words ("1,500", "ten thousand", "twenty-five thousand", "1.5 million")."""
    words = re.findall(r"[a-z]+|[\d.,]+", text.lower())
    total = 0.0
    current = 0.0
    seen = False
    for word in words:
        if word in ("a", "and"):
            current = current or (1 if word == "a" else 0)
            continue
        if word[0].isdigit():
            current += float(word.replace(",", ""))
        elif word in ONES:
            current += ONES[word]
        elif word in TENS:
            current += TENS[word]
        elif word == "dozen":
            current = (current or 1) * 12
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in SCALES:
            total += (current or 1) * SCALES[word]
            current = 0
        elif word in SHORT_SCALES:
            total += (current or 1) * SHORT_SCALES[word]
            current = 0
        seen = True
    value = total + current if seen else 0
    return int(value) if value == int(value) else value


def figures(sentence: str) -> list[Figure]:
    """Every figure in a sentence, in order, ranges read as one."""
    found: list[Figure] = []
    for match in _VAGUE.finditer(sentence):
        word = match.group(1).lower()
        if word == "thousands" and sentence[max(0, match.start() - 12) : match.start()].lower().endswith(
            ("tens of ", "hundreds of ")
        ):
            continue
        vague, guess = VAGUE[re.sub(r"\s+", " ", word)]
        field = "value" if vague == "about" else "lower"
        unit = match.group(2).lower()
        guessed = {"comparator": vague, field: guess, "unit": unit}
        found.append(Figure(match.start(), match.end(), guessed, unit, vague=True))
    skip_until = -1
    for match in NUMBER.finditer(sentence):
        if match.start() < skip_until or _not_a_figure(sentence, match):
            continue
        value = number(match.group(0).lstrip("$"))
        money = bool(match.group(1))
        end = match.end()
        upper: float | int | None = None
        rng = _RANGE.match(sentence, end)
        if rng:
            second = NUMBER.match(sentence, rng.end())
            if second and not _not_a_figure(sentence, second):
                upper = number(second.group(0).lstrip("$"))
                end = second.end()
        unit = "usd" if money else _unit(sentence, end) or _unit_before(sentence, match.start())
        if unit is None:
            continue
        if unit in _TIME_UNITS and _DURATION.search(sentence, max(0, match.start() - 16), match.start()):
            continue
        before = _COMPARATOR.search(sentence, max(0, match.start() - 30), match.start())
        if upper is not None and upper > value:
            quantity: dict[str, Any] = {"comparator": "between", "lower": value, "upper": upper, "unit": unit}
        else:
            comparator = before.lastgroup if before and before.lastgroup else "exactly"
            field = {"up_to": "upper", "less_than": "upper", "at_least": "lower", "more_than": "lower"}.get(
                comparator, "value"
            )
            quantity = {"comparator": comparator, field: value, "unit": unit}
            end = match.end() if upper is not None else end
        found.append(Figure(match.start(), end, quantity, unit))
        skip_until = end
    found.sort(key=lambda f: f.start)
    return found


def figure(sentence: str) -> tuple[dict[str, Any], str] | None:
    """The first figure in a sentence, as a fixture quantity, and its unit."""
    found = figures(sentence)
    return (found[0].quantity, found[0].unit) if found else None


def _not_a_figure(sentence: str, match: re.Match[str]) -> bool:
    text = match.group(0)
    digits = match.group(2)
    if digits and re.fullmatch(r"(1[89]|20)\d\d", digits) and not match.group(1):
        return True  # a year
    if not digits and text.lower() in ("a", "one") and not re.match(r"\s+[a-z]", sentence[match.end() :]):
        return True
    if (
        not digits
        and text.lower() == "one"
        and re.match(r"\s+(?:of|another|by|day|after)\b", sentence[match.end() :], re.I)
    ):
        return True
    if _NOT_BEFORE.search(sentence, max(0, match.start() - 16), match.start()):
        return True
    return bool(_NOT_AFTER.search(sentence[match.end() : match.end() + 12]))


def _unit_before(sentence: str, start: int) -> str | None:
    """A unit named before the figure: "put the death toll at 69", "the number of valid votes ... was N"."""
    before = sentence[max(0, start - 70) : start].lower()
    found = re.search(r"\b(?:number|total|count) of ([a-z]+)(?:\s+([a-z]+))?", before)
    if found:  # "number of valid votes", "number of cases could": the noun
        second = found.group(2)
        return second if second and second not in _NOT_UNIT and second not in _MODALS else found.group(1)
    if re.search(r"\b(?:death toll|toll|death tally)\b", before):
        return "deaths"
    return None


def _unit(sentence: str, end: int) -> str | None:
    """The unit a figure counts: the next noun-like word, skipping adjectives; "percent" for "%"."""
    rest = sentence[end : end + 80]
    if rest.startswith("%") or re.match(r"\s*(?:percent|per cent)\b", rest, re.I):
        return "percent"
    words: list[str] = re.findall(r"[A-Za-z][\w-]*|[^\sA-Za-z]", rest)
    for word in words[:4]:
        if not word[0].isalpha():
            return None
        lower = word.lower()
        if lower in _UNIT_SKIP or word[0].isupper():
            continue
        if lower in _NOT_UNIT or lower in ONES or lower in TENS:
            return None
        return lower
    return None
