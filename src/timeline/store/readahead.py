"""Claim rows a writer reads ahead, with its streams, for the views it will update (``views.load_for``)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from timeline.projections import ClaimRecord, EstimateKey, estimate_key

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
