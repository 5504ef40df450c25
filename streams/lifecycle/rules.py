"""Lifecycle state per customer and the flows it triggers. Pure.

The state is the customer's orders (ids, so a repeated order counts once), what they spent per
currency, and their first and last order times. It depends only on which orders arrived, not
on their order. From it:

- **post_purchase** on the first order, **repeat_customer** on the second;
- **win_back** once the customer has gone ``win_back_after`` without an order, due at the last
  order plus that span;
- **churn_risk** for a repeat customer (two or more orders) still without an order
  ``churn_after`` their last, when that wait is at least ``churn_factor`` times their average
  gap between orders: overdue by their own habit. The check time is the same for every
  customer, so the runtime needs one timer per customer, not one per customer's habit.

Times are event times. :func:`advance` applies the passing of stream time and is called first by
:func:`record_order`, so the triggers do not depend on how often the runtime advances time. Each
time-driven flow fires at most once per last order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class Flow(StrEnum):
    POST_PURCHASE = "post_purchase"
    REPEAT_CUSTOMER = "repeat_customer"
    WIN_BACK = "win_back"
    CHURN_RISK = "churn_risk"


@dataclass(frozen=True)
class LifecycleRules:
    win_back_after: timedelta
    churn_factor: int
    churn_after: timedelta

    def __post_init__(self) -> None:
        if self.win_back_after <= timedelta(0) or self.churn_after <= timedelta(0):
            raise ValueError("win_back_after and churn_after must be positive")
        if self.churn_factor < 1:
            raise ValueError("churn_factor must be at least 1")


@dataclass(frozen=True)
class Order:
    order_id: str
    at: datetime
    total_minor: int
    currency: str


@dataclass(frozen=True)
class CustomerState:
    order_ids: tuple[str, ...] = ()
    spent: tuple[tuple[str, int], ...] = ()
    """Minor units per currency, by currency."""
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    last_order_id: str | None = None
    win_back_sent_for: datetime | None = None
    """The last order time a win_back was triggered for (one per last order)."""
    churn_risk_sent_for: datetime | None = None

    @property
    def order_count(self) -> int:
        return len(self.order_ids)


@dataclass(frozen=True)
class Trigger:
    flow: Flow
    due_at: datetime
    order_id: str | None


def advance(
    state: CustomerState, now: datetime, rules: LifecycleRules
) -> tuple[CustomerState, list[Trigger]]:
    """Stream time has reached ``now``: the time-driven flows that became due."""
    last = state.last_order_at
    if last is None:
        return state, []
    triggers = []
    win_back_due = last + rules.win_back_after
    if now >= win_back_due and state.win_back_sent_for != last:
        triggers.append(Trigger(Flow.WIN_BACK, win_back_due, state.last_order_id))
        state = replace(state, win_back_sent_for=last)
    churn_due = churn_risk_due(state, rules)
    if churn_due is not None and now >= churn_due and state.churn_risk_sent_for != last:
        triggers.append(Trigger(Flow.CHURN_RISK, churn_due, state.last_order_id))
        state = replace(state, churn_risk_sent_for=last)
    return state, sorted(triggers, key=lambda t: (t.due_at, t.flow.value))


def churn_risk_due(state: CustomerState, rules: LifecycleRules) -> datetime | None:
    """When a repeat customer counts as at risk (the recency/frequency rule), if ever."""
    if state.order_count < 2 or state.first_order_at is None or state.last_order_at is None:
        return None
    average_gap = (state.last_order_at - state.first_order_at) / (state.order_count - 1)
    if average_gap * rules.churn_factor > rules.churn_after:
        return None  # they usually take longer than that: not overdue
    return state.last_order_at + rules.churn_after


def record_order(
    state: CustomerState, order: Order, rules: LifecycleRules
) -> tuple[CustomerState, list[Trigger]]:
    """The customer placed ``order``. An order already counted changes nothing."""
    if order.order_id in state.order_ids:
        return state, []
    state, triggers = advance(state, order.at, rules)
    spent = dict(state.spent)
    spent[order.currency] = spent.get(order.currency, 0) + order.total_minor
    newest = state.last_order_at is None or (order.at, order.order_id) > (
        state.last_order_at,
        state.last_order_id or "",
    )
    state = replace(
        state,
        order_ids=tuple(sorted((*state.order_ids, order.order_id))),
        spent=tuple(sorted(spent.items())),
        first_order_at=min(filter(None, (state.first_order_at, order.at))),
        last_order_at=order.at if newest else state.last_order_at,
        last_order_id=order.order_id if newest else state.last_order_id,
    )
    if state.order_count == 1:
        triggers.append(Trigger(Flow.POST_PURCHASE, order.at, order.order_id))
    elif state.order_count == 2:
        triggers.append(Trigger(Flow.REPEAT_CUSTOMER, order.at, order.order_id))
    return state, triggers
