"""Who says it: known sources matched by whole words, new ones found next to a reporting verb ("X said",
"said X", "according to X", "X told lawmakers"), generic and institutional ones ("officials", "analysts",
"the agency")."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from timeline.drafting.cues import CONFIRMING, DENYING, RELEASING, REPORTING, SPEECH
from timeline.drafting.text import wordset

# A known source: (id, names and aliases it goes by, kind).
KnownSource = tuple[str, tuple[str, ...], str]

# Lowercase words a source's name may hold ("Government officials in Kunar province", "the state's fire
# chief"), and the generic heads that make a source of their own.
GENERIC = {
    "officials": "government", "official": "government", "authorities": "government",
    "government": "government", "police": "agency", "military": "agency", "army": "agency",
    "ministry": "government", "department": "agency", "agency": "agency", "agencies": "organisation",
    "spokesman": "person", "spokeswoman": "person", "spokesperson": "person", "minister": "person",
    "analysts": "experts", "experts": "experts", "scientists": "experts", "researchers": "experts",
    "forecasters": "experts", "doctors": "experts", "observers": "organisation", "witnesses": "anonymous",
    "residents": "anonymous", "sources": "anonymous", "reports": "media", "media": "media",
    "television": "media", "commission": "organisation", "council": "organisation", "service": "agency",
    "survey": "agency", "office": "agency", "report": "organisation", "governor": "person",
    "chief": "person", "director": "person", "officer": "person", "commander": "person",
    "secretary": "person", "president": "person", "coalition": "coalition", "groups": "organisation",
    "group": "organisation", "party": "organisation", "organization": "organisation",
    "organisation": "organisation", "committee": "organisation", "forces": "agency", "troops": "agency",
    "center": "agency", "centre": "agency", "prosecutors": "agency", "investigators": "agency",
    "departments": "agency", "ministries": "government", "governments": "government",
    "institute": "organisation", "university": "organisation", "journal": "media", "spokesmen": "person",
}  # fmt: skip
NAME_WORDS = wordset(
    "of the for and in on de del la al da von van bin state's country's city's province's area's region's "
    "nation's agency's local senior top chief state federal provincial regional national military defense "
    "defence health foreign interior security intelligence emergency disaster refugee relief u.n. un "
    "government civil fire aid human rights unconfirmed unnamed anonymous western some many other several "
    "two three both province district county region city country village town provinces states "
    "national's disaster"
) | frozenset(GENERIC)
_TOKEN = re.compile(r"[A-Z][\w'\u2019.-]*|[a-z][\w'\u2019.-]*|\(\w+\)|,")
_SKIP = wordset(
    "now also later earlier repeatedly officially publicly previously still already then have has had "
    "initially first on monday tuesday wednesday thursday friday saturday sunday yesterday today "
    "morning evening night late early"
)
_OPENERS = wordset(
    "the a an this that these those it its in on at but and however meanwhile after before as while when "
    "he she they we i you his her their our who which what"
)
_JOINS = frozenset({"in", "of", "for", "and", "on", "at"})
_PRONOUN = re.compile(
    r"\b(?:he|she|they|it)\s+(?:also\s+)?(?:said|says|added|told|tells|noted|warned)\b", re.I
)
# Verbs are matched in lowercase only: "the United States" is not "states", "Reports" opens a name.
_TIERS = [
    re.compile(rf"\b(?:{SPEECH})\b"),
    re.compile(rf"\b(?:{REPORTING}|{DENYING}|{CONFIRMING})\b|\b{RELEASING}\b"),
]
_WORDS = re.compile(r"[a-z]+")
# The first word of every verb phrase: a sentence without any of them skips the verb search.
VERB_WORDS = frozenset(
    phrase.split()[0].strip("(?:") for phrase in f"{REPORTING}|{DENYING}|{CONFIRMING}|{RELEASING}".split("|")
) | {
    "released",
    "releases",
    "published",
    "publishes",
    "posted",
    "posts",
    "shared",
    "shares",
    "issued",
    "issues",
}
_INVERTED = re.compile(r"(?:,|[\"\u201d'\u2019])\s*(?:said|says|added|told|according to)\s+(?:the\s+)?", re.I)
_ACCORDING = re.compile(
    r"\baccording(?: to)?\s+(?:(?:the|a|an|its|their)\s+)?(?:(?:\w+\s+)?(?:report|statement|data|figures|"
    r"estimates?|tally|count|survey)\s+(?:compiled\s+|released\s+|published\s+)?(?:by|from|of)\s+)?(?:the\s+)?",
    re.I,
)
# "The Wall Street Journal, which first reported the move, said": the name before ", which".
_APPOSITIVE = re.compile(
    r",\s+(?:which|who)\b[^,]{0,80}$|,\s+(?:which|who)\s+(?:\w+\s+){0,2}$|"
    r",\s+(?:one of|a|an)\s[^,A-Z]{0,60},\s*$"
)
_BY = re.compile(
    r"\b(?:geolocated|recorded|filmed|published|released|verified|compiled|posted|issued) by\s+(?:the\s+)?",
    re.I,
)


def kind_of(name: str) -> str:
    """A source's kind guessed from its name."""
    words = name.lower().split()
    for word in reversed(words):
        if word in GENERIC:
            return GENERIC[word]
    if re.search(r"\b(News|Times|Post|Journal|CNN|BBC|Reuters|Press|Television|Radio|TV)\b", name):
        return "media"
    if re.search(r"\b(Mr|Ms|Mrs|Dr|Gen|Col|Capt|Maj|Lt)\b\.?", name) or len(words) in (2, 3):
        return "person"
    return "organisation"


