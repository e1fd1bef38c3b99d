"""Headlines a reader understands, for the TimelineJS export and the viewer: a figure names what it counts,
a denial or confirmation says what it bears on, and the verb agrees with a plural source."""

from __future__ import annotations

import re
from collections.abc import Mapping

from timeline.domain.events import Quantity, StatedDate
from timeline.domain.values import period_start
from timeline.projections import ClaimRecord, TimelineEntry

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
# The same, naming whose claim it bears on: several denials on one day must read apart.
_ADDRESSED_BY = {
    "claim": "the claim by {claimant}",
    "proposition": "what {claimant} {says} happened (not its figure)",
    "figure": "the figure given by {claimant}",
}


_BOUND = {"at_least": "at least", "more_than": "more than", "up_to": "up to", "less_than": "less than"}


def _amount(q: Quantity) -> str:
    if q.comparator in ("exactly", "about"):
        return f"{q.value:,}" if q.comparator == "exactly" else f"about {q.value:,}"
    if q.comparator in ("at_least", "more_than"):
        return f"{_BOUND[q.comparator]} {q.lower:,}"
    if q.comparator in ("up_to", "less_than"):
        return f"{_BOUND[q.comparator]} {q.upper:,}"
    return f"{q.lower:,} to {q.upper:,}"


def _horizon(q: Quantity) -> str:
    return f" by {in_words(q.horizon)}" if q.horizon else ""


def figure(quantity: Quantity | None) -> str:
    """A figure as a person writes it: "about 3,000", "more than 1,000", "1,000 to 2,000", with a
    projection's horizon ("up to 10,000 soldiers by December 2024")."""
    if quantity is None:
        return ""
    return f"{_amount(quantity)} {quantity.unit}{_horizon(quantity)}"


def figure_of(quantity: Quantity, metric: str | None) -> str:
    """A figure with what it counts: "1,500 soldiers sent" for 1,500 soldiers under ``soldiers-sent``."""
    if metric is None:
        return figure(quantity)
    words = metric.replace("-", " ").replace("_", " ")
    amount, unit = _amount(quantity), quantity.unit
    # The metric usually starts with the unit ("soldiers-sent" counts soldiers): say the unit once.
    if words.lower().startswith(unit.lower()):
        return f"{amount} {words}{_horizon(quantity)}"
    return f"{amount} {unit}{_horizon(quantity)} ({words})"


def in_words(stated: StatedDate) -> str:
    """A date to its precision as a reader says it: "23 October 2024", "the week of 14 October 2024"."""
    start = period_start(stated)
    match stated.precision:
        case "day":
            return f"{start.day} {start:%B %Y}"
        case "week":
            return f"the week of {start.day} {start:%B %Y}"
        case "month":
            return f"{start:%B %Y}"
        case _:
            return str(start.year)


def plural(name: str, kind: str | None) -> bool:
    """Whether a source's name takes a plural verb: a group of experts, a coalition, "Unnamed sources"."""
    if kind in _PLURAL_KINDS:
        return True
    if kind != "anonymous":
        return False
    head = re.split(r"[(,]", name)[0].split()
    return bool(head) and head[-1].lower().endswith("s") and not head[-1].lower().endswith("ss")


def headline(
    entry: TimelineEntry,
    names: Mapping[str, str],
    kinds: Mapping[str, str],
    claims: Mapping[str, ClaimRecord] | None = None,
) -> str:
    """The entry in one line: "National Intelligence Service: 1,500 soldiers sent", "The Kremlin denies the
    claim by NIS: 1,500 soldiers sent" (whose claim when ``claims`` holds it), "Unnamed sources say"."""
    source = names[entry.source_id]
    many = plural(source, kinds.get(entry.source_id))
    if entry.kind == "made" and entry.quantity is not None:
        return f"{source}: {figure_of(entry.quantity, entry.metric)}"
    record = (claims or {}).get(entry.claim_id) if entry.claim_id is not None else None
    if entry.kind in _ACTS:
        verb = _ACTS[entry.kind][many]
        addressed = entry.addresses or "claim"
        if record is None:
            return f"{source} {verb} {_ADDRESSED.get(addressed, 'the claim')}"
        return f"{source} {verb} {_whose(record, addressed, names, kinds)}"
    verb = _VERBS.get(entry.kind, (entry.kind, entry.kind))[many]
    if entry.kind == "revised" and entry.quantity is not None:
        return f"{source} {verb}: {figure_of(entry.quantity, entry.metric)}"
    if entry.kind == "denial_withdrawn" and record is not None:
        return f"{source} {verb} of {_whose(record, 'claim', names, kinds)}"
    return f"{source} {verb}"


def _whose(record: ClaimRecord, addressed: str, names: Mapping[str, str], kinds: Mapping[str, str]) -> str:
    """What a denial, confirmation or withdrawal bears on, naming the claim's source and figure."""
    claim = record.claim
    claimant = names.get(claim.source_id, claim.source_id)
    says = "say" if plural(claimant, kinds.get(claim.source_id)) else "says"
    words = _ADDRESSED_BY.get(addressed, _ADDRESSED_BY["claim"]).format(claimant=claimant, says=says)
    if addressed != "proposition" and claim.quantity is not None:
        words += f": {figure_of(claim.quantity, claim.metric)}"
    return words
