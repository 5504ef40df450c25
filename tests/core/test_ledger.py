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
    Booked,
    Code,
    chain_hash,
    entry_value,
    fee_entry,
    fee_minor,
    period_of,
    score_entries,
    score_entry_id,
    settle,
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


def booked(n: int, order: str, amount: int, currency: str = "USD") -> Booked:
    code = "attributed_revenue" if amount > 0 else "attributed_revenue_reversal"
    return Booked(f"e{n}", code, abs(amount), currency, order)


def test_a_period_bills_its_net_incremental_revenue_and_each_order_its_share() -> None:
    entries = [
        booked(1, "o1", 5000),
        booked(2, "o2", 3001),
        booked(3, "o1", -1000),  # a refund of o1 in the same period
        booked(4, "o9", 2000, "EUR"),
        Booked("fee", "success_fee", 99, "USD", None),  # not revenue: left out
    ]
    usd, eur = sorted(settle(entries, 2000), key=lambda s: s.currency, reverse=True)
    assert (usd.currency, usd.incremental_minor, usd.fee_minor) == ("USD", 7001, 1400)
    assert [(x.order_id, x.incremental_minor, x.entry_ids) for x in usd.lines] == [
        ("o1", 4000, ("e1", "e3")),
        ("o2", 3001, ("e2",)),
    ]
    assert sum(x.fee_minor for x in usd.lines) == usd.fee_minor
    assert (eur.incremental_minor, eur.fee_minor) == (2000, 400)


def test_an_adjustment_period_with_more_reversals_issues_a_credit_note() -> None:
    (s,) = settle([booked(1, "o1", -2500), booked(2, "o2", 1000)], 2000)
    assert (s.incremental_minor, s.fee_minor) == (-1500, -300)
    assert sum(x.fee_minor for x in s.lines) == -300
    note = fee_entry("acme", "shopify", "USD", "2026-12", s.fee_minor, AT)
    assert note is not None
    assert (note.debit, note.credit, note.amount_minor, note.code) == (
        Account.FEE_REVENUE,
        Account.SUCCESS_FEE_RECEIVABLE,
        300,
        Code.SUCCESS_FEE_REVERSAL,
    )
    assert fee_entry("acme", "shopify", "USD", "2026-12", 0, AT) is None
    again = fee_entry("acme", "shopify", "USD", "2026-12", 5, AT)
    assert again is not None and again.entry_id == note.entry_id  # one fee per period


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.integers(-5000, 20_000).filter(bool)), max_size=30
    ),
    st.integers(0, 10_000),
)
def test_the_proof_always_sums_to_the_invoice(moves: list[tuple[str, int]], bp: int) -> None:
    entries = [booked(n, order, amount) for n, (order, amount) in enumerate(moves)]
    for s in settle(entries, bp):
        assert s.fee_minor == fee_minor(s.incremental_minor, bp)
        assert sum(x.incremental_minor for x in s.lines) == s.incremental_minor
        assert sum(x.fee_minor for x in s.lines) == s.fee_minor
        assert all(x.incremental_minor != 0 for x in s.lines)
