"""Drafting a fixture from an article's text: attributed claims, figures, denials, evidence and dates, found
by rules sentence by sentence, every entry marked for an editor's review. Pure: no I/O.

The rules are deliberately simple and explainable (a reporting verb next to a source, a number with its
comparator); they propose, the editor decides. What they cannot do: coreference ("he said"), nested reported
speech, sarcasm.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import yaml

from timeline.fixtures import Fixture

# A known source: (id, names and aliases it goes by, kind).
KnownSource = tuple[str, tuple[str, ...], str]
# An existing claim: (claim id, subject id, source id, metric), to propose revisions.
KnownClaim = tuple[str, str, str, str]

REPORTING = (
    r"says|said|say|reported|reports|claimed|claims|claiming|estimated|estimates|warned|warns|suggested|"
    r"suggest|suggests|suggesting|announced|stated|told|believes|added|expressed|raised|released|published"
)
DENYING = r"denied|denies|deny|rejected|rejects|dismissed|dismisses"
CONFIRMING = r"confirmed|confirms|corroborated"
RETRACTING = r"retracted|retracts|withdrew|withdrawn|walked back"
WORD_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "hundred": 100,
}  # fmt: skip
SCALES = {"thousand": 1_000, "million": 1_000_000}
VAGUE = {"dozens": ("about", 12), "hundreds": ("at_least", 100), "thousands": ("at_least", 1_000)}
_WORDS = "|".join(WORD_NUMBERS)
_SCALE = r"(?:\s+(?:thousand|million))?"
NUMBER = rf"(?:\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?){_SCALE}|(?i:{_WORDS}){_SCALE}"
UNIT = r"((?:[A-Z][\w-]*\s+)*[a-z][\w-]*)"  # skips capitalised adjectives: "12,000 North Korean troops"
COMPARATORS = [
    ("between", re.compile(rf"\b(?i:between)\s+({NUMBER})\s+(?i:and)\s+({NUMBER})\s+{UNIT}")),
    ("up_to", re.compile(rf"\b(?i:up to|as many as|at most|no more than)\s+({NUMBER})\s+{UNIT}")),
    ("at_least", re.compile(rf"\b(?i:at least|more than|over|upwards of)\s+({NUMBER})\s+{UNIT}")),
    ("about", re.compile(rf"\b(?i:about|around|approximately|nearly|roughly|some)\s+({NUMBER})\s+{UNIT}")),
    ("exactly", re.compile(rf"(?<![\w,])({NUMBER})\s+{UNIT}")),
]
MODALITY_CUES = [
    ("alleged", re.compile(r"\ballegedly\b|\breportedly\b|\bappears? to\b|\bpurportedly\b", re.I)),
    ("speculative", re.compile(r"\bmight\b|\bmay\b|\bpossibly\b|\bexperts? suggest", re.I)),
    ("projected", re.compile(r"\bcould\b|\bpreparing to\b|\bexpected to\b|\bwill\b|\bplans? to\b|"
                             r"\bin the future\b", re.I)),
    ("opinion", re.compile(r"\bconcern|\btroubling\b|\bdescribed as\b|\bcalling (?:it|for)\b", re.I)),
]  # fmt: skip
EVIDENCE = re.compile(r"\b(video|footage|images?|photos?|satellite|geolocated|recording|document)\b", re.I)
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]  # fmt: skip
NAMED = re.compile(
    r"\b[A-Z][\w'\u2019.-]+(?:(?:\s+|,\s+(?:and\s+)?)(?:[A-Z][\w'\u2019.-]+|of|the|and|for|\([A-Z]+\)))*"
    r"(?:\s+(?:authorities|officials|forces|government|intelligence))?"
)
GENERIC_SOURCES = {
    "some sources": "anonymous",
    "sources": "anonymous",
    "experts": "experts",
    "officials": "government",
}


def slug(text: str, limit: int = 60) -> str:
    """A stable id from text: lowercase words joined by hyphens, cut at a word."""
    out = ""
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if out and len(out) + 1 + len(word) > limit:
            break
        out = f"{out}-{word}" if out else word[:limit]
    return out or "x"


def article_text(raw: str) -> str:
    """Plain text from an article: for HTML, the <article> body (or the whole body) without tags."""
    if "<" not in raw or not re.search(r"<(p|article|html|body|div)\b", raw, re.I):
        return raw
    article = re.search(r"<article\b.*?>(.*?)</article>", raw, re.I | re.S)
    body = article.group(1) if article else raw
    body = re.sub(r"<(script|style|nav|header|footer|aside)\b.*?</\1>", " ", body, flags=re.I | re.S)
    body = re.sub(r"</(p|h\d|li|div)>|<br\s*/?>", "\n", body, flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def sentences(text: str) -> Iterator[tuple[int, int, str]]:
    """Sentences with their character spans."""
    for match in re.finditer(r"[^.!?\n]+(?:[.!?]+[\"”']?|$)", text):
        chunk = match.group(0)
        stripped = chunk.strip()
        if len(stripped) > 3:
            start = match.start() + (len(chunk) - len(chunk.lstrip()))
            yield start, start + len(stripped), stripped


def number(text: str) -> float | int:
    """A number written in digits or words ("1,500", "ten thousand", "1.5 million")."""
    parts = text.lower().split()
    scale = SCALES.get(parts[-1], 1) if len(parts) > 1 else 1
    head = parts[0].replace(",", "")
    value: float = WORD_NUMBERS[head] if head in WORD_NUMBERS else float(head)
    value *= scale
    return int(value) if value == int(value) else value


def figure(sentence: str) -> tuple[dict[str, Any], str] | None:
    """The first figure in a sentence, as a fixture quantity, and its unit."""
    for word, (comparator, value) in VAGUE.items():
        found = re.search(rf"\b{word} of ([a-z][\w-]*)", sentence, re.I)
        if found:
            field = "value" if comparator == "about" else "lower"
            return {"comparator": comparator, field: value, "unit": found.group(1)}, found.group(1)
    for comparator, pattern in COMPARATORS:
        found = pattern.search(sentence)
        if not found:
            continue
        if comparator == "exactly" and re.fullmatch(r"(19|20)\d\d", found.group(1)):
            continue  # a year, not a figure
        unit = found.groups()[-1].split()[-1].lower()
        if comparator == "between":
            return {
                "comparator": "between",
                "lower": number(found.group(1)),
                "upper": number(found.group(2)),
                "unit": unit,
            }, unit
        field = {"up_to": "upper", "at_least": "lower"}.get(comparator, "value")
        return {"comparator": comparator, field: number(found.group(1)), "unit": unit}, unit
    return None


def modality(sentence: str) -> str:
    """How firmly the source says it."""
    for name, pattern in MODALITY_CUES:
        if pattern.search(sentence):
            return name
    return "asserted"


def stated_on(sentence: str, published: dt.date) -> str | None:
    """A date the sentence gives, resolved against the article's date (None: the article's date)."""
    lower = sentence.lower()
    for i, day in enumerate(WEEKDAYS):
        if re.search(rf"\bon {day}\b", lower):
            back = (published.weekday() - i) % 7 or 7
            return (published - dt.timedelta(days=back)).isoformat()
    if "yesterday" in lower:
        return (published - dt.timedelta(days=1)).isoformat()
    if "last week" in lower:
        return (published - dt.timedelta(days=7)).isoformat()[:7]
    for i, month in enumerate(MONTHS, start=1):
        found = re.search(rf"\b(?:in|on|since) {month}(?: (\d{{1,2}}))?(?:,? (\d{{4}}))?\b", lower)
        if found:
            year = (
                int(found.group(2)) if found.group(2) else published.year - (1 if i > published.month else 0)
            )
            return f"{year}-{i:02}-{int(found.group(1)):02}" if found.group(1) else f"{year}-{i:02}"
    return None


ORGANISATION_WORDS = re.compile(
    r"\b(Service|Center|Centre|Ministry|Agency|Council|Office|Government|Kremlin|authorities|officials|"
    r"forces|Army|Institute|Committee|Department|Union|Nations|States|Korea|Japan|France|Russia|Ukraine|"
    r"News|Times|Post|CNN|BBC|Reuters)\b"
)
PERSON_TITLES = re.compile(r"\b(President|Minister|Secretary|spokesman|spokeswoman|General|Mr|Ms|Dr)\b")


def _kind_of(name: str) -> str:
    if PERSON_TITLES.search(name):
        return "person"
    if ORGANISATION_WORDS.search(name) or len(name.split()) > 3:
        return "organisation"
    return "person" if len(name.split()) >= 2 else "organisation"


class _Finder:
    """Matches sources in sentences: known ones by name or alias, new ones by their reporting verb."""

    def __init__(self, known: Iterable[KnownSource]) -> None:
        # Each name also without its parenthesis: "National Intelligence Service (South Korea)" is found
        # in "The National Intelligence Service (NIS) of South Korea reported...".
        self.known = [
            (
                ident,
                tuple({*names, *(re.sub(r"\s*\(.*?\)", "", n).split(",")[0].strip() for n in names)}),
                kind,
            )
            for ident, names, kind in known
        ]
        self.proposed: dict[str, dict[str, Any]] = {}

    def find(self, sentence: str) -> str | None:
        lower = sentence.lower()
        best: tuple[int, str] | None = None
        for ident, names, _ in self.known:
            for name in names:
                at = lower.find(name.lower())
                if at >= 0 and len(name) > 2 and (best is None or at < best[0]):
                    best = (at, ident)
        if best is not None:
            return best[1]
        for generic, kind in GENERIC_SOURCES.items():
            if re.search(rf"\b{generic}\b", lower):
                return self._propose(
                    generic.capitalize() if generic != "some sources" else "Unnamed sources", kind
                )
        for pattern in (
            rf"(?i:according to)\s+(?:the\s+)?({NAMED.pattern})",
            rf"(?:geolocated|recorded|filmed|published|released|verified) by ({NAMED.pattern})",
            rf"({NAMED.pattern}),?\s+(?:has |have |had )?(?:also |repeatedly |officially )?"
            rf"(?:{REPORTING}|{DENYING}|{CONFIRMING})\b",
        ):
            found = re.search(pattern, sentence)
            if found and found.group(1).strip() not in ("The", "It", "This", "Another"):
                name = re.sub(r"^(?:The|the)\s+", "", found.group(1).strip())
                return self._propose(name, _kind_of(name))
        return None

    def _propose(self, name: str, kind: str) -> str:
        ident = slug(name, 40)
        if any(ident == known for known, _, _ in self.known):
            return ident  # registered already (or proposed earlier in this article)
        self.proposed.setdefault(ident, {"id": ident, "name": name, "kind": kind})
        self.known.append((ident, (name,), kind))
        return ident


def draft(  # noqa: PLR0915 - one pass over the sentences; the rules read best in the order they apply
    raw: str,
    *,
    published: dt.date,
    title: str | None = None,
    subject: str | None = None,
    known_sources: Iterable[KnownSource] = (),
    known_claims: Iterable[KnownClaim] = (),
) -> dict[str, Any]:
    """A draft fixture (as plain data, valid against the fixture schema) proposed from an article's text."""
    text = article_text(raw)
    heading = title or text.strip().splitlines()[0][:120]
    subject_id = subject or slug(heading, 50)
    finder = _Finder(known_sources)
    existing = {(s, m): c for c, subj, s, m in known_claims if subj == subject_id}
    events: list[dict[str, Any]] = []
    claims_so_far: list[str] = []
    used: set[str] = set()
    last_source: str | None = None
    claim_sources: dict[str, str] = {}  # drafted claim -> its source

    def unique(ident: str) -> str:
        base, n = ident, 2
        while ident in used:
            ident, n = f"{base}-{n}", n + 1
        used.add(ident)
        return ident

    for start, end, sentence in sentences(text):
        note: dict[str, Any] = {"sentence": sentence, "span": [start, end], "review": True}
        if re.match(r"(?:He|She|They)\b", sentence) and last_source is not None:
            # No coreference: a pronoun is taken to be the previous sentence's source, and flagged.
            source: str | None = last_source
            note["notes"] = "the source is a pronoun here: taken to be the previous source"
        else:
            source = finder.find(sentence)
        last_source = source or last_source
        on = stated_on(sentence, published)
        dated = {"stated_on": on} if on else {}
        if source is None:
            continue
        own = [c for c, by in claim_sources.items() if by == source] + [
            c for (by, _), c in existing.items() if by == source
        ]
        if re.search(rf"\b(?:{RETRACTING})\b", sentence, re.I) and own:
            events.append(
                {
                    "type": "retraction",
                    "id": unique(f"{source}-retraction"),
                    "claim": own[-1],
                    "statement": sentence,
                    **dated,
                    "draft": {**note, "notes": "the retracted claim is a guess: the source's latest one"},
                }
            )
            continue
        if re.search(rf"\b(?:{DENYING})\b", sentence, re.I) and claims_so_far:
            events.append(
                {
                    "type": "denial",
                    "id": unique(f"{source}-denial"),
                    "source": source,
                    "claims": list(claims_so_far),
                    "statement": sentence,
                    **dated,
                    "draft": {**note, "notes": "the denied claims are a guess: keep only those it denies"},
                }
            )
            continue
        if (
            re.search(rf"\b(?:{CONFIRMING})\b", sentence, re.I)
            and not re.search(r"\bnot\b[^.]*confirm", sentence, re.I)
            and claims_so_far
        ):
            events.append(
                {
                    "type": "confirmation",
                    "id": unique(f"{source}-confirms"),
                    "claim": claims_so_far[-1],
                    "source": source,
                    "statement": sentence,
                    **dated,
                    "draft": note,
                }
            )
            continue
        found = figure(sentence)
        entry: dict[str, Any] = {"statement": sentence, **dated, "draft": note}
        if found is not None:
            quantity, unit = found
            metric = slug(unit, 40)
            if (source, metric) in existing:
                events.append(
                    {
                        "type": "revision",
                        "id": unique(f"{source}-revision"),
                        "claim": existing[(source, metric)],
                        "quantity": quantity,
                        **entry,
                    }
                )
                continue
            claim_id = unique(
                slug(
                    f"{source} {quantity.get('value') or quantity.get('upper') or quantity.get('lower')} "
                    f"{unit}",
                    60,
                )
            )
            events.append(
                {
                    "type": "claim",
                    "id": claim_id,
                    "subject": subject_id,
                    "source": source,
                    "modality": modality(sentence),
                    "metric": metric,
                    "quantity": quantity,
                    **entry,
                }
            )
            claims_so_far.append(claim_id)
            claim_sources[claim_id] = source
            continue
        claim_id = unique(slug(f"{source} {sentence}", 60))
        events.append(
            {
                "type": "claim",
                "id": claim_id,
                "subject": subject_id,
                "source": source,
                "modality": modality(sentence),
                **entry,
            }
        )
        claims_so_far.append(claim_id)
        claim_sources[claim_id] = source
        kind = EVIDENCE.search(sentence)
        if kind is not None:
            word = "geolocated" if re.search(r"\bgeolocated\b", sentence, re.I) else kind.group(1).lower()
            evidence_kind = (
                "geolocation"
                if word == "geolocated"
                else "image"
                if word.startswith(("image", "photo", "satellite"))
                else "document"
                if word == "document"
                else "video"
            )
            events.append(
                {
                    "type": "evidence",
                    "id": unique(f"{claim_id}-evidence"),
                    "claim": claim_id,
                    "kind": evidence_kind,
                    "source": source,
                    "description": sentence,
                    **dated,
                    "draft": note,
                }
            )

    fixture: dict[str, Any] = {
        "document": {"id": slug(heading, 50), "title": heading, "published_on": published.isoformat()},
        "subjects": [] if subject else [{"id": subject_id, "name": heading}],
        "sources": list(finder.proposed.values()),
        "events": events,
    }
    msgspec.convert(fixture, Fixture)  # the draft must be a valid fixture
    return fixture


def article_date(raw: str, given: str | None) -> tuple[dt.date | None, str]:
    """The article's date (given, or a leading "date YYYY-MM-DD" line) and the text without that line."""
    found = re.match(r"\s*date (\d{4}-\d{2}-\d{2})\s+", raw)
    if found:
        raw = raw[found.end() :]
    text = given or (found.group(1) if found else None)
    return (dt.date.fromisoformat(text) if text else None), raw


def to_yaml(fixture: dict[str, Any]) -> str:
    """A draft as YAML, with a header telling the editor what to do."""
    header = (
        "# A DRAFT proposed by `timeline draft` from the article's text. Check every entry against its\n"
        "# sentence (draft.sentence, draft.span), fix ids, sources, figures and targets, then set\n"
        "# draft.review to false (or remove draft) before importing. Entries still marked are refused.\n"
        "# yaml-language-server: $schema=./schema.json\n"
    )
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return header + yaml.dump(fixture, Dumper=dumper, sort_keys=False, allow_unicode=True, width=110)
