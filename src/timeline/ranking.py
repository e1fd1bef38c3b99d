"""Which of a source's figures is its latest word: the key a claim is an estimate under, its rank there,
whether an event can have lowered it, and the best figures of claims counted one by one in their final
states (a rebuild's). Pure functions of the domain's ``Claim``, shared by the views' fold
(``projections``), the store's loading of the rows a fold needs, the rebuild, and time travel.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from timeline.domain.claims import Claim
from timeline.domain.values import period_start

Slot = Literal["asserted", "projected"]
SLOTS: tuple[Slot, Slot] = ("asserted", "projected")


def slot_of(claim: Claim) -> Slot:
    """Which of a source's two figures a claim can be: a projection, or (any other modality) asserted."""
    return "projected" if claim.modality == "projected" else "asserted"


# The tie rule, after the stated date's first day: a finer date (a day over a month), then the figure's
# kind (its modality: asserted over alleged over opinion over speculative), then the claim id (the one
# that sorts last). Nothing here depends on the order events were recorded in.
_PRECISION_RANK = {"year": 0, "month": 1, "week": 2, "day": 3}
_KIND_RANK = {"speculative": 0, "opinion": 1, "alleged": 2, "asserted": 3, "projected": 3}
Rank = tuple[dt.date, int, int, str]


# The first day and precision rank of each stated date (a fold ranks claims several times an event, and
# parsing the date was most of it); dates repeat, and it is emptied should it ever pass the bound.
_DATED: dict[tuple[str, str], tuple[dt.date, int]] = {}


def estimate_rank(claim: Claim) -> Rank:
    """How recent a figure is among its source's: the higher, the more it is the source's latest word."""
    stated = claim.stated_on
    if (dated := _DATED.get((stated.date, stated.precision))) is None:
        if len(_DATED) >= 100_000:
            _DATED.clear()
        dated = _DATED[stated.date, stated.precision] = (
            period_start(stated),
            _PRECISION_RANK[stated.precision],
        )
    return (dated[0], dated[1], _KIND_RANK[claim.modality], claim.claim_id)


def rank_can_drop(before: Claim | None, after: Claim) -> bool:
    """Whether an event that turned ``before`` into ``after`` can have lowered the claim's rank as an
    estimate (then every claim under its key must be looked at again, not just the one chosen)."""
    if before is None or not live(before):
        return False  # it was no candidate: whatever it is now, it can only have risen
    if not live(after) or slot_of(after) != slot_of(before):
        return True  # retracted, its figure withdrawn, or it left its slot
    return estimate_rank(after) < estimate_rank(before)


def live(claim: Claim) -> bool:
    """Whether a claim holds a figure its source still stands by (not retracted, a quantity given)."""
    return claim.status != "retracted" and claim.quantity is not None


EstimateKey = tuple[str, str, str]  # (subject_id, metric, source_id)
# The two figures kept per key: what the source asserts now, and what it projects (a projection never
# displaces an assertion). ``Chosen`` holds their claim ids, in that order; (None, None): no live figure.
Chosen = tuple[str | None, str | None]
NO_FIGURE: Chosen = (None, None)


def estimate_key(claim: Claim) -> EstimateKey | None:
    """The (subject, metric, source) an estimate is kept for, or None for a claim without a figure."""
    if claim.metric is None:
        return None
    return (claim.subject_id, claim.metric, claim.source_id)


# The best live figure per estimate key and slot so far, as (rank, claim id): all ``rank_final`` keeps.
Best = dict[EstimateKey, list[tuple[Rank, str] | None]]


def rank_final(best: Best, claim: Claim) -> None:
    """Count a claim, in its final state, among its key's candidates: the chosen figure of a slot is the live
    claim of highest ``estimate_rank`` (``latest_in``), whatever order the claims come in."""
    if (key := estimate_key(claim)) is None or not live(claim):
        return
    slots = best.setdefault(key, [None, None])
    index = SLOTS.index(slot_of(claim))
    rank = estimate_rank(claim)
    held = slots[index]
    if held is None or rank > held[0]:
        slots[index] = (rank, claim.claim_id)


def chosen_of(best: Best) -> dict[EstimateKey, Chosen]:
    """The estimates ``rank_final`` found: per key, the ids of the chosen asserted and projected figures."""
    return {
        key: (slots[0][1] if slots[0] else None, slots[1][1] if slots[1] else None)
        for key, slots in best.items()
    }
