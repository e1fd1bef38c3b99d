"""Claim rules, pure: what each command may append, and how a claim's state evolves."""

from __future__ import annotations

import msgspec
import pytest

from timeline.domain import claims as rules
from timeline.domain.errors import DefinitionConflict, InvalidValue, RuleViolation, UnknownReference
from timeline.domain.events import ClaimDenied, ClaimRetracted, ClaimRevised, Quantity, StatedDate
from timeline.domain.values import check_quantity, parse_stated_date, period_start

from .helpers import DAY, claim_made, source

LATER = StatedDate(date="2024-11", precision="month")


def _state(*events: object) -> rules.Claim:
    claim = None
    for e in events:
        claim = rules.evolve(claim, e)  # type: ignore[arg-type]
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
    with pytest.raises(RuleViolation, match="retraction, not a denial"):
        rules.decide_deny(claim, _denial("c", "nis"))


def test_revision_supersedes_the_figure_and_keeps_the_old_one_in_history() -> None:
    made = claim_made("c", "nis", 1500)
    claim = _state(made, _revision(3000))
    assert claim.quantity == Quantity(comparator="about", value=3000, unit="soldiers")
    assert claim.stated_on == LATER
    assert claim.made.quantity == made.quantity
    assert claim.revisions[0].revision_id == "rev"
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
