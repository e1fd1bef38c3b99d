"""Headlines a reader understands, for the TimelineJS export and the viewer: a figure names what it counts,
a denial or confirmation says what it bears on, and the verb agrees with a plural source."""

from __future__ import annotations

import re
from collections.abc import Mapping

from timeline.domain.events import Quantity
from timeline.projections import TimelineEntry

# Kinds of source that speak as many ("Unnamed experts say"); an anonymous source is plural when its name
# is ("Unnamed sources say", but "An unnamed official says").
_PLURAL_KINDS = {"experts", "coalition"}
# (singular, plural) verb phrases per entry kind; denials and confirmations are worded by what they address.
_VERBS = {
    "made": ("says", "say"),
    "statement": ("says", "say"),
    "revised": ("revises its figure", "revise their figure"),
    "retracted": ("retracts its claim", "retract their claim"),
    "evidence": ("produced evidence", "produced evidence"),
    "denial_withdrawn": ("withdraws its denial", "withdraw their denial"),
}
_ADDRESSED = {
    "claim": "the claim",
    "proposition": "what the claim says happened (not its figure)",
    "figure": "the figure",
}
_ACTS = {"denied": ("denies", "deny"), "confirmed": ("confirms", "confirm")}


def figure(quantity: Quantity | None) -> str:
    """A figure as a person writes it: "about 3,000", "up to 12,000", "1,000 to 2,000"."""
    if quantity is None:
        return ""
    q = quantity
    if q.comparator in ("exactly", "about"):
        amount = f"{q.value:,}" if q.comparator == "exactly" else f"about {q.value:,}"
    elif q.comparator == "at_least":
        amount = f"at least {q.lower:,}"
    elif q.comparator == "up_to":
        amount = f"up to {q.upper:,}"
    else:
        amount = f"{q.lower:,} to {q.upper:,}"
    return f"{amount} {q.unit}"


def figure_of(quantity: Quantity, metric: str | None) -> str:
    """A figure with what it counts: "1,500 soldiers sent" for 1,500 soldiers under ``soldiers-sent``."""
    text = figure(quantity)
    if metric is None:
        return text
    words = metric.replace("-", " ").replace("_", " ")
    # The metric usually starts with the unit ("soldiers-sent" counts soldiers): say the unit once.
    if words.lower().startswith(quantity.unit.lower()):
        return text.removesuffix(quantity.unit) + words
    return f"{text} ({words})"


def plural(name: str, kind: str | None) -> bool:
    """Whether a source's name takes a plural verb: a group of experts, a coalition, "Unnamed sources"."""
    if kind in _PLURAL_KINDS:
        return True
    if kind != "anonymous":
        return False
    head = re.split(r"[(,]", name)[0].split()
    return bool(head) and head[-1].lower().endswith("s") and not head[-1].lower().endswith("ss")


def headline(entry: TimelineEntry, names: Mapping[str, str], kinds: Mapping[str, str]) -> str:
    """The entry in one line: "National Intelligence Service: 1,500 soldiers sent", "The Kremlin denies the
    claim", "Unnamed sources say"."""
    source = names[entry.source_id]
    many = plural(source, kinds.get(entry.source_id))
    if entry.kind == "made" and entry.quantity is not None:
        return f"{source}: {figure_of(entry.quantity, entry.metric)}"
    if entry.kind in _ACTS:
        verb = _ACTS[entry.kind][many]
        return f"{source} {verb} {_ADDRESSED.get(entry.addresses or 'claim', 'the claim')}"
    verb = _VERBS.get(entry.kind, (entry.kind, entry.kind))[many]
    if entry.kind == "revised" and entry.quantity is not None:
        return f"{source} {verb}: {figure_of(entry.quantity, entry.metric)}"
    return f"{source} {verb}"
