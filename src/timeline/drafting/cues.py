"""Words that say what a sentence does: report, deny, confirm, retract; how firmly (modality); whether the
act is negated or hedged ("did not deny", "has not commented", "declined to confirm"); the evidence it cites.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

# Reporting phrases, from the development set and wire style: "told lawmakers", "put the number at".
REPORTING = (
    r"says|said|say|saying|tells|told|telling|reported|reports|report|reporting|claimed|claims|claim|claiming|"
    r"estimated|estimates|estimate|warned|warns|warn|announced|announces|announce|stated|added|adds|"
    r"noted|notes|declared|declares|believes|believe|suggested|suggests|suggest|predicted|predicts|predict|"
    r"forecast|forecasts|projected|expects|expected|alleged|alleges|insisted|insists|explained|explains|"
    r"acknowledged|acknowledges|admitted|admits|disclosed|revealed|recorded|counted|registered|urged|"
    r"called|described|accused|accuses|blamed|blames|showed|shows|indicated|indicates|wrote|writes|"
    r"testified|briefed|put the (?:number|figure|toll|death toll|total|count|tally) at|puts the "
    r"(?:number|figure|toll|death toll|total|count|tally) at|quoted|cited|vowed|pledged|asked|argued|"
    r"concluded|found|confirmed|confirms|confirm|suggesting|warning|adding|noting|announcing|estimating|stating|declaring|insisting|"
    r"explaining|predicting|alleging|accusing|arguing|describing|calling"
)
# The verbs that say most surely who is speaking; a source next to one of them is preferred.
SPEECH = r"says|said|say|tells|told|added|adds|reported|reports|report|announced|announces|stated"
# Releasing evidence attributes the sentence too: "Ukrainian authorities have released a video".
RELEASING = (
    r"(?:released|releases|published|publishes|posted|posts|shared|shares|issued|issues)\s+(?:a\s+|an\s+|the\s+|"
    r"new\s+)*(?:video|footage|images?|photos?|photographs?|report|statement|document|documents|data|recording)"
)
DENYING = (
    r"denied|denies|deny|denying|rejected|rejects|reject|rejecting|dismissed|dismisses|dismissing|refuted|"
    r"refutes|disputed|disputes|contested|contests|repudiated|rebutted"
)
# Sentences that deny without a denying verb: "X says the charges are false", "those numbers are not correct".
DENYING_PHRASES = re.compile(
    r"\b(?:are|is|was|were)\s+(?:false|untrue|baseless|groundless|fabricated|(?:not|n't)\s+(?:correct|"
    r"accurate|true))\b|\bflat(?:ly)? out wrong\b|\bthere is no \d|\bfake news\b|\bwithout (?:providing )?"
    r"any (?:proof|evidence)\b",
    re.I,
)
CONFIRMING = r"confirmed|confirms|confirm|confirming|corroborated|corroborates|verified|verifies"
RETRACTING = (
    r"retracted|retracts|withdrew|withdrawn|withdraws|walked back|walks back|revised down|backtracked"
)
# A negation or hedge in the few words before a verb cancels it: "did not deny", "has yet to confirm".
NEGATED = re.compile(
    r"\b(?:not|n't|never|no longer|neither|nor|yet to|declined to|refused to|refuse to|refuses to|failed to|"
    r"fails to|without|unable to|could not|cannot|can't|would not|won't|did not|has not|have not|had not)"
    r"(?:\s+\w+){0,3}\s*$",
    re.I,
)
NO_COMMENT = re.compile(
    r"\b(?:(?:has|have|had|did)\s+not\s+(?:yet\s+)?(?:comment|respond|reply|say|confirm|deny)|declined to "
    r"comment|no comment|could not be reached|did not respond|did not return)\w*",
    re.I,
)
MODALITY_CUES = [
    ("speculative", re.compile(r"\b(?:might|may|possibly|perhaps|maybe|could have|may have|might have|"
                               r"unconfirmed|speculat\w*)\b", re.I)),
    ("projected", re.compile(r"\b(?:could|will|would|expected to|expects|forecast\w*|predict\w*|projected|"
                             r"preparing to|plans? to|planning to|on track to|likely to|set to|"
                             r"in the future|next (?:week|month|year))\b", re.I)),
    ("alleged", re.compile(r"\b(?:allegedly|reportedly|purportedly|appears? to|believes?|believed|claims?|"
                           r"claimed|claiming|alleg\w+|said to be|is said to)\b", re.I)),
    ("opinion", re.compile(r"\bconcern|\btroubling\b|\bdescribed as\b|\bcalling (?:it|for)\b|"
                           r"\bcalled (?:it|the)\b",
                           re.I)),
]  # fmt: skip
EVIDENCE = [
    ("geolocation", re.compile(r"\bgeolocat\w*", re.I)),
    ("video", re.compile(r"\b(?:video|footage|television showed|tv showed|broadcast showed)\b", re.I)),
    ("image", re.compile(r"\b(?:images?|photos?|photographs?|satellite (?:imagery|pictures?))\b", re.I)),
    ("audio", re.compile(r"\b(?:audio|recording|recorded message)\b", re.I)),
    ("data", re.compile(r"\b(?:data|figures) (?:compiled|released|published)\b|\bdatabase\b", re.I)),
    ("document", re.compile(r"\b(?:(?:a|the|its|new|written|joint) (?:report|statement)|"
                            r"(?:in|issued) a (?:written )?statement|documents?|report (?:released|published|"
                            r"shows|says|notes))\b", re.I)),
]  # fmt: skip


# Any word of a denial, confirmation, retraction or refusal to comment: one search rules them all out.
SPECIAL = re.compile(
    rf"\b(?:{DENYING}|{CONFIRMING}|{RETRACTING})\b|{DENYING_PHRASES.pattern}|{NO_COMMENT.pattern}", re.I
)


@lru_cache(maxsize=64)  # a sentence with several figures asks once
def modality(sentence: str) -> str:
    """How firmly the source says it."""
    for name, pattern in MODALITY_CUES:
        if pattern.search(sentence):
            return name
    return "asserted"


@cache
def _verbs(verbs: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{verbs})\b", re.I)


def acts(sentence: str, verbs: str) -> list[re.Match[str]]:
    """The occurrences of these verbs that are not negated or hedged."""
    return [
        found
        for found in _verbs(verbs).finditer(sentence)
        if not NEGATED.search(sentence, max(0, found.start() - 40), found.start())
    ]


def negated(sentence: str, verbs: str) -> bool:
    """Whether the sentence has these verbs only negated or hedged ("did not deny", "has yet to confirm")."""
    return bool(_verbs(verbs).search(sentence)) and not acts(sentence, verbs)


def denies(sentence: str) -> bool:
    """Whether the sentence reports a denial that is not itself negated or hedged."""
    if acts(sentence, DENYING):
        return True
    found = DENYING_PHRASES.search(sentence)
    return found is not None and not NEGATED.search(sentence, max(0, found.start() - 40), found.start())


_EVIDENCE = re.compile("|".join(pattern.pattern for _, pattern in EVIDENCE), re.I)


def evidence_kind(sentence: str) -> str | None:
    """The kind of evidence a sentence cites, if any (the first in EVIDENCE's order when several)."""
    if _EVIDENCE.search(sentence) is None:  # most sentences cite nothing: one search says so
        return None
    return next((kind for kind, pattern in EVIDENCE if pattern.search(sentence)), None)
