"""Drafting a fixture from an article's text: attributed claims, figures, denials, confirmations, evidence
and dates, found by rules sentence by sentence, every entry marked for an editor's review. Pure: no I/O.

The rules are deliberately simple and explainable (a reporting verb next to a source, a number with its
comparator); they propose, the editor decides. What they cannot do: coreference beyond "he/she said",
nested reported speech, sarcasm. `python -m timeline.drafting.evaluate` scores them on a hand-annotated
corpus (docs/drafting.md).

Modules: text (bytes to sentences), numbers (figures), dates, cues (verbs, negation, modality, evidence),
sources (who says it), assemble (the pass that builds the fixture), evaluate (the scoring).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import yaml

from timeline.drafting.assemble import Draft, KnownClaim, draft
from timeline.drafting.cues import modality
from timeline.drafting.dates import stated_on
from timeline.drafting.numbers import figure, figures, number
from timeline.drafting.sources import KnownSource, slug
from timeline.drafting.text import article_text, decode, looks_english, sentences

__all__ = [
    "Draft",
    "KnownClaim",
    "KnownSource",
    "article_date",
    "article_text",
    "decode",
    "draft",
    "figure",
    "figures",
    "looks_english",
    "modality",
    "number",
    "sentences",
    "slug",
    "stated_on",
    "to_yaml",
]


def article_date(raw: str, given: str | None) -> tuple[dt.date | None, str]:
    """The article's date (given, or a leading "date YYYY-MM-DD" line) and the text without that line."""
    found = re.match(r"\s*date (\d{4}-\d{2}-\d{2})\s+", raw)
    if found:
        raw = raw[found.end() :]
    text = given or (found.group(1) if found else None)
    return (dt.date.fromisoformat(text) if text else None), raw


def to_yaml(fixture: dict[str, Any]) -> str:
    """A draft as YAML, with a header telling the editor what to do (and the drafter's notes, if any)."""
    header = (
        "# A DRAFT proposed by `timeline draft` from the article's text. Check every entry against its\n"
        "# sentence (draft.sentence, draft.span), fix ids, sources, figures and targets, then set\n"
        "# draft.review to false (or remove draft) before importing. Entries still marked are refused.\n"
    )
    for note in getattr(fixture, "notes", []):
        header += f"# NOTE: {note}\n"
    header += "# yaml-language-server: $schema=./schema.json\n"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return header + yaml.dump(dict(fixture), Dumper=dumper, sort_keys=False, allow_unicode=True, width=110)
