"""Stream ids and the streams an event names, spelled in one module (pure: no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline.activity import activity_counts
from timeline.domain import streams
from timeline.domain.events import (
    ClaimDenied,
    ClaimMade,
    ClaimRevised,
    CorrectedFields,
    DocumentRegistered,
    DomainEvent,
    RecordCorrected,
    SourceAmended,
    StatedDate,
)

from . import strategies

DAY = StatedDate(date="2024-10-21", precision="day")


def _made() -> ClaimMade:
    return ClaimMade(
        claim_id="c1",
        subject_id="s",
        source_id="nis",
        statement="1,500 soldiers",
        modality="asserted",
        stated_on=DAY,
        document_ids=("d1", "d2"),
    )


def test_each_event_belongs_to_the_stream_of_what_it_is_about() -> None:
    assert streams.stream_of(_made()) == "claim-c1"
    assert streams.stream_of(SourceAmended(source_id="nis", name="NIS")) == "source-nis"
    document = DocumentRegistered(document_id="d1", title="t", published_on=DAY)
    assert streams.stream_of(document) == "document-d1"


def test_a_stream_id_reads_back_as_its_kind_and_id() -> None:
    assert streams.parse(streams.subject_stream("dprk-troops")) == ("subject", "dprk-troops")
    assert streams.parse("claim-a-b") == ("claim", "a-b")  # ids may hold dashes
    with pytest.raises(ValueError, match="not a stream id"):
        streams.parse("event-3")


def test_a_claim_names_its_subject_source_and_documents_but_a_revision_only_its_documents() -> None:
    assert streams.references(_made()) == {"subject-s", "source-nis", "document-d1", "document-d2"}
    revised = ClaimRevised(claim_id="c1", revision_id="r", statement="x", stated_on=DAY, document_ids=("d3",))
    assert streams.references(revised) == {"document-d3"}
    # A registration's own stream is not a reference it needs first.
    assert streams.references(SourceAmended(source_id="nis", name="NIS")) == set()


def test_a_correction_names_the_source_and_subject_it_moves_the_claim_to() -> None:
    moved = RecordCorrected(
        claim_id="c1",
        correction_id="x",
        corrects_version=1,
        changes=CorrectedFields(source_id="kremlin", subject_id="other"),
        reason="wrong source",
    )
    assert streams.sources_named(moved) == ["kremlin"]
    assert streams.references(moved) == {"source-kremlin", "subject-other"}
    # The source a correction names is not counted as that source's activity.
    assert activity_counts(moved) == []


def test_a_denial_names_the_denier_and_counts_for_it() -> None:
    denial = ClaimDenied(
        claim_id="c1", denial_id="d", denied_by="kremlin", statement="no", stated_on=DAY, document_ids=()
    )
    assert streams.source_roles(denial) == [("kremlin", "denier")]
    assert activity_counts(denial) == [("kremlin", "denials")]
    assert activity_counts(_made()) == [("nis", "claims_made")]


def test_what_an_event_names_comes_with_the_field_an_error_points_at() -> None:
    assert streams.named_fields(_made()) == [
        ("subject", "s", "subject"),
        ("source", "nis", "source"),
        ("document", "d1", "documents[0]"),
        ("document", "d2", "documents[1]"),
    ]
    moved = RecordCorrected(
        claim_id="c1",
        correction_id="x",
        corrects_version=1,
        changes=CorrectedFields(source_id="kremlin", subject_id="other"),
        reason="wrong source",
    )
    assert streams.named_fields(moved) == [
        ("source", "kremlin", "changes.source_id"),
        ("subject", "other", "changes.subject_id"),
    ]
    related = SourceAmended(source_id="nis", name="NIS", part_of="rok", speaks_for="gov")
    assert streams.named_fields(related) == [("source", "rok", "part_of"), ("source", "gov", "speaks_for")]


_related = st.builds(
    SourceAmended,
    source_id=st.sampled_from(strategies.SOURCES),
    part_of=st.none() | st.sampled_from(strategies.SOURCES),
    speaks_for=st.none() | st.sampled_from(strategies.SOURCES),
)


@given(strategies.command | _related)
def test_the_named_fields_are_the_references(event: DomainEvent) -> None:
    named = {streams.stream_id(kind, ident) for kind, ident, _ in streams.named_fields(event)}
    assert named - {streams.stream_of(event)} == streams.references(event)
