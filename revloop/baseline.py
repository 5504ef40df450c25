"""A store's baseline from its order history (what a backfill reads), for settlement: revenue,
order count and average order value, unique and repeat customers, and a monthly series. Pure.

Only orders in the baseline's currency count (a store bills in one currency); an order counts
at its net: its total less its refunds, or nothing once cancelled. The monthly revenue that
billing compares against is the window's revenue per day times the mean month (365.25 / 12
days), so a window that starts or ends mid-month weighs its partial months fairly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from fractions import Fraction

from revloop.money import half_even

MEAN_MONTH_DAYS = Fraction(36525, 1200)


@dataclass(frozen=True)
class OrderFact:
    """What the baseline needs of one order."""

    order_id: str
    placed_at: datetime
    currency: str
    total_minor: int
    refunded_minor: int = 0
    customer_key: str | None = None
    cancelled: bool = False

    @property
    def net_minor(self) -> int:
        return 0 if self.cancelled else self.total_minor - self.refunded_minor


@dataclass(frozen=True)
class Month:
    month: date
    """The month's first day."""
    start: datetime
    """Where the window enters the month (its first instant, or the window's start)."""
    end: datetime
    """Where the window leaves it (the next month's first instant, or the window's end)."""
    revenue_minor: int
    orders: int


@dataclass(frozen=True)
class Baseline:
    currency: str
    start: datetime
    end: datetime
    revenue_minor: int
    orders: int
    average_order_minor: int
    unique_customers: int
    repeat_customers: int
    """Customers with two orders or more in the window."""
    repeat_rate_bp: int
    """Repeat customers per unique customer, in basis points."""
    monthly_revenue_minor: int
    """The window's revenue per mean month: what billing's baseline uplift compares against."""
    months: tuple[Month, ...]


def _month_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def _next_month(at: datetime) -> datetime:
    return datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)


def baseline(
    orders: Iterable[OrderFact], currency: str, start: datetime, end: datetime
) -> Baseline:
    """The baseline of the orders placed in ``[start, end)`` in ``currency``."""
    if end <= start:
        raise ValueError("a baseline window must end after it starts")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    counted = [
        o for o in orders if o.currency == currency and start <= o.placed_at.astimezone(UTC) < end
    ]
    placed = [o for o in counted if not o.cancelled]
    revenue = sum(o.net_minor for o in counted)
    per_customer = Counter(o.customer_key for o in placed if o.customer_key)
    repeat = sum(1 for n in per_customer.values() if n >= 2)
    months: list[Month] = []
    cursor = _month_start(start)
    while cursor < end:
        following = _next_month(cursor)
        inside = [o for o in counted if cursor <= o.placed_at.astimezone(UTC) < following]
        months.append(
            Month(
                month=cursor.date(),
                start=max(cursor, start),
                end=min(following, end),
                revenue_minor=sum(o.net_minor for o in inside),
                orders=sum(1 for o in inside if not o.cancelled),
            )
        )
        cursor = following
    days = Fraction(int((end - start).total_seconds()), 86_400)
    return Baseline(
        currency=currency,
        start=start,
        end=end,
        revenue_minor=revenue,
        orders=len(placed),
        average_order_minor=half_even(Fraction(revenue, len(placed))) if placed else 0,
        unique_customers=len(per_customer),
        repeat_customers=repeat,
        repeat_rate_bp=half_even(Fraction(repeat * 10_000, len(per_customer)))
        if per_customer
        else 0,
        monthly_revenue_minor=half_even(revenue * MEAN_MONTH_DAYS / days) if days else 0,
        months=tuple(months),
    )
