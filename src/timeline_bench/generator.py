"""Synthetic but realistic logs: many subjects and sources, claims with figures, and a mix of revisions,
denials, confirmations, evidence and corrections. Deterministic for a seed."""

from __future__ import annotations

import random
from collections.abc import Iterator

from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRevised,
    CorrectedFields,
    DocumentRegistered,
    DomainEvent,
    EvidenceAttached,
    Quantity,
    RecordCorrected,
    SourceRegistered,
    StatedDate,
    SubjectRegistered,
)


def _date(rng: random.Random) -> StatedDate:
    return StatedDate(date=f"2024-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}", precision="day")


def generate(events: int, *, subjects: int = 200, sources: int = 100, seed: int = 7) -> Iterator[DomainEvent]:
    """About ``events`` events: registrations first, then 45% claims made, 20% revisions, 15% denials,
    8% confirmations, 7% evidence and 5% corrections; subject-0 gets 1.1% of the claims, the others share
    the rest."""
    rng = random.Random(seed)
    yield DocumentRegistered(
        document_id="bench-doc", title="Bench", published_on=StatedDate(date="2024", precision="year")
    )
    for s in range(subjects):
        yield SubjectRegistered(subject_id=f"subject-{s}", name=f"Subject {s}")
    for s in range(sources):
        yield SourceRegistered(source_id=f"source-{s}", name=f"Source {s}", kind="agency")
    made: list[tuple[str, str, int]] = []  # claim id, its source, its version
    docs = ("bench-doc",)
    produced = 1 + subjects + sources
    while produced < events:
        roll = rng.random()
        if roll < 0.45 or len(made) < 10:
            claim_id = f"c{len(made)}"
            source = f"source-{rng.randrange(sources)}"
            yield ClaimMade(
                claim_id=claim_id,
                # subject-0 is hot (1.1% of claims, so over 10,000 timeline entries in a log of 1,000,000):
                # time travel is measured on it.
                subject_id=f"subject-{0 if rng.random() < 0.011 else rng.randrange(1, subjects)}",
                source_id=source,
                statement="Some figure was given.",
                modality="asserted",
                stated_on=_date(rng),
                document_ids=docs,
                metric="soldiers",
                quantity=Quantity(comparator="about", value=rng.randrange(100, 20000), unit="soldiers"),
            )
            made.append((claim_id, source, 1))
        else:
            index = rng.randrange(len(made))
            claim_id, source, version = made[index]
            other = f"source-{(int(source.split('-')[1]) + 1 + rng.randrange(sources - 1)) % sources}"
            tag = f"e{produced}"
            event: DomainEvent
            if roll < 0.65:
                event = ClaimRevised(
                    claim_id=claim_id,
                    revision_id=tag,
                    statement="A new figure.",
                    stated_on=_date(rng),
                    document_ids=docs,
                    quantity=Quantity(comparator="about", value=rng.randrange(100, 20000), unit="soldiers"),
                )
            elif roll < 0.80:
                event = ClaimDenied(
                    claim_id=claim_id,
                    denial_id=tag,
                    denied_by=other,
                    statement="No.",
                    stated_on=_date(rng),
                    document_ids=docs,
                )
            elif roll < 0.88:
                event = ClaimConfirmed(
                    claim_id=claim_id,
                    confirmation_id=tag,
                    confirmed_by=other,
                    statement="Yes.",
                    stated_on=_date(rng),
                    document_ids=docs,
                )
            elif roll < 0.95:
                event = EvidenceAttached(
                    claim_id=claim_id,
                    evidence_id=tag,
                    kind="video",
                    produced_by=other,
                    description="A video.",
                    stated_on=_date(rng),
                    document_ids=docs,
                )
            else:
                event = RecordCorrected(
                    claim_id=claim_id,
                    correction_id=tag,
                    corrects_version=1,
                    changes=CorrectedFields(statement="Corrected wording."),
                    reason="typo",
                )
            made[index] = (claim_id, source, version + 1)
            yield event
        produced += 1
