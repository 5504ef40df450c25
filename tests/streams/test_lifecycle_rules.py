"""Lifecycle rules (pure): examples and hypothesis properties."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.lifecycle import (
    CustomerState,
    Flow,
    LifecycleRules,
    Order,
    Trigger,
    advance,
    record_order,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = LifecycleRules(
    win_back_after=timedelta(days=60), churn_factor=2, churn_after=timedelta(days=30)
)


def order(n: int, day: float, total: int = 1000, currency: str = "USD") -> Order:
    return Order(f"o{n}", T0 + timedelta(days=day), total, currency)


def play(
    orders: list[Order], until_day: float | None = None, rules: LifecycleRules = RULES
) -> tuple[CustomerState, list[Trigger]]:
    state, triggers = CustomerState(), []
    for o in orders:
        state, out = record_order(state, o, rules)
        triggers += out
    if until_day is not None:
        state, out = advance(state, T0 + timedelta(days=until_day), rules)
        triggers += out
    return state, triggers


def flows(triggers: list[Trigger]) -> list[tuple[str, float]]:
    return [(t.flow.value, (t.due_at - T0) / timedelta(days=1)) for t in triggers]


def test_first_and_second_orders_trigger_post_purchase_and_repeat_customer() -> None:
    state, triggers = play([order(1, 0, 2500), order(2, 10, 1500), order(3, 20, 500, "EUR")])
    assert flows(triggers) == [("post_purchase", 0), ("repeat_customer", 10)]
    assert state.order_count == 3
    assert state.spent == (("EUR", 500), ("USD", 4000))
    assert (state.first_order_at, state.last_order_at) == (T0, T0 + timedelta(days=20))


def test_win_back_and_churn_risk_fire_once_each_when_due() -> None:
    # Gaps of 10 days, so 30 days without an order is overdue; win back after 60.
    _, triggers = play([order(1, 0), order(2, 10), order(3, 20)], until_day=100)
    assert flows(triggers)[2:] == [("churn_risk", 50), ("win_back", 80)]
    state, _ = play([order(1, 0), order(2, 10), order(3, 20)], until_day=100)
    assert advance(state, T0 + timedelta(days=400), RULES) == (state, [])


def test_a_customer_whose_habit_is_slower_than_the_check_is_not_at_risk() -> None:
    # Gaps of 20 days: waiting 30 is less than twice their habit.
    _, triggers = play([order(1, 0), order(2, 20), order(3, 40)], until_day=200)
    assert [f for f in flows(triggers) if f[0] == "churn_risk"] == []
    assert ("win_back", 100) in flows(triggers)


def test_an_order_inside_the_window_postpones_win_back() -> None:
    _, triggers = play([order(1, 0), order(2, 50)], until_day=100)
    assert ("win_back", 60) not in flows(triggers)
    assert [f for f in flows(triggers) if f[0] == "win_back"] == []
    _, later = play([order(1, 0), order(2, 50)], until_day=110)
    assert ("win_back", 110) in flows(later)


def test_a_repeated_order_counts_once() -> None:
    state, triggers = play([order(1, 0), order(1, 0)])
    assert state.order_count == 1
    assert flows(triggers) == [("post_purchase", 0)]


def test_rules_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LifecycleRules(timedelta(0), 2, timedelta(days=1))
    with pytest.raises(ValueError, match="churn_factor"):
        LifecycleRules(timedelta(days=1), 0, timedelta(days=1))


orders = st.lists(
    st.builds(order, st.integers(0, 20), st.integers(0, 400), st.integers(0, 10**6)),
    max_size=15,
).map(lambda os: list({o.order_id: o for o in os}.values()))


@given(orders, st.randoms())
def test_the_state_depends_on_which_orders_arrived_not_their_order(
    os: list[Order], rnd: random.Random
) -> None:
    shuffled = os + rnd.sample(os, k=min(3, len(os)))
    rnd.shuffle(shuffled)
    a, _ = play(os)
    b, _ = play(shuffled)
    assert (a.order_ids, a.spent, a.first_order_at, a.last_order_at) == (
        b.order_ids,
        b.spent,
        b.first_order_at,
        b.last_order_at,
    )


@given(orders, st.integers(0, 1000))
def test_each_flow_fires_at_most_once_per_anchor(os: list[Order], until: int) -> None:
    in_time = sorted(os, key=lambda o: o.at)
    _, triggers = play(in_time, until_day=until)
    assert [t.flow for t in triggers].count(Flow.POST_PURCHASE) == min(1, len(os))
    assert [t.flow for t in triggers].count(Flow.REPEAT_CUSTOMER) == (1 if len(os) >= 2 else 0)
    for flow in (Flow.WIN_BACK, Flow.CHURN_RISK):
        anchors = [t.order_id for t in triggers if t.flow is flow]
        assert len(anchors) == len(set(anchors))
