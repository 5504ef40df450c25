"""The ledger's postings, pure: what a score books, the fee's one rounding, the chain link."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revloop.ledger import (
    GENESIS,
    Account,
    Code,
    chain_hash,
    entry_value,
    fee_minor,
    period_of,
    score_entries,
    score_entry_id,
)

AT = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)


def score(
    event: str, minor: int, reverses: str | None = None, holdout: bool = False
) -> dict[str, Any]:
    return {
        "envelope": {
            "event_id": event,
            "store_id": "acme",
            "platform": "shopify",
            "occurred_at": AT,
        },
        "order_id": "o1",
        "incremental_revenue": {"amount_minor": minor, "currency": "JPY"},
        "holdout": holdout,
        "reverses": reverses,
    }


def test_a_score_books_its_incremental_revenue_and_a_reversal_undoes_its_share() -> None:
    (gain,) = score_entries(score("s1", 5000))
    assert (gain.debit, gain.credit, gain.amount_minor, gain.code) == (
        Account.ATTRIBUTED_INCREMENTAL_REVENUE,
        Account.ATTRIBUTION_SOURCE,
        5000,
        Code.ATTRIBUTED_REVENUE,
    )
    assert gain.entry_id == score_entry_id("s1") and gain.period == "2026-11"
    (back,) = score_entries(score("s2", -1200, reverses="s1"))
    assert (back.debit, back.credit, back.amount_minor) == (
        Account.ATTRIBUTION_SOURCE,
        Account.ATTRIBUTED_INCREMENTAL_REVENUE,
        1200,
    )
    assert back.reverses_entry_id == gain.entry_id
    assert back.caused_by == ("s2",)
    value = entry_value(back)
    assert value["debit_account"] == "acme/JPY/attribution_source"
    assert value["amount"] == {"amount_minor": 1200, "currency": "JPY"}


def test_nothing_is_booked_for_zero_or_for_the_control_group() -> None:
    assert score_entries(score("s1", 0)) == []
    assert score_entries(score("s1", 5000, holdout=True)) == []


def test_a_score_and_a_reversal_must_point_the_right_way() -> None:
    with pytest.raises(ValueError, match="a score books a gain"):
        score_entries(score("s1", -5))
    with pytest.raises(ValueError, match="a score books a gain"):
        score_entries(score("s2", 5, reverses="s1"))


@pytest.mark.parametrize(
    ("amount", "bp", "fee"),
    [
        (1000, 2000, 200),
        (5, 2000, 1),
        (7, 2000, 1),
        (25, 2000, 5),
        (-25, 2000, -5),
        (3, 5000, 2),
        (5, 5000, 2),
        (0, 2000, 0),
    ],
)
def test_fees_round_half_to_even(amount: int, bp: int, fee: int) -> None:
    assert fee_minor(amount, bp) == fee


@given(st.integers(-(10**15), 10**15), st.integers(0, 10_000))
def test_fee_rounding_is_decimal_half_even(amount: int, bp: int) -> None:
    exact = Decimal(amount) * Decimal(bp) / Decimal(10_000)
    assert fee_minor(amount, bp) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_periods_are_utc_months_and_links_cover_every_field() -> None:
    assert period_of(datetime(2026, 12, 1, 0, 30, tzinfo=UTC)) == "2026-12"
    with pytest.raises(ValueError, match="zone"):
        period_of(datetime(2026, 12, 1))
    fields = (1, "e1", "acme", 500, AT, None)
    link = chain_hash(GENESIS, fields)
    assert link == chain_hash(GENESIS, fields)
    assert link != chain_hash(GENESIS, (1, "e1", "acme", 501, AT, None))
    assert link != chain_hash("1" * 64, fields)
