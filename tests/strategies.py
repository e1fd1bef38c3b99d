"""Hypothesis strategies for random but well-formed claim commands, shared by the property tests."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import strategies as st

from timeline.domain.events import (
    ClaimConfirmed,
    ClaimDenied,
    ClaimMade,
    ClaimRetracted,
    ClaimRevised,
    CorrectedFields,
    DenialWithdrawn,
    EvidenceAttached,
    Quantity,
    RecordCorrected,
    SourceAmended,
    StatedDate,
    StatementMade,
    SubjectAmended,
)

SOURCES = ["a", "b", "c"]
SUBJECTS = ["s1"]
CLAIMS = [f"c{i}" for i in range(6)]

dates = st.builds(
    lambda y, m, d, p: StatedDate(
        date={"day": f"{y}-{m:02}-{d:02}", "month": f"{y}-{m:02}", "year": f"{y}"}[p], precision=p
    ),
    st.integers(2022, 2025),
    st.integers(1, 12),
    st.integers(1, 28),
    st.sampled_from(["day", "month", "year"]),
)
quantities = st.builds(
    lambda v, c: Quantity(comparator=c, unit="soldiers", **({"upper": v} if c == "up_to" else {"value": v})),
    st.integers(0, 20_000),
    st.sampled_from(["exactly", "about", "up_to"]),
)
ids = st.text("xyz", min_size=1, max_size=3)
addresses = st.sampled_from(["claim", "proposition", "figure"])


@st.composite
def made(draw: st.DrawFn) -> ClaimMade:
    quantity = draw(st.none() | quantities)
    return ClaimMade(
        claim_id=draw(st.sampled_from(CLAIMS)),
        subject_id=draw(st.sampled_from(SUBJECTS)),
        source_id=draw(st.sampled_from(SOURCES)),
        statement="said",
        modality=draw(st.sampled_from(["asserted", "projected"])),
        stated_on=draw(dates),
        document_ids=("d",),
        metric=None if quantity is None else draw(st.sampled_from(["m1", "m2"])),
        quantity=quantity,
    )


corrections = st.builds(
    lambda c, r, v, changes: RecordCorrected(
        claim_id=c, correction_id=r, corrects_version=v, changes=changes, reason="typo"
    ),
    st.sampled_from(CLAIMS),
    ids,
    st.integers(1, 6),
    st.one_of(
        st.builds(CorrectedFields, quantity=quantities),
        st.builds(CorrectedFields, stated_on=dates),
        st.builds(CorrectedFields, source_id=st.sampled_from(SOURCES)),
        st.builds(CorrectedFields, metric=st.sampled_from(["m1", "m2"])),
        st.builds(CorrectedFields, statement=st.just("corrected")),
    ),
)

retractions = st.builds(
    lambda c, r, d: ClaimRetracted(
        claim_id=c, retraction_id=r, statement="withdrawn", stated_on=d, document_ids=("d",)
    ),
    st.sampled_from(CLAIMS),
    ids,
    dates,
)

# One claim command of any kind.
command = st.one_of(
    made(),
    st.builds(
        lambda c, r, q, d: ClaimRevised(
            claim_id=c, revision_id=r, statement="revised", stated_on=d, document_ids=("d",), quantity=q
        ),
        st.sampled_from(CLAIMS),
        ids,
        st.none() | quantities,
        dates,
    ),
    st.builds(
        lambda c, r, by, d, a: ClaimDenied(
            claim_id=c,
            denial_id=r,
            denied_by=by,
            statement="no",
            stated_on=d,
            document_ids=("d",),
            addresses=a,
        ),
        st.sampled_from(CLAIMS),
        ids,
        st.sampled_from(SOURCES),
        dates,
        addresses,
    ),
    # Withdrawals name one-letter denials, so some find theirs (and some are refused).
    st.builds(
        lambda c, r, x, by, d: DenialWithdrawn(
            claim_id=c,
            withdrawal_id=r,
            denial_id=x,
            withdrawn_by=by,
            statement="we withdraw",
            stated_on=d,
            document_ids=("d",),
        ),
        st.sampled_from(CLAIMS),
        ids,
        st.sampled_from(["x", "y", "z"]),
        st.sampled_from(SOURCES),
        dates,
    ),
    st.builds(
        lambda r, by, d: StatementMade(
            subject_id="s1", statement_id=r, source_id=by, statement="spoke", stated_on=d, document_ids=("d",)
        ),
        ids,
        st.sampled_from(SOURCES),
        dates,
    ),
    st.builds(
        lambda c, r, by, d, a: ClaimConfirmed(
            claim_id=c,
            confirmation_id=r,
            confirmed_by=by,
            statement="yes",
            stated_on=d,
            document_ids=("d",),
            addresses=a,
        ),
        st.sampled_from(CLAIMS),
        ids,
        st.sampled_from(SOURCES),
        dates,
        addresses,
    ),
    st.builds(
        lambda c, r, by, d: EvidenceAttached(
            claim_id=c,
            evidence_id=r,
            kind="video",
            produced_by=by,
            description="shows",
            stated_on=d,
            document_ids=("d",),
        ),
        st.sampled_from(CLAIMS),
        ids,
        st.sampled_from(SOURCES),
        dates,
    ),
    corrections,
    st.builds(
        lambda c, r, d: ClaimRetracted(
            claim_id=c, retraction_id=r, statement="withdrawn", stated_on=d, document_ids=("d",)
        ),
        st.sampled_from(CLAIMS),
        ids,
        dates,
    ),
)
# A denial and, later in the same list, its source withdrawing it (a withdrawal drawn alone rarely finds one).
denied_then_withdrawn = st.builds(
    lambda c, r, by, d, a: [
        ClaimDenied(
            claim_id=c,
            denial_id=r,
            denied_by=by,
            statement="no",
            stated_on=d,
            document_ids=("d",),
            addresses=a,
        ),
        DenialWithdrawn(
            claim_id=c,
            withdrawal_id=f"w{r}",
            denial_id=r,
            withdrawn_by=by,
            statement="we withdraw",
            stated_on=d,
            document_ids=("d",),
        ),
    ],
    st.sampled_from(CLAIMS),
    ids,
    st.sampled_from(SOURCES),
    dates,
    addresses,
)
commands = st.lists(command.map(lambda e: [e]) | denied_then_withdrawn, max_size=25).map(
    lambda parts: [e for part in parts for e in part]
)


# Wider logs: several subjects, corrections that move a claim to another subject, and amendments of the
# subjects and sources the claims name (which change the registrations view).
SEVERAL_SUBJECTS = ["s1", "s2", "s3"]


@st.composite
def made_on_any_subject(draw: st.DrawFn) -> ClaimMade:
    event = draw(made())
    return msgspec.structs.replace(event, subject_id=draw(st.sampled_from(SEVERAL_SUBJECTS)))


moving_corrections = st.builds(
    lambda c, r, v, s: RecordCorrected(
        claim_id=c,
        correction_id=r,
        corrects_version=v,
        changes=CorrectedFields(subject_id=s),
        reason="wrong subject",
    ),
    st.sampled_from(CLAIMS),
    ids,
    st.just(1) | st.integers(1, 4),
    st.sampled_from(SEVERAL_SUBJECTS),
)

amendments = st.one_of(
    st.builds(
        lambda s, n: SubjectAmended(subject_id=s, name=n),
        st.sampled_from(SEVERAL_SUBJECTS),
        st.sampled_from(["Renamed", "Renamed again"]),
    ),
    st.builds(
        lambda s, n: SourceAmended(source_id=s, name=n),
        st.sampled_from(SOURCES),
        st.sampled_from(["Agency", "Ministry"]),
    ),
    st.builds(
        lambda s, p: SourceAmended(source_id=s, part_of=p),
        st.sampled_from(SOURCES),
        st.sampled_from(SOURCES),
    ),
)

wide_commands = st.lists(
    st.one_of(made_on_any_subject(), moving_corrections, amendments, command), max_size=20
)


# Estimates that must not depend on recording order: one subject and metric, a few sources, a handful of
# dates that collide (the same day, the month it falls in, its year), assertions and projections.
TIE_DATES = [
    StatedDate(date="2024-10-21", precision="day"),
    StatedDate(date="2024-10", precision="month"),
    StatedDate(date="2024-10-01", precision="day"),
    StatedDate(date="2024", precision="year"),
]
tie_quantities = st.builds(
    lambda v, c: Quantity(
        comparator=c,
        unit="soldiers",
        **({"value": v} if c in ("exactly", "about") else {"lower": v} if c == "more_than" else {"upper": v}),
    ),
    st.integers(0, 20_000),
    st.sampled_from(["exactly", "about", "more_than", "less_than", "up_to"]),
)


@st.composite
def tied_claim(
    draw: st.DrawFn, claim_id: str
) -> list[ClaimMade | ClaimRevised | ClaimDenied | ClaimRetracted]:
    """A claim's whole stream: made, then perhaps revised, denied, confirmed or retracted (in that order)."""
    modality = draw(st.sampled_from(["asserted", "projected", "alleged"]))
    quantity = draw(tie_quantities)
    if modality == "projected" and draw(st.booleans()):
        quantity = msgspec.structs.replace(quantity, horizon=StatedDate(date="2024-12", precision="month"))
    source = draw(st.sampled_from(SOURCES[:2]))
    stream: list[ClaimMade | ClaimRevised | ClaimDenied | ClaimRetracted] = [
        ClaimMade(
            claim_id=claim_id,
            subject_id="s1",
            source_id=source,
            statement="said",
            modality=modality,
            stated_on=draw(st.sampled_from(TIE_DATES)),
            document_ids=("d",),
            metric="m1",
            quantity=quantity,
        )
    ]
    for step in draw(st.lists(st.sampled_from(["revise", "deny", "retract"]), max_size=2, unique=True)):
        on = draw(st.sampled_from(TIE_DATES))
        if step == "revise":
            stream.append(
                ClaimRevised(
                    claim_id=claim_id, revision_id=f"{claim_id}-r", statement="revised", stated_on=on,
                    document_ids=("d",), quantity=draw(st.none() | tie_quantities),
                    modality=draw(st.none() | st.sampled_from(["asserted", "projected", "alleged"])),
                )
            )  # fmt: skip
        elif step == "deny":
            stream.append(
                ClaimDenied(
                    claim_id=claim_id, denial_id=f"{claim_id}-d", denied_by="c", statement="no", stated_on=on,
                    document_ids=("d",),
                )
            )  # fmt: skip
        else:
            stream.append(
                ClaimRetracted(
                    claim_id=claim_id, retraction_id=f"{claim_id}-x", statement="withdrawn", stated_on=on,
                    document_ids=("d",),
                )
            )  # fmt: skip
    return stream


@st.composite
def interleavings(
    draw: st.DrawFn,
) -> tuple[list[list[ClaimMade | ClaimRevised | ClaimDenied | ClaimRetracted]], list[int], list[int]]:
    """Claims' streams and two orders to record them in: each order interleaves the streams differently
    (a claim's own events keep their order, as its stream requires)."""
    streams = [draw(tied_claim(f"t{i}")) for i in range(draw(st.integers(2, 6)))]
    owners = [i for i, stream in enumerate(streams) for _ in stream]
    return streams, draw(st.permutations(owners)), draw(st.permutations(owners))


def interleave(streams: list[list[Any]], owners: list[int]) -> list[Any]:
    """The streams' events in the order ``owners`` names their streams (each stream's own order kept)."""
    taken = [0] * len(streams)
    out = []
    for i in owners:
        out.append(streams[i][taken[i]])
        taken[i] += 1
    return out
