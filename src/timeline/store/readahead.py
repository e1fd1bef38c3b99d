"""Claim rows a writer reads ahead, with its streams, for the views it will update (``views.load_for``)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from timeline.projections import ClaimRecord, EstimateKey, Views, estimate_key

NO_CHOICE: tuple[str | None, str | None] = (None, None)
# The part of ``driver.claims_for``'s rows (and of those read ahead) naming the claim chosen under a key.
CHOSEN = 2
_claim_decoder = msgspec.json.Decoder(ClaimRecord)


class ReadAhead:
    """Claim rows a writer read with its streams, in the same query (``eventlog.read_for_write``), so that
    ``load_for`` asks only for the rest: the rows of ``ids`` (an id without one: no claim yet) and the claims
    chosen under ``keys`` and under those claims' own keys. Valid until the transaction writes claims."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.keys: set[EstimateKey] = set()
        self._rows: list[tuple[int, ClaimRecord]] = []

    def add(
        self, ids: Iterable[str], keys: Iterable[EstimateKey], rows: Iterable[tuple[int, str, str]]
    ) -> None:
        """Rows (part, claim id, state) read for these ids and keys (parts as ``driver.claims_for``'s)."""
        self.ids.update(ids)
        self.keys.update(keys)
        for part, _, state in rows:
            record = _claim_decoder.decode(state)
            self._rows.append((part, record))
            if part != CHOSEN and (key := estimate_key(record.claim)) is not None:
                self.keys.add(key)

    def take(
        self, ids: set[str], light: set[EstimateKey]
    ) -> tuple[list[tuple[int, str, ClaimRecord | str]], set[str], set[EstimateKey]]:
        """The rows read ahead that answer ``ids`` and ``light``, and the ids and keys left to ask for."""
        covered = light & self.keys
        rows: list[tuple[int, str, ClaimRecord | str]] = [
            (part, r.claim.claim_id, r)
            for part, r in self._rows
            if (estimate_key(r.claim) in covered if part == CHOSEN else r.claim.claim_id in ids)
        ]
        return rows, ids - self.ids, light - covered


class ChosenKept(ReadAhead):
    """What a fold (``refold.fold``) knows between its batches of what is chosen under each estimate key: the
    chosen claims' ids and, of each, what ranks it (``rank_only``), as the fold's own writes left them. Each
    batch of a rebuild touches most keys and so needed their chosen claims, read and decoded again batch
    after batch (1.5 rows an event at 1,000,000 events); kept here, only the claims the events name are read
    (always from the database: what is kept of a claim is not enough to fold it on). Valid while only this
    fold writes the views (a rebuild's shadows, or the catch-up holding the write lock)."""

    # Claims kept before the whole is dropped (it is rebuilt as batches go on).
    LIMIT = 50_000

    def __init__(self) -> None:
        super().__init__()
        self._chosen: dict[EstimateKey, tuple[str | None, str | None]] = {}
        self._records: dict[str, ClaimRecord] = {}

    def take(
        self, ids: set[str], light: set[EstimateKey]
    ) -> tuple[list[tuple[int, str, ClaimRecord | str]], set[str], set[EstimateKey]]:
        """The chosen claims kept under the keys of ``light``, and the ids (all of them) and keys left to ask
        for. ``load_for`` reads the claims its events name before any chosen claim, so a claim kept here
        is never the one an event is folded on."""
        rows: list[tuple[int, str, ClaimRecord | str]] = []
        covered = {key for key in light if key in self._chosen}
        for key in covered:
            rows.extend((CHOSEN, c, self._records[c]) for c in self._chosen[key] if c is not None)
        return rows, ids, light - covered

    def keep(self, views: Views) -> None:
        """Take in what a batch of the fold left: the claims chosen under every key it knows, and the new
        state of every claim it changed that is kept."""
        if len(self._records) > self.LIMIT:
            self._chosen.clear()
            self._records.clear()
        for claim_id in views.changed_claims:
            if claim_id in self._records:
                self._records[claim_id] = rank_only(views.claims[claim_id])
        # Claims no longer chosen go (kept, those ever chosen reached ~100 MB at 1,000,000 events); all
        # of them before any is taken in, as a claim that moved leaves one key's figures for another's.
        for key, chosen in views.estimates.items():
            for held in self._chosen.get(key, NO_CHOICE):
                if held is not None and held not in chosen:
                    self._records.pop(held, None)
        for key, chosen in views.estimates.items():
            self._chosen[key] = chosen
            for held in chosen:
                if held is not None and held not in self._records:
                    self._records[held] = rank_only(views.claims[held])


def rank_only(record: ClaimRecord) -> ClaimRecord:
    """The record with only what ranks it as an estimate and places it under its key (its denials,
    confirmations, evidence and history dropped: a few hundred bytes instead of a few KB)."""
    claim = msgspec.structs.replace(
        record.claim,
        statement="",
        document_ids=(),
        disputed_by=(),
        confirmed_by=(),
        revisions=(),
        denials=(),
        confirmations=(),
        evidence=(),
        corrections=(),
        recorded=(),
        withdrawals=(),
        occurred=None,
    )
    return ClaimRecord(
        claim=claim, made_position=record.made_position, updated_position=record.updated_position
    )
