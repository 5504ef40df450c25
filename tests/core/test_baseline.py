"""The baseline a backfill computes: totals, customers, and a monthly series that adds up."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revloop.baseline import OrderFact, baseline

START = datetime(2025, 12, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def test_figures_of_a_year() -> None:
    orders = [
        OrderFact("1", datetime(2025, 12, 3, tzinfo=UTC), "USD", 10_000, customer_key="a"),
        OrderFact("2", datetime(2026, 1, 9, tzinfo=UTC), "USD", 5_000, 1_000, customer_key="a"),
        OrderFact("3", datetime(2026, 1, 20, tzinfo=UTC), "USD", 7_000, customer_key="b"),
        OrderFact("4", datetime(2026, 2, 1, tzinfo=UTC), "USD", 9_999, cancelled=True),
        OrderFact("5", datetime(2026, 3, 1, tzinfo=UTC), "EUR", 50_000, customer_key="c"),
        OrderFact("6", datetime(2025, 11, 30, tzinfo=UTC), "USD", 50_000, customer_key="c"),
    ]
    b = baseline(orders, "USD", START, END)
    assert b.revenue_minor == 10_000 + 4_000 + 7_000
    assert b.orders == 3 and b.average_order_minor == 7_000
    assert (b.unique_customers, b.repeat_customers, b.repeat_rate_bp) == (2, 1, 5_000)
    assert [m.month for m in b.months][:3] == [
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert len(b.months) == 12 and b.months[1].revenue_minor == 11_000 and b.months[1].orders == 2
    assert b.months[0].start == START and b.months[-1].end == END
    # 21,000 over 365 days, per mean month of 30.4375 days: 1,751.2 → 1,751.
    assert b.monthly_revenue_minor == 1_751


def test_partial_months_are_bounded_by_the_window() -> None:
    start, end = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    b = baseline([], "USD", start, end)
    assert [(m.start, m.end) for m in b.months] == [
        (start, datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        (datetime(2026, 3, 1, tzinfo=UTC), end),
    ]
    assert (b.revenue_minor, b.orders, b.average_order_minor, b.repeat_rate_bp) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="must end after"):
        baseline([], "USD", end, start)


facts = st.builds(
    OrderFact,
    order_id=st.uuids().map(str),
    placed_at=st.datetimes(
        min_value=datetime(2025, 10, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    currency=st.sampled_from(["USD", "EUR"]),
    total_minor=st.integers(0, 10**9),
    refunded_minor=st.integers(0, 10**6),
    customer_key=st.sampled_from([None, "a", "b", "c", "d"]),
    cancelled=st.booleans(),
)


@given(st.lists(facts, max_size=40), st.integers(1, 500))
def test_the_months_add_up_to_the_window(orders: list[OrderFact], days: int) -> None:
    b = baseline(orders, "USD", START, START + timedelta(days=days))
    assert sum(m.revenue_minor for m in b.months) == b.revenue_minor
    assert sum(m.orders for m in b.months) == b.orders
    assert all(a.end == n.start for a, n in zip(b.months, b.months[1:], strict=False))
    assert b.months[0].start == b.start and b.months[-1].end == b.end
    assert 0 <= b.repeat_customers <= b.unique_customers <= 4
    counted = [o for o in orders if o.currency == "USD" and b.start <= o.placed_at < b.end]
    assert b.revenue_minor == sum(o.net_minor for o in counted)