def slug(text: str, limit: int = 60) -> str:
    """A stable id from text: lowercase words joined by hyphens, cut at a word."""
    out = ""
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if out and len(out) + 1 + len(word) > limit:
            break
        out = f"{out}-{word}" if out else word[:limit]
    return out or "x"


class Finder:
    """Matches sources in sentences: known ones by whole words, new ones next to their reporting verb."""

    def __init__(self, known: Iterable[KnownSource]) -> None:
        self.known: dict[str, tuple[str, str]] = {}  # lowercase name -> (id, kind)
        self.names: dict[str, str] = {}  # id -> display name
        self.proposed: dict[str, dict[str, Any]] = {}
        self.surnames: dict[str, str] = {}  # a proposed person's last name -> its id
        for ident, names, kind in known:
            self.names.setdefault(ident, names[0] if names else ident)
            for name in names:
                # "National Intelligence Service (South Korea)" also as "National Intelligence Service".
                for variant in (name, re.sub(r"\s*\(.*?\)", "", name).split(",")[0].strip()):
                    if len(variant) > 2:
                        self.known.setdefault(variant.lower(), (ident, kind))
        self._pattern: re.Pattern[str] | None = None
        self.anchor = 0  # where the reported statement starts in the last sentence found (its verb), or 0

    def find(self, sentence: str) -> str | None:
        """The source a sentence attributes its statement to, if it names one."""
        named = self._named(sentence)
        known = self._known(sentence)
        if named is None:
            return known[0] if known else None
        if known is not None:
            ident, text = known
            # A registered source inside the name found ("The National Intelligence Service (NIS) of South
            # Korea"), or a generic phrase next to a registered one: the registered source.
            if (
                text.lower() in named.lower()
                or named.lower() in text.lower()
                or named.split()[-1].lower() in GENERIC
            ):
                return ident
        return self._propose(named)

    def pronoun(self, sentence: str) -> bool:
        """Whether the sentence's speaker is a pronoun ("he said", "She added")."""
        return _PRONOUN.search(sentence) is not None

    def name(self, ident: str) -> str:
        """The display name of a known or proposed source."""
        return self.names.get(ident, ident)

    def _known(self, sentence: str) -> tuple[str, str] | None:
        if not self.known:
            return None
        if self._pattern is None:
            names = sorted(self.known, key=len, reverse=True)
            self._pattern = re.compile(
                r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w-])", re.I
            )
        found = self._pattern.search(sentence)
        return (self.known[found.group(0).lower()][0], found.group(0)) if found else None

    def _named(self, sentence: str) -> str | None:
        self.anchor = 0
        words = set(_WORDS.findall(sentence))
        for tier in _TIERS if words & VERB_WORDS else ():
            for verb in tier.finditer(sentence):
                name = self._subject_before(sentence, verb.start())
                if name:
                    self.anchor = verb.start()
                    return name
        for pattern in (_INVERTED, _ACCORDING, _BY):
            for found in pattern.finditer(sentence):
                name = self._name_after(sentence, found.end())
                if name:
                    return name
        return None

    def _subject_before(self, sentence: str, at: int) -> str | None:
        """The name right before a verb: capitalised words and the words a name may hold."""
        before = sentence[max(0, at - 160) : at]
        appositive = _APPOSITIVE.search(before)
        if appositive and not re.search(r"(?:^|\s)(?:" + "|".join(GENERIC) + r")\W*$", appositive.group(0)):
            # ", which first reported the move,", ", one of the staffers charged,": back to the name
            before = before[: appositive.start()]
        tokens = _TOKEN.findall(before)
        while tokens and tokens[-1].lower() in _SKIP:
            tokens.pop()
        picked: list[str] = []
        for i in range(len(tokens) - 1, -1, -1):
            token = tokens[i]
            lower = token.lower().rstrip(".")
            if lower in _JOINS and picked:
                # "officials in Kunar province", "Treasury and State departments": a join inside a name
                # when a name word stands before it.
                left = tokens[i - 1] if i else ""
                if left and left != "," and (left[0].isupper() or left[0] == "(" or left.lower() in GENERIC):
                    picked.append(token)
                    continue
                break
            if token == "," or (lower in _OPENERS and picked):
                break
            if token[0].isupper() or token.startswith("(") or lower in NAME_WORDS:
                picked.append(token)
                continue
            break
        return _clean(list(reversed(picked)))

    def _name_after(self, sentence: str, at: int) -> str | None:
        picked: list[str] = []
        for token in _TOKEN.findall(sentence[at : at + 120]):
            lower = token.lower().rstrip(".")
            if not picked and lower in _SKIP:
                continue  # "said Thursday that ...": not a name
            if token == "," or (picked and lower in _OPENERS):
                break
            if token[0].isupper() or lower in NAME_WORDS:
                picked.append(token.rstrip("."))
                continue
            break
        return _clean(picked)

    def _propose(self, name: str) -> str:
        lower = name.lower()
        if lower in self.known:
            return self.known[lower][0]
        if len(lower.split()) == 1 and lower in self.surnames:
            return self.surnames[lower]  # "Lenku" after "Interior Minister Joseph Ole Lenku": the same person
        ident = slug(name, 40)
        if ident not in self.proposed:
            kind = kind_of(name)
            self.proposed[ident] = {"id": ident, "name": name, "kind": kind}
            self.names[ident] = name
            if kind == "person":
                self.surnames.setdefault(lower.split()[-1], ident)
        return ident


def _clean(tokens: list[str]) -> str | None:
    """A name from picked tokens, without leading articles and trailing connectors; None if not a source."""
    while tokens and tokens[0].lower() in _OPENERS | {"of", "and", "in", "for", "on"}:
        tokens.pop(0)
    while tokens and tokens[-1].lower() in {"of", "and", "in", "for", "on", "the", "state's"}:
        tokens.pop()
    if not tokens:
        return None
    has_capital = any(t[0].isupper() for t in tokens)
    generic = tokens[-1].lower() in GENERIC
    if not has_capital and not generic:
        return None
    if len(tokens) == 1 and tokens[0].lower() in _OPENERS | {"i", "we", "you"}:
        return None
    return " ".join(tokens)
