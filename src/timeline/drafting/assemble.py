"""One pass over an article's sentences, turning what the rules find into fixture entries marked for review.

Each sentence with a source gives: a retraction, a denial or a confirmation (when its verb says so and is not
negated or hedged), else one claim per figure (a revision when the source already has a claim on the same
metric), else one claim; evidence it cites is attached to its first claim. A denial names at most three
earlier claims, the ones whose words it shares, so the output stays proportional to the input.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import msgspec

from timeline.drafting import cues
from timeline.drafting.dates import stated_on
from timeline.drafting.numbers import Figure, figures
from timeline.drafting.sources import Finder, KnownSource, slug
from timeline.drafting.text import article_text, decode, looks_english, sentences, wordset
from timeline.fixtures import Fixture

# An existing claim: (claim id, subject id, source id, metric), to propose revisions.
KnownClaim = tuple[str, str, str, str]

# Units that count the same thing, so "troops" revises a claim whose metric is "soldiers-sent".
SYNONYMS = [
    {"soldier", "troop", "personnel", "servicemen", "fighter", "serviceman"},
    {"people", "person", "civilian", "resident", "individual"},
    {"death", "dead", "killed", "fatality", "victim"},
    {"home", "house", "building", "dwelling"},
    {"refugee", "displaced", "evacuee"},
    {"case", "infection"},
]
_STOP = wordset(
    "the a an of and to in on at for by with from that this it its is was were are be been has have had as "
    "said says say not no but or which who what than also more into about after over their they he she"
)
MAX_DENIED = 3
# A denial or confirmation answers one of the latest claims: only so many are searched, keeping the pass
# linear in the article's length.
RECENT = 200


class Draft(dict[str, Any]):
    """A draft fixture (plain data, valid against the fixture schema) with notes for the editor."""

    notes: list[str]


def draft(
    raw: str | bytes,
    *,
    published: dt.date,
    title: str | None = None,
    subject: str | None = None,
    known_sources: Iterable[KnownSource] = (),
    known_claims: Iterable[KnownClaim] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Draft:
    """A draft fixture proposed from an article's text (or bytes, decoded by text.decode's policy);
    ``progress(done, total)`` is told the characters of the article's text read after each sentence."""
    text, notes = decode(raw)
    text = article_text(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    heading = (title or (lines[0][:120] if lines else "") or "Untitled article").strip() or "Untitled article"
    subject_id = subject or slug(heading, 50)
    builder = _Builder(Finder(known_sources), subject_id, published, list(known_claims))
    if not lines:
        notes.append("the article has no text: nothing drafted")
    elif not looks_english(text):
        notes.append(
            "the article does not look like English; the drafting rules read English only: nothing drafted"
        )
    else:
        for start, end, sentence in sentences(text):
            builder.sentence(start, end, sentence)
            if progress is not None:
                progress(end, len(text))
        if not builder.events:
            notes.append("no attributed statement or figure found: nothing drafted")
    fixture = Draft(
        document={"id": slug(heading, 50), "title": heading, "published_on": published.isoformat()},
        subjects=[] if subject else [{"id": subject_id, "name": heading}],
        sources=list(builder.finder.proposed.values()),
        events=builder.events,
    )
    fixture.notes = notes
    msgspec.convert(fixture, Fixture)  # the draft must be a valid fixture
    return fixture


class _Builder:
    """The entries drafted so far, and what later sentences refer back to."""

    def __init__(self, finder: Finder, subject: str, published: dt.date, known: list[KnownClaim]) -> None:
        self.finder = finder
        self.subject = subject
        self.published = published
        self.events: list[dict[str, Any]] = []
        self.used: set[str] = set()
        self.last_source: str | None = None
        self.claims: list[tuple[str, str, frozenset[str]]] = []  # (claim, source, content words)
        self.by_source: dict[str, list[str]] = {}
        self.counters: dict[str, int] = {}
        self.unit_metric: dict[str, str] = {}  # a unit -> the subject's metric it was matched to
        self.existing = {(source, metric): claim for claim, subj, source, metric in known if subj == subject}
        self.metrics = {metric for _, subj, _, metric in known if subj == subject}

    def sentence(self, start: int, end: int, sentence: str) -> None:
        note: dict[str, Any] = {"sentence": sentence, "span": [start, end], "review": True}
        source = self.finder.find(sentence)
        if source is None and self.last_source is not None and self.finder.pronoun(sentence):
            # No coreference: a pronoun is taken to be the previous sentence's source, and flagged.
            source = self.last_source
            note["notes"] = "the source is a pronoun here: taken to be the previous source"
        if source is None:
            return
        self.last_source = source
        # The date the source spoke: near its verb ("said Monday", "on Thursday announced"), not an event's
        # date elsewhere in the sentence ("since August 25"); anywhere when the source follows the statement.
        anchor = self.finder.anchor
        on = stated_on(sentence[max(0, anchor - 100) : anchor + 50] if anchor else sentence, self.published)
        dated = {"stated_on": on} if on else {}
        if cues.SPECIAL.search(sentence) and self._act(source, sentence, dated, note):
            return  # a denial, confirmation or retraction; or a negated one, which drafts nothing
        first: str | None = None
        # The figures of the reported statement: after its verb ("X said ..."), anywhere when the source
        # comes after it ("..., X said", "according to X"); vague ones ("thousands of") stay words.
        found = [f for f in figures(sentence) if f.start >= self.finder.anchor and not f.vague]
        for each in found:
            drafted = self._figure(source, sentence, each, dated, note)
            first = first or drafted
        if not found:
            first = self._claim(source, sentence, None, dated, note)
        kind = cues.evidence_kind(sentence)
        if kind is not None and first is not None:
            self._add("evidence", f"{first}-evidence", claim=first, kind=kind, source=source,
                      description=sentence, **dated, draft=note)  # fmt: skip

    def _act(self, source: str, sentence: str, dated: dict[str, str], note: dict[str, Any]) -> bool:
        """Draft a retraction, denial or confirmation if the sentence is one; True if nothing else applies."""
        if cues.NO_COMMENT.search(sentence) or (
            cues.negated(sentence, cues.DENYING) and not cues.denies(sentence)
        ):
            return True  # "has not commented", "did not deny": neither a claim nor a denial
        if cues.acts(sentence, cues.RETRACTING) and self._own(source):
            claim = self._own(source)[-1]
            guess = {**note, "notes": "the retracted claim is a guess: the source's latest one"}
            self._add(
                "retraction", f"{source}-retraction", claim=claim, statement=sentence, **dated, draft=guess
            )
            return True
        if cues.denies(sentence):
            targets = self._targets(source, sentence, MAX_DENIED)
            if targets:
                guess = {**note, "notes": "the denied claims are a guess: keep only those it denies"}
                self._add("denial", f"{source}-denial", source=source, claims=targets, statement=sentence,
                          **dated, draft=guess)  # fmt: skip
            return True
        if cues.negated(sentence, cues.CONFIRMING):
            return True  # "have not confirmed the death toll"
        if cues.acts(sentence, cues.CONFIRMING) and re.search(
            r"\bconfirm|\bcorroborat|\bverifi", sentence, re.I
        ):
            targets = self._targets(source, sentence, 1)
            if targets:
                self._add("confirmation", f"{source}-confirms", claim=targets[0], source=source,
                          statement=sentence, **dated, draft=note)  # fmt: skip
                return True
        return False

    def _figure(
        self, source: str, sentence: str, found: Figure, dated: dict[str, str], note: dict[str, Any]
    ) -> str | None:
        metric = self._metric(found.unit, source)
        if (source, metric) in self.existing:
            self._add("revision", f"{source}-revision", claim=self.existing[(source, metric)],
                      quantity=found.quantity, statement=sentence, **dated, draft=note)  # fmt: skip
            return None
        return self._claim(source, sentence, (found, metric), dated, note)

    def _claim(
        self,
        source: str,
        sentence: str,
        figure: tuple[Figure, str] | None,
        dated: dict[str, str],
        note: dict[str, Any],
    ) -> str:
        entry: dict[str, Any] = {
            "subject": self.subject,
            "source": source,
            "modality": cues.modality(sentence),
        }
        if figure is None:
            ident = f"{source} {sentence}"
        else:
            found, metric = figure
            q = found.quantity
            ident = f"{source} {q.get('value') or q.get('upper') or q.get('lower')} {found.unit}"
            entry |= {"metric": metric, "quantity": found.quantity}
            self.metrics.add(metric)
        claim = self._add("claim", slug(ident, 60), statement=sentence, **entry, **dated, draft=note)
        self.claims.append((claim, source, _words(sentence)))
        self.by_source.setdefault(source, []).append(claim)
        return claim

    def _metric(self, unit: str, source: str) -> str:
        """The subject's metric this unit counts (the source's own first, for a revision), else the unit."""
        group = _group(unit)
        for s, metric in self.existing:
            if s == source and any(_group(part) & group for part in metric.split("-")):
                return metric
        if unit not in self.unit_metric:
            matching = (m for m in sorted(self.metrics) if any(_group(p) & group for p in m.split("-")))
            self.unit_metric[unit] = next(matching, slug(unit, 40))
        return self.unit_metric[unit]

    def _own(self, source: str) -> list[str]:
        return self.by_source.get(source, []) + [c for (by, _), c in self.existing.items() if by == source]

    def _targets(self, source: str, sentence: str, limit: int) -> list[str]:
        """Earlier claims by other sources that this sentence most likely answers (shared words first)."""
        words = _words(sentence)
        recent = self.claims[-RECENT:]
        others = [(c, w) for c, by, w in recent if by != source]
        others += [(c, frozenset()) for (by, _), c in self.existing.items() if by != source]
        ranked = sorted(
            ((len(words & w), i, c) for i, (c, w) in enumerate(others) if words & w),
            key=lambda t: (-t[0], -t[1]),
        )
        chosen = [c for _, _, c in ranked[:limit]]
        if not chosen:  # nothing shared: the latest claim by another source, flagged as a guess anyway
            drafted = [c for c, by, _ in recent if by != source]
            chosen = drafted[-1:] or [c for c, _ in others[:1]]
        return chosen

    def _add(self, type_: str, ident: str, **fields: Any) -> str:
        base, n = ident, self.counters.get(ident, 2)
        while ident in self.used:
            ident, n = f"{base}-{n}", n + 1
        self.counters[base] = n
        self.used.add(ident)
        self.events.append({"type": type_, "id": ident, **fields})
        return ident


@cache
def _group(word: str) -> frozenset[str]:
    stem = re.sub(r"(?<=[a-z])(?:es|s)$", "", word.lower()) if len(word) > 3 else word.lower()
    for group in SYNONYMS:
        if stem in group or word.lower() in group:
            return frozenset(group)
    return frozenset({stem})


def _words(sentence: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]{3,}", sentence.lower()) if w not in _STOP)
