"""Cuts that start from a snapshot: a claim as a snapshot keeps it (``Folded``), the views a snapshot's
claims show (``Base``, made once per decoded snapshot), and the few changes a cut makes to a copy of them.

A hot subject has thousands of claims and a cut changes a few hundred: the rest are taken from the base
as they are, and an estimate key is ranked again from the claims that changed under it and the best one
that did not (kept in rank order), not from every claim under it. Pure, like ``timetravel``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import msgspec

from timeline.domain import claims as rules
from timeline.domain.claims import Claim, ClaimEvent
from timeline.projections import (
    ClaimRecord,
    EstimateKey,
    TimelineEntry,
    Views,
    estimate_key,
    latest_in,
    ranked_in,
    timeline_entry,
)
from timeline.ranking import SLOTS


class Folded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A claim as a snapshot keeps it: its state (no history), its timeline entries, the version of its
    stream folded, and the first day of the latest period any of those events was stated in (as corrected)."""

    record: ClaimRecord
    entries: dict[int, TimelineEntry | None]  # by position (a correction's is None, as in ``apply``)
    version: int
    latest: dt.date | None


class Base(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot's claims, the views they show as they are (nothing on top, no valid-time cut), and under
    each estimate key the ids of its live figures in each slot, highest rank first. Shared: only read."""

    claims: Mapping[str, Folded]
    views: Views
    ranked: dict[EstimateKey, tuple[tuple[str, ...], ...]]


def base(claims: Mapping[str, Folded]) -> Base:
    """What a cut from a snapshot of these claims starts from: the views they show as they are (as
    ``timetravel.views_at`` folds them with nothing on top), ranked once (made once per decoded snapshot)."""
    views = Views(indexed=True)
    for kept in claims.values():
        resume(views, kept, [])
    ranked: dict[EstimateKey, tuple[tuple[str, ...], ...]] = {}
    for key, members in views.by_key.items():
        records = [views.claims[c] for c in members]
        asserted, projected = ranked[key] = tuple(
            tuple(r.claim.claim_id for r in ranked_in(records, slot)) for slot in SLOTS
        )
        views.estimates[key] = (asserted[0] if asserted else None, projected[0] if projected else None)
    return Base(claims=claims, views=views, ranked=ranked)


Touched = dict[EstimateKey, set[str]]  # the claims that changed under each estimate key, by key


def touch(touched: Touched, claim: Claim) -> None:
    """Note that the claim changed under its estimate key (if it has one)."""
    if (key := estimate_key(claim)) is not None:
        touched.setdefault(key, set()).add(claim.claim_id)


def _forget(views: Views, start: Folded, touched: Touched) -> None:
    """Take a claim of the base out of the views (its state, entries and estimate key)."""
    claim = start.record.claim
    del views.claims[claim.claim_id]
    for at in start.entries:
        del views.timeline[at]
    if (key := estimate_key(claim)) is not None:
        members = views.by_key[key]
        members.discard(claim.claim_id)
        if not members:
            del views.by_key[key]
        touched.setdefault(key, set()).add(claim.claim_id)


def from_base(
    views: Views,
    start: Base,
    kept: Mapping[str, Folded | None],
    later: Mapping[str, object],
    touched: Touched,
) -> list[str]:
    """Fill ``views`` with a copy of the base's less every claim the cut shows otherwise (taken as of
    another valid time, with events after the snapshot in ``later``, refolded, or not made yet: ``kept``
    holds only claims of the base). Returns the kept claims to put back (``resume``)."""
    views.claims = dict(start.views.claims)
    views.timeline = dict(start.views.timeline)
    views.by_key = {key: set(members) for key, members in start.views.by_key.items()}
    views.estimates = dict(start.views.estimates)
    back: list[str] = []
    for claim_id, state in start.claims.items():
        now = kept.get(claim_id)
        if now is state and claim_id not in later:
            continue
        _forget(views, state, touched)
        if now is not None:
            back.append(claim_id)
    return back


def resume(views: Views, start: Folded, pairs: list[tuple[int, ClaimEvent]]) -> None:
    """A kept claim with the events after its snapshot folded on top (none of them a correction)."""
    claim = start.record.claim
    record = start.record
    if pairs:
        for _, event in pairs:
            claim = rules.evolve(claim, event)
        claim = msgspec.structs.replace(claim, recorded=())
        record = ClaimRecord(claim=claim, made_position=record.made_position, updated_position=pairs[-1][0])
    views.claims[claim.claim_id] = record
    if (key := estimate_key(claim)) is not None:
        views.by_key.setdefault(key, set()).add(claim.claim_id)
    views.timeline.update(start.entries)
    for at, event in pairs:
        views.timeline[at] = timeline_entry(at, event, claim)


def rank(views: Views, start: Base, touched: Touched) -> None:
    """The estimates of each key under which claims changed: per slot, the best of the changed claims
    now under it and of the unchanged ones, whose best is the first unchanged id in the base's order."""
    changed = set().union(*touched.values())
    for key, ids in touched.items():
        if (members := views.by_key.get(key)) is None:
            views.estimates.pop(key, None)
            continue
        now = [views.claims[c] for c in ids if c in members]
        chosen: list[str | None] = []
        for slot, order in zip(SLOTS, start.ranked.get(key, ((), ())), strict=True):
            best = next((c for c in order if c not in changed), None)
            found = latest_in(now if best is None else [*now, views.claims[best]], slot)
            chosen.append(found.claim.claim_id if found else None)
        views.estimates[key] = (chosen[0], chosen[1])
