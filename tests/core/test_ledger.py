"""The ledger's postings, pure: what scores, touches and spend reports book, the fee's one
rounding, the chain link."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revloop.billing import fee_minor
from revloop.ledger import (
    GENESIS,
    Account,
    Code,
    baseline_entry,
    chain_hash,
    entry_value,
    fee_entry,
    period_of,
    revenue_entry_id,
    score_entries,
    score_entry_id,
    spend_report_entries,
    touch_spend_entries,
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


def test_a_credit_note_points_the_other_way_and_a_period_has_one_fee() -> None:
    note = fee_entry("acme", "shopify", "USD", "2026-12", -300, AT)
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
    baseline = baseline_entry("acme", "shopify", "USD", "2026-12", 900_000, AT)
    assert (baseline.code, baseline.debit, baseline.period) == (
        Code.BASELINE,
        Account.BASELINE_REVENUE,
        "2026-12",
    )
    assert baseline.entry_id != note.entry_id


def test_a_score_books_the_store_revenue_it_changes_holdouts_included() -> None:
    placed = {
        **score("s1", 0, holdout=True),
        "revenue_change": {"amount_minor": 9000, "currency": "JPY"},
    }
    (revenue,) = score_entries(placed)
    assert (revenue.code, revenue.debit, revenue.credit, revenue.amount_minor) == (
        Code.REVENUE,
        Account.STORE_REVENUE,
        Account.SALES,
        9000,
    )
    assert revenue.entry_id == revenue_entry_id("s1")
    refund = {
        **score("s2", -1200, reverses="s1"),
        "revenue_change": {"amount_minor": -2000, "currency": "JPY"},
    }
    attributed, back = score_entries(refund)
    assert attributed.code is Code.ATTRIBUTED_REVENUE_REVERSAL
    assert (back.code, back.amount_minor, back.reverses_entry_id) == (
        Code.REVENUE_REVERSAL,
        2000,
        revenue.entry_id,
    )
    with pytest.raises(ValueError, match="a score books a gain"):
        score_entries({**score("s3", 0), "revenue_change": {"amount_minor": -5, "currency": "JPY"}})
    # Scores written before the field: no revenue entry, nothing else changes.
    assert [e.code for e in score_entries(score("s4", 100))] == [Code.ATTRIBUTED_REVENUE]


def touch(event: str, cost: int | None) -> dict[str, Any]:
    envelope = {"event_id": event, "store_id": "acme", "platform": "shopify", "occurred_at": AT}
    money = None if cost is None else {"amount_minor": cost, "currency": "USD"}
    return {"envelope": envelope, "cost": money}


def test_a_touch_with_a_cost_books_ad_spend_once() -> None:
    (spent,) = touch_spend_entries(touch("t1", 250))
    assert (spent.code, spent.debit, spent.credit, spent.amount_minor, spent.period) == (
        Code.AD_SPEND,
        Account.AD_SPEND,
        Account.SPEND_SOURCE,
        250,
        "2026-11",
    )
    assert touch_spend_entries(touch("t1", 250))[0].entry_id == spent.entry_id
    assert touch_spend_entries(touch("t2", None)) == []
    assert touch_spend_entries(touch("t3", 0)) == []


def report(event: str, minutes: int, amount: int, currency: str = "USD") -> dict[str, Any]:
    at = AT + timedelta(minutes=minutes)
    return {
        "envelope": {
            "event_id": event,
            "store_id": "acme",
            "platform": "shopify",
            "occurred_at": at,
        },
        "day": date(2026, 11, 30),
        "spend": {"amount_minor": amount, "currency": currency},
    }


def test_spend_reports_book_the_difference_and_ignore_older_reports() -> None:
    first, standing = spend_report_entries(None, report("r1", 0, 10_000))
    assert [(e.code, e.amount_minor, e.period) for e in first] == [
        (Code.AD_SPEND, 10_000, "2026-11")
    ]
    more, standing = spend_report_entries(standing, report("r2", 60, 12_500))
    assert [(e.code, e.amount_minor) for e in more] == [(Code.AD_SPEND, 2_500)]
    assert more[0].caused_by == ("r2", "r1")
    late, kept = spend_report_entries(standing, report("r0", 30, 99_999))  # older: ignored
    assert late == [] and kept == standing
    down, standing = spend_report_entries(standing, report("r3", 90, 12_000))
    assert [(e.code, e.amount_minor) for e in down] == [(Code.AD_SPEND_REVERSAL, 500)]
    same, standing = spend_report_entries(standing, report("r4", 120, 12_000))
    assert same == [] and standing is not None and standing.event_id == "r4"
    moved, standing = spend_report_entries(standing, report("r5", 150, 9_000, "EUR"))
    assert [(e.code, e.currency, e.amount_minor) for e in moved] == [
        (Code.AD_SPEND_REVERSAL, "USD", 12_000),
        (Code.AD_SPEND, "EUR", 9_000),
    ]
    assert len({e.entry_id for e in (*first, *more, *down, *moved)}) == 5


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 50_000)), min_size=1, max_size=20))
def test_spend_entries_always_add_up_to_the_newest_report(
    reports: list[tuple[int, int]],
) -> None:
    standing = None
    net = 0
    for n, (minutes, amount) in enumerate(reports):
        booked, standing = spend_report_entries(standing, report(f"r{n}", minutes, amount))
        net += sum(e.amount_minor * (1 if e.code is Code.AD_SPEND else -1) for e in booked)
    newest = max(range(len(reports)), key=lambda i: (reports[i][0], -i))
    assert net == reports[newest][1]
