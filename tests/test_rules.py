"""Claim rules, pure: what each command may append, and how a claim's state evolves."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from timeline.domain import claims, rules
from timeline.domain.errors import DefinitionConflict, InvalidValue, RuleViolation, UnknownReference
from timeline.domain.events import (
    Addresses,
    ClaimConfirmed,
    ClaimDenied,
    ClaimRetracted,
    ClaimRevised,
    CorrectedFields,
    DenialWithdrawn,
    DomainEvent,
    EvidenceAttached,
    Quantity,
    RecordCorrected,
    SourceAmended,
    SourceRegistered,
    StatedDate,
    StatementMade,
    SubjectRegistered,
    decode_event,
)
from timeline.domain.sides import same_side
from timeline.domain.values import check_quantity, parse_stated_date, period_start

from .helpers import DAY, claim_made, source

LATER = StatedDate(date="2024-11", precision="month")


def _state(*events: object) -> claims.Claim:
    claim = None
    for e in events:
        claim = claims.evolve(claim, e)  # type: ignore[arg-type]
    assert claim is not None
    return claim


def _denial(claim_id: str, by: str, denial_id: str = "deny") -> ClaimDenied:
    return ClaimDenied(
        claim_id=claim_id,
        denial_id=denial_id,
        denied_by=by,
        statement="no",
        stated_on=DAY,
        document_ids=("d",),
    )


def _revision(value: int, revision_id: str = "rev") -> ClaimRevised:
    return ClaimRevised(
        claim_id="c",
        revision_id=revision_id,
        statement=f"now {value}",
        stated_on=LATER,
        document_ids=("d2",),
        quantity=Quantity(comparator="about", value=value, unit="soldiers"),
    )


def test_denial_by_another_source_disputes_without_erasing() -> None:
    made = claim_made("c", "nis", 1500)
    claim = _state(made, _denial("c", "kremlin"))
    assert claim.status == "disputed"
    assert claim.disputed_by == ("kremlin",)
    assert claim.quantity == made.quantity
    assert claim.statement == made.statement
    assert claim.version == 2


def test_denial_by_the_claims_own_source_is_refused() -> None:
    claim = _state(claim_made("c", "nis", 1500))
    with pytest.raises(RuleViolation, match="record a retraction instead"):
        rules.decide_deny(claim, _denial("c", "nis"))


def test_revision_supersedes_the_figure_and_keeps_the_old_one_in_history() -> None:
    made = claim_made("c", "nis", 1500)
    claim = _state(made, _revision(3000))
    assert claim.quantity == Quantity(comparator="about", value=3000, unit="soldiers")
    assert claim.stated_on == LATER
    assert claim.recorded[0].quantity == made.quantity  # type: ignore[union-attr]
    assert claim.revisions == ("rev",)
    assert claim.document_ids == ("d", "d2")
    assert claim.status == "standing"


def test_same_command_twice_appends_nothing_but_a_different_one_under_the_same_id_conflicts() -> None:
    made = claim_made("c", "nis", 1500)
    claim = _state(made, _revision(3000), _denial("c", "kremlin"))
    assert rules.decide_make(claim, made) == []
    assert rules.decide_revise(claim, _revision(3000)) == []
    assert rules.decide_deny(claim, _denial("c", "kremlin")) == []
    with pytest.raises(DefinitionConflict, match="quantity"):
        rules.decide_make(claim, claim_made("c", "nis", 1600))
    with pytest.raises(DefinitionConflict, match="revision 'rev'"):
        rules.decide_revise(claim, _revision(4000))


def test_commands_on_an_unknown_claim_say_which_claim() -> None:
    with pytest.raises(UnknownReference, match="unknown claim 'c'"):
        rules.decide_revise(None, _revision(1))
    with pytest.raises(UnknownReference):
        rules.decide_deny(None, _denial("c", "kremlin"))


def test_retraction_marks_retracted_and_blocks_revisions() -> None:
    retraction = ClaimRetracted(
        claim_id="c", retraction_id="r", statement="withdrawn", stated_on=DAY, document_ids=("d",)
    )
    claim = _state(claim_made("c", "nis", 1500), _denial("c", "kremlin"), retraction)
    assert claim.status == "retracted"
    assert rules.decide_retract(claim, retraction) == []
    with pytest.raises(RuleViolation, match="retracted"):
        rules.decide_revise(claim, _revision(2))
    # A later denial does not bring a retracted claim back to merely disputed.
    assert _state(claim_made("c", "nis", 1), retraction, _denial("c", "kremlin")).status == "retracted"


def test_figure_needs_both_metric_and_quantity() -> None:
    made = claim_made("c", "nis", 1500)

    with pytest.raises(InvalidValue, match="needs both") as caught:
        rules.decide_make(None, msgspec.structs.replace(made, metric=None))
    assert caught.value.field == "metric"


@pytest.mark.parametrize(
    ("quantity", "field", "message"),
    [
        (Quantity(comparator="exactly", unit="x"), "quantity.value", "needs 'value'"),
        (Quantity(comparator="up_to", value=3, unit="x"), "quantity.upper", "needs 'upper'"),
        (Quantity(comparator="up_to", upper=3, lower=1, unit="x"), "quantity.lower", "takes only upper"),
        (Quantity(comparator="between", lower=5, upper=3, unit="x"), "quantity.lower", "above upper"),
        (Quantity(comparator="exactly", value=3, unit=" "), "quantity.unit", "unit"),
    ],
)
def test_quantity_shape_errors_name_the_field(quantity: Quantity, field: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message) as caught:
        check_quantity(quantity)
    assert caught.value.field == field


def test_stated_dates_carry_their_precision() -> None:
    assert parse_stated_date("2024-10-21").precision == "day"
    assert parse_stated_date("2024-10").precision == "month"
    assert parse_stated_date("2024").precision == "year"
    assert str(period_start(parse_stated_date("2024-10"))) == "2024-10-01"
    with pytest.raises(InvalidValue, match="not a calendar date"):
        parse_stated_date("2024-02-30")
    with pytest.raises(InvalidValue, match="expected a date"):
        parse_stated_date("21 October 2024")


def test_registration_identical_is_a_noop_and_different_names_the_field() -> None:
    nis = source("nis")
    assert rules.decide_registration(None, nis) == [nis]
    assert rules.decide_registration(nis, nis) == []

    with pytest.raises(
        DefinitionConflict, match=r"source 'nis' .*name: recorded \"Source nis\", now \"NIS\""
    ):
        rules.decide_registration(nis, msgspec.structs.replace(nis, name="NIS"))


def _confirmation(by: str, confirmation_id: str = "conf") -> ClaimConfirmed:
    return ClaimConfirmed(
        claim_id="c",
        confirmation_id=confirmation_id,
        confirmed_by=by,
        statement="yes",
        stated_on=DAY,
        document_ids=("d",),
    )


def _correction(version: int, changes: CorrectedFields, correction_id: str = "fix") -> RecordCorrected:
    return RecordCorrected(
        claim_id="c", correction_id=correction_id, corrects_version=version, changes=changes, reason="typo"
    )


def test_confirmation_and_denial_make_a_claim_contested() -> None:
    made = claim_made("c", "nis", 1500)
    assert _state(made, _confirmation("pentagon")).status == "confirmed"
    claim = _state(made, _confirmation("pentagon"), _denial("c", "kremlin"))
    assert claim.status == "contested"
    assert claim.confirmed_by == ("pentagon",)
    assert claim.disputed_by == ("kremlin",)
    with pytest.raises(RuleViolation, match="own source"):
        rules.decide_confirm(claim, _confirmation("nis", "other"))


def test_evidence_is_kept_and_changes_no_status() -> None:
    evidence = EvidenceAttached(
        claim_id="c",
        evidence_id="cnn-geo",
        kind="geolocation",
        produced_by="cnn",
        description="troops at Sergeevka",
        stated_on=DAY,
        document_ids=("d",),
    )
    claim = _state(claim_made("c", "nis", 1500), evidence)
    assert claim.status == "standing"
    assert claim.evidence == (evidence,)
    with pytest.raises(InvalidValue, match="empty statement"):
        rules.decide_attach(claim, msgspec.structs.replace(evidence, evidence_id="e2", description=" "))


def test_correction_changes_the_view_and_history_keeps_the_original() -> None:
    made = claim_made("c", "nis", 15000)  # a typo: the source said 1,500
    fix = _correction(
        1, CorrectedFields(quantity=Quantity(comparator="exactly", value=1500, unit="soldiers"))
    )
    before = _state(made, _denial("c", "kremlin"))
    assert rules.decide_correct(before, fix) == [fix]
    after = claims.evolve(before, fix)
    assert after.quantity is not None
    assert after.quantity.value == 1500
    assert after.status == "disputed"  # the denial recorded after the typo still stands
    assert after.version == 3
    assert after.recorded[0] == made  # what was first recorded is kept
    assert after.corrections == (fix,)


def test_correction_of_a_source_moves_a_denial_and_is_checked() -> None:
    claim = _state(claim_made("c", "nis", 1500), _denial("c", "kremlin"))
    moved = claims.evolve(claim, _correction(2, CorrectedFields(source_id="pentagon")))
    assert moved.disputed_by == ("pentagon",)
    with pytest.raises(RuleViolation, match="deny or confirm its own claim"):
        rules.decide_correct(claim, _correction(2, CorrectedFields(source_id="nis")))


@pytest.mark.parametrize(
    ("version", "changes", "error", "field", "message"),
    [
        (5, CorrectedFields(statement="x"), RuleViolation, "corrects_version", "no event 5"),
        (2, CorrectedFields(metric="tanks"), InvalidValue, "changes.metric", "has no 'metric'"),
        (1, CorrectedFields(), InvalidValue, "changes", "at least one field"),
        (1, CorrectedFields(statement=""), InvalidValue, "changes.statement", "empty statement"),
    ],
)
def test_refused_corrections_say_why(
    version: int, changes: CorrectedFields, error: type[Exception], field: str, message: str
) -> None:
    claim = _state(claim_made("c", "nis", 1500), _denial("c", "kremlin"))
    with pytest.raises(error, match=message) as caught:
        rules.decide_correct(claim, _correction(version, changes))
    assert caught.value.field == field  # type: ignore[attr-defined]


def test_amendment_changes_a_definition_and_an_empty_one_is_refused() -> None:
    nis = source("nis")
    renamed = claims.amend(nis, SourceAmended(source_id="nis", name="NIS", aliases=("국가정보원",)))
    assert renamed == msgspec.structs.replace(nis, name="NIS", aliases=("국가정보원",))
    assert rules.decide_amend(nis, SourceAmended(source_id="nis", name="Source nis")) == []
    with pytest.raises(InvalidValue, match="at least one field"):
        rules.decide_amend(nis, SourceAmended(source_id="nis"))
    with pytest.raises(UnknownReference):
        rules.decide_amend(None, SourceAmended(source_id="nis", name="x"))


def _withdrawal(by: str, denial_id: str = "deny", withdrawal_id: str = "w") -> DenialWithdrawn:
    return DenialWithdrawn(
        claim_id="c",
        withdrawal_id=withdrawal_id,
        denial_id=denial_id,
        withdrawn_by=by,
        statement="we no longer deny it",
        stated_on=LATER,
        document_ids=("d",),
    )


def test_a_withdrawn_denial_stops_disputing_but_stays_on_record() -> None:
    claim = _state(claim_made("c", "nis", 1500), _denial("c", "kremlin"))
    [withdrawal] = rules.decide_withdraw_denial(claim, _withdrawal("kremlin"))
    after = claims.evolve(claim, withdrawal)
    assert after.status == "standing"
    assert after.disputed_by == ()
    assert [d.denial_id for d in after.denials] == ["deny"]
    assert rules.decide_withdraw_denial(after, _withdrawal("kremlin")) == []  # the same again: a no-op


def test_a_source_with_another_standing_denial_still_disputes() -> None:
    claim = _state(claim_made("c", "nis", 1500), _denial("c", "kremlin", "d1"), _denial("c", "kremlin", "d2"))
    after = claims.evolve(claim, _withdrawal("kremlin", "d1"))
    assert after.disputed_by == ("kremlin",)
    assert after.status == "disputed"


@pytest.mark.parametrize(
    ("withdrawal", "says"),
    [
        (_withdrawal("france", withdrawal_id="w2"), "only its own source withdraws it"),
        (_withdrawal("kremlin", "nope", withdrawal_id="w2"), "has no denial 'nope'"),
        (_withdrawal("kremlin", withdrawal_id="w2"), "already withdrawn"),
        (
            msgspec.structs.replace(
                _withdrawal("kremlin", withdrawal_id="w2"),
                stated_on=StatedDate(date="2024-10-01", precision="day"),
            ),
            "cannot be withdrawn before",
        ),
    ],
)
def test_withdrawals_that_cannot_be(withdrawal: DenialWithdrawn, says: str) -> None:
    claim = _state(claim_made("c", "nis", 1500), _denial("c", "kremlin"), _withdrawal("kremlin"))
    with pytest.raises(RuleViolation, match=says):
        rules.decide_withdraw_denial(claim, withdrawal)


def _confirmation_of(addresses: Addresses, by: str = "pentagon") -> ClaimConfirmed:
    return ClaimConfirmed(
        claim_id="c",
        confirmation_id=f"x-{addresses}-{by}",
        confirmed_by=by,
        statement="yes",
        stated_on=DAY,
        document_ids=("d",),
        addresses=addresses,
    )


def test_what_a_confirmation_addresses_decides_the_figures_status() -> None:
    made = claim_made("c", "nis", 1500)
    assert claims.figure_status(_state(made, _confirmation_of("proposition"))) == "standing"
    assert claims.figure_status(_state(made, _confirmation_of("figure"))) == "confirmed"
    assert claims.figure_status(_state(made, _confirmation_of("claim"))) == "confirmed"  # the old meaning
    assert _state(made, _confirmation_of("proposition")).status == "confirmed"
    denied = msgspec.structs.replace(_denial("c", "kremlin"), addresses="proposition")
    assert claims.figure_status(_state(made, denied, _confirmation_of("proposition"))) == "disputed"


def test_a_figure_cannot_be_addressed_on_a_claim_without_one() -> None:
    plain = _state(msgspec.structs.replace(claim_made("c", "nis", 1500), metric=None, quantity=None))
    with pytest.raises(RuleViolation) as caught:
        rules.decide_confirm(plain, _confirmation_of("figure"))
    assert caught.value.field == "addresses"
    assert claims.figure_status(plain) is None


def test_a_denial_recorded_before_addresses_existed_decodes_as_addressing_the_claim() -> None:
    stored = (
        b'{"type":"ClaimDenied","claim_id":"c","denial_id":"d","denied_by":"k","statement":"no",'
        b'"stated_on":{"date":"2024-10-21","precision":"day"},"document_ids":["d"]}'
    )
    denial = decode_event(stored)
    assert isinstance(denial, ClaimDenied)
    assert denial.addresses == "claim"


def _statement(statement_id: str = "st", text: str = "we are watching") -> StatementMade:
    return StatementMade(
        subject_id="s",
        statement_id=statement_id,
        source_id="nis",
        statement=text,
        stated_on=DAY,
        document_ids=("d",),
    )


def test_statements_are_recorded_once_and_need_their_subject() -> None:
    subject = SubjectRegistered(subject_id="s", name="S")
    [said] = rules.decide_statement(subject, (), _statement())
    assert rules.decide_statement(subject, (said,), _statement()) == []
    with pytest.raises(DefinitionConflict):
        rules.decide_statement(subject, (said,), _statement(text="something else"))
    with pytest.raises(UnknownReference):
        rules.decide_statement(None, (), _statement())
    with pytest.raises(InvalidValue):
        rules.decide_statement(subject, (), _statement("other", " "))


def test_sources_on_one_side() -> None:
    relations = {"mod": ("russia",), "kremlin": ("russia",), "spokesperson": ("kremlin",), "cnn": ()}
    assert same_side("mod", "kremlin", relations)  # both part of the same government
    assert same_side("spokesperson", "kremlin", relations)  # one speaks for the other
    assert not same_side("cnn", "kremlin", relations)
    assert not same_side("kremlin", "kremlin", relations)
    with pytest.raises(InvalidValue):
        rules.decide_registration(None, SourceRegistered(source_id="a", name="A", kind="agency", part_of="a"))


def test_a_correction_cannot_leave_a_figure_denial_without_a_figure() -> None:
    plain = _state(
        msgspec.structs.replace(claim_made("c", "nis", 1500), metric=None, quantity=None), _denial("c", "k")
    )
    fix = RecordCorrected(
        claim_id="c",
        correction_id="fix",
        corrects_version=2,
        changes=CorrectedFields(addresses="figure"),
        reason="x",
    )
    with pytest.raises(RuleViolation) as caught:
        rules.decide_correct(plain, fix)
    assert caught.value.field == "changes.addresses"
    fine = msgspec.structs.replace(fix, changes=CorrectedFields(addresses="proposition"))
    assert claims.evolve(plain, fine).denials[0].addresses == "proposition"


@pytest.mark.parametrize("field", ["stated_on", "horizon"])
def test_a_week_says_when_it_happened_never_when_it_was_said(field: str) -> None:
    week = StatedDate(date="2024-W43", precision="week")
    made = claim_made("c", "nis", 1)
    if field == "stated_on":
        event = msgspec.structs.replace(made, stated_on=week)
    else:
        assert made.quantity is not None
        event = msgspec.structs.replace(
            made, modality="projected", quantity=msgspec.structs.replace(made.quantity, horizon=week)
        )
    with pytest.raises(InvalidValue) as caught:
        rules.decide_make(None, event)
    assert caught.value.field == ("stated_on" if field == "stated_on" else "quantity.horizon")
    assert "a week ('2024-W43') is only for when a thing happened ('occurred')" in str(caught.value)


def test_event_kinds_are_final_so_the_fold_can_tell_them_by_type() -> None:
    """The fold, the rules and the stream records tell claim events apart by exact type (cheaper than
    ``isinstance``); an event class with a subclass would be folded as no kind at all."""
    assert all(kind.__subclasses__() == [] for kind in get_args(DomainEvent))
    assert claims.is_claim_event(claim_made("c", "s", 1))
    assert not claims.is_claim_event(SubjectRegistered(subject_id="s", name="S"))
