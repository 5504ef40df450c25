"""Each order's standing score, per customer, as its inputs arrive. Pure.

A customer's book holds their touches, their orders (as placed, refunded, cancelled) and which
of each order's lines a running campaign promoted. From it follows the score each order should
have; :func:`settle` emits the records that move what was emitted to that:

- an order that can be scored (placed, and every product line's promotion known): its score;
- a refund: a reversing score for the refunded share of what the score credited;
- a cancellation: a reversing score for all that still stands;
- a late input that changes a score (a touch, an earlier first order, a line's promotion): a
  reversal of what stands, the new score, then its refunds again.

Scores are never edited, only reversed (negative amounts, ``reverses`` naming the original), so
an order's standing is the sum of its scores, and that sum depends on which events arrived, not
on their order: a replay gives every order the same standing, cent for cent. Past
``lateness`` after an order (in the customer's event time) its score is frozen: later touches and
promotions no longer correct it; refunds and cancellations still reverse it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from revloop.money import allocate
from streams.attribution.rules import (
    AttributionRules,
    Model,
    RulesAt,
    Touch,
    TouchKind,
    confidence,
    credits,
    in_holdout,
    in_window,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TouchFact(_Frozen):
    touchpoint_id: str
    event_id: str
    kind: TouchKind
    at: datetime
    campaign_id: str | None
    channel: str

    def touch(self) -> Touch:
        return Touch(self.touchpoint_id, self.kind, self.at, self.campaign_id, self.channel)


class PlacedOrder(_Frozen):
    """An order as created or paid: what its score is computed from."""

    order_id: str
    event_id: str
    at: datetime
    total_minor: int
    currency: str
    lines: tuple[tuple[str, str | None], ...]
    """(line_item_id, product_id) per line."""

    @property
    def product_lines(self) -> list[tuple[str, str]]:
        return [(line, product) for line, product in self.lines if product]


class RefundFact(_Frozen):
    refund_id: str
    event_id: str
    at: datetime
    amount_minor: int


class ScoredCredit(_Frozen):
    touchpoint_id: str
    campaign_id: str | None
    channel: str
    weight_bp: int
    amount_minor: int


class Score(_Frozen):
    """One AttributionScore record: a score, or a reversal (negative amounts, ``reverses``)."""

    event_id: str
    order_id: str
    at: datetime
    confidence_bp: int
    is_incremental: bool
    model: Model
    order_total_minor: int
    currency: str
    incremental_minor: int
    credits: tuple[ScoredCredit, ...]
    signals: tuple[str, ...]
    holdout: bool
    reverses: str | None = None
    caused_by: tuple[str, ...] = ()
    revenue_change_minor: int = 0
    """What this record changes in the store's revenue: the order total on a score, minus what
    is left of it on a reversal (a refund's: minus the refund, up to what is left)."""

    def content(self) -> tuple[object, ...]:
        """What a score says, apart from its id and causes: equal content, no correction."""
        return (
            self.confidence_bp,
            self.is_incremental,
            self.model,
            self.order_total_minor,
            self.currency,
            self.incremental_minor,
            self.credits,
            self.signals,
            self.holdout,
        )


class OrderBook(_Frozen):
    placed: PlacedOrder | None = None
    promoted: tuple[tuple[str, bool], ...] = ()
    """Per product line (line_item_id): whether a running campaign promoted its product."""
    refunds: tuple[RefundFact, ...] = ()
    cancelled: tuple[str, datetime] | None = None
    """The cancelling event's id and time."""
    standing: Score | None = None
    """The score in force, if any."""
    left_minor: int = 0
    """Of the standing score's incremental revenue, what refunds have not reversed yet."""
    left_credits: tuple[int, ...] = ()
    refunds_applied: tuple[str, ...] = ()
    revenue_left: int = 0
    """Of the standing score's order total, what refunds have not taken back yet."""
    scored: int = 0
    """How many scores this order has had: names the next one."""


class CustomerBook(_Frozen):
    """One customer's attribution state (one per customer key, or per order for a guest)."""

    customer_key: str | None = None
    touches: tuple[TouchFact, ...] = ()
    orders: tuple[tuple[str, OrderBook], ...] = ()
    first_order: tuple[datetime, str] | None = None
    """(time, order id) of the customer's first order seen."""
    newest_at: datetime | None = None
    """The latest event time in this book: the customer's stream time."""


class Refunded(_Frozen):
    order_id: str
    refund: RefundFact

    @property
    def event_id(self) -> str:
        return self.refund.event_id

    @property
    def at(self) -> datetime:
        return self.refund.at


class Cancelled(_Frozen):
    order_id: str
    event_id: str
    at: datetime


class Promotion(_Frozen):
    """Whether a running campaign promoted an order line's product at the order's time."""

    order_id: str
    line_item_id: str
    promoted: bool
    event_id: str
    """The event that decided it: the order, or a campaign link that changed it."""
    at: datetime


Input = TouchFact | PlacedOrder | Refunded | Cancelled | Promotion

Name = Callable[[str], str]
"""Turns a score's name (order id, what, cause) into its deterministic event id."""


def observe(
    book: CustomerBook,
    event: Input,
    rules: AttributionRules | RulesAt,
    lateness: timedelta,
    name: Name,
) -> tuple[CustomerBook, list[Score]]:
    """One input for this customer: the new book, and the scores it emits. ``rules`` may be
    the store's rules over time: each order is scored by those in effect when it was placed."""
    before = book
    book = _added(book, event)
    if book == before:
        return book, []  # a duplicate, or an input that changes nothing
    rules_at = rules if callable(rules) else _constant(rules)
    # Touches are kept for the longest window in effect over the span still correctable.
    windows = [
        *rules_at(event.at).lookback.values(),
        *rules_at(event.at - lateness).lookback.values(),
    ]
    book = _aged(book, event.at, max(windows) + lateness)
    return _settle(book, rules_at, lateness, name, (event.event_id, event.at))


def _constant(rules: AttributionRules) -> RulesAt:
    return lambda _: rules


def standing_minor(scores: list[Score]) -> dict[str, int]:
    """Each order's standing incremental revenue: the sum of its scores and reversals."""
    totals: dict[str, int] = {}
    for score in scores:
        totals[score.order_id] = totals.get(score.order_id, 0) + score.incremental_minor
    return totals


# -- internals -------------------------------------------------------------------------------------


def _order(book: CustomerBook, order_id: str) -> OrderBook:
    return dict(book.orders).get(order_id, OrderBook())


def _with_order(book: CustomerBook, order_id: str, order: OrderBook) -> CustomerBook:
    orders = dict(book.orders)
    orders[order_id] = order
    return book.model_copy(update={"orders": tuple(sorted(orders.items()))})


def _added(book: CustomerBook, event: Input) -> CustomerBook:
    if isinstance(event, TouchFact):
        if any(t.touchpoint_id == event.touchpoint_id for t in book.touches):
            return book
        touches = tuple(sorted((*book.touches, event), key=lambda t: (t.at, t.touchpoint_id)))
        return book.model_copy(update={"touches": touches})
    order = _order(book, event.order_id)
    if isinstance(event, PlacedOrder):
        # The earliest created/paid event (by time, then id) is the order.
        if order.placed is not None and _when(order.placed) <= _when(event):
            return book
        first = (event.at, event.order_id)
        book = book.model_copy(update={"first_order": min(first, book.first_order or first)})
        return _with_order(book, event.order_id, order.model_copy(update={"placed": event}))
    if isinstance(event, Refunded):
        if any(r.refund_id == event.refund.refund_id for r in order.refunds):
            return book
        refunds = tuple(sorted((*order.refunds, event.refund), key=lambda r: (r.at, r.refund_id)))
        return _with_order(book, event.order_id, order.model_copy(update={"refunds": refunds}))
    if isinstance(event, Cancelled):
        if order.cancelled is not None and _cancel_key(order.cancelled) <= (
            event.at,
            event.event_id,
        ):
            return book
        cancelled = (event.event_id, event.at)
        return _with_order(book, event.order_id, order.model_copy(update={"cancelled": cancelled}))
    lines = dict(order.promoted)
    if lines.get(event.line_item_id) == event.promoted:
        return book
    lines[event.line_item_id] = event.promoted
    promoted = tuple(sorted(lines.items()))
    return _with_order(book, event.order_id, order.model_copy(update={"promoted": promoted}))


def _when(placed: PlacedOrder) -> tuple[datetime, str]:
    return placed.at, placed.event_id


def _cancel_key(cancelled: tuple[str, datetime]) -> tuple[datetime, str]:
    return cancelled[1], cancelled[0]


def _aged(book: CustomerBook, at: datetime, keep: timedelta) -> CustomerBook:
    """Advance the customer's stream time; drop the touches older than ``keep`` before it (the
    longest lookback plus the lateness: too old to count for any order still correctable)."""
    newest = max(at, book.newest_at) if book.newest_at else at
    touches = tuple(t for t in book.touches if t.at >= newest - keep)
    return book.model_copy(update={"newest_at": newest, "touches": touches})


def _settle(
    book: CustomerBook,
    rules: RulesAt,
    lateness: timedelta,
    name: Name,
    cause: tuple[str, datetime],
) -> tuple[CustomerBook, list[Score]]:
    """Bring every order's emitted scores to what the book says; ``cause`` (id, time) is the
    event that changed the book, named in the corrections it leads to."""
    out: list[Score] = []
    orders = tuple(
        (order_id, _settle_order(book, order, rules, lateness, name, cause, out))
        for order_id, order in book.orders
    )
    return book.model_copy(update={"orders": orders}), out


def _desired(book: CustomerBook, order: OrderBook, rules_at: RulesAt) -> Score | None:
    placed = order.placed
    if placed is None or order.cancelled is not None:
        return None
    rules = rules_at(placed.at)
    promoted = dict(order.promoted)
    lines = placed.product_lines
    if any(line not in promoted for line, _ in lines):
        return None  # a line's promotion is still on its way
    counted = in_window([t.touch() for t in book.touches], placed.at, rules)
    found = confidence(
        counted,
        first_order=book.first_order == (placed.at, placed.order_id),
        promoted_items=[product for line, product in lines if promoted[line]],
    )
    incremental = found.bp >= rules.incremental_at_bp
    incremental_minor = placed.total_minor if incremental else 0
    facts = {t.touchpoint_id: t for t in book.touches}
    return Score(
        event_id="",
        order_id=placed.order_id,
        at=placed.at,
        confidence_bp=found.bp,
        is_incremental=incremental,
        model=rules.model,
        order_total_minor=placed.total_minor,
        currency=placed.currency,
        incremental_minor=incremental_minor,
        credits=tuple(
            ScoredCredit(
                touchpoint_id=c.touch.touchpoint_id,
                campaign_id=c.touch.campaign_id,
                channel=c.touch.channel,
                weight_bp=c.weight_bp,
                amount_minor=c.amount_minor,
            )
            for c in credits(counted, placed.at, incremental_minor, rules)
        ),
        signals=found.signals,
        holdout=book.customer_key is not None and in_holdout(book.customer_key, rules.holdout_bp),
        caused_by=(placed.event_id, *(facts[t.touchpoint_id].event_id for t in counted)),
    )


def _settle_order(
    book: CustomerBook,
    order: OrderBook,
    rules: RulesAt,
    lateness: timedelta,
    name: Name,
    cause: tuple[str, datetime],
    out: list[Score],
) -> OrderBook:
    standing = order.standing
    frozen = (
        standing is not None
        and order.cancelled is None
        and book.newest_at is not None
        and standing.at < book.newest_at - lateness
    )
    if not frozen:
        wanted = _desired(book, order, rules)
        if standing is not None and (wanted is None or wanted.content() != standing.content()):
            why = "cancellation" if order.cancelled is not None else "correction"
            cause_id, at = order.cancelled if order.cancelled is not None else cause
            out.append(
                _reversal(
                    order,
                    order.left_minor,
                    order.left_credits,
                    order.revenue_left,
                    why,
                    cause_id,
                    at,
                    name,
                )
            )
            order = order.model_copy(
                update={
                    "standing": None,
                    "left_minor": 0,
                    "left_credits": (),
                    "refunds_applied": (),
                    "revenue_left": 0,
                }
            )
        if wanted is not None and order.standing is None:
            scored = order.scored + 1
            placed_score = wanted.model_copy(
                update={
                    "event_id": name(f"{wanted.order_id}/score/{scored}"),
                    "revenue_change_minor": wanted.order_total_minor,
                }
            )
            out.append(placed_score)
            order = order.model_copy(
                update={
                    "standing": placed_score,
                    "scored": scored,
                    "left_minor": placed_score.incremental_minor,
                    "left_credits": tuple(c.amount_minor for c in placed_score.credits),
                    "revenue_left": placed_score.order_total_minor,
                }
            )
    if order.standing is not None:
        for refund in order.refunds:
            if refund.refund_id not in order.refunds_applied:
                order = _apply_refund(order, refund, name, out)
    return order


def _apply_refund(order: OrderBook, refund: RefundFact, name: Name, out: list[Score]) -> OrderBook:
    standing = order.standing
    assert standing is not None
    applied = (*order.refunds_applied, refund.refund_id)
    refunded = sum(r.amount_minor for r in order.refunds if r.refund_id in applied)
    total = standing.order_total_minor
    if total <= 0 or refunded >= total:
        target = standing.incremental_minor
    else:
        target = allocate(standing.incremental_minor, [refunded, total - refunded])[0]
    delta = max(0, min(order.left_minor, target - (standing.incremental_minor - order.left_minor)))
    parts = (
        allocate(delta, list(order.left_credits))
        if delta and sum(order.left_credits) > 0
        else [0] * len(order.left_credits)
    )
    refunded_revenue = max(0, min(order.revenue_left, refund.amount_minor))
    out.append(
        _reversal(
            order,
            delta,
            tuple(parts),
            refunded_revenue,
            f"refund:{refund.refund_id}",
            refund.event_id,
            refund.at,
            name,
        )
    )
    return order.model_copy(
        update={
            "refunds_applied": applied,
            "left_minor": order.left_minor - delta,
            "left_credits": tuple(a - b for a, b in zip(order.left_credits, parts, strict=True)),
            "revenue_left": order.revenue_left - refunded_revenue,
        }
    )


def _reversal(
    order: OrderBook,
    amount: int,
    credit_amounts: tuple[int, ...],
    revenue: int,
    why: str,
    cause_id: str,
    at: datetime,
    name: Name,
) -> Score:
    standing = order.standing
    assert standing is not None
    return standing.model_copy(
        update={
            "event_id": name(f"{standing.order_id}/reversal/{standing.event_id}/{why}/{cause_id}"),
            "at": max(at, standing.at),
            "incremental_minor": -amount,
            "credits": tuple(
                c.model_copy(update={"amount_minor": -a})
                for c, a in zip(standing.credits, credit_amounts, strict=True)
            ),
            "signals": (f"reversal:{why}",),
            "reverses": standing.event_id,
            "caused_by": (standing.event_id, cause_id),
            "revenue_change_minor": -revenue,
        }
    )
