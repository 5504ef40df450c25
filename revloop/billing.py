"""Billing plans, pure: what a store owes for a period, from the period's ledger entries alone
(docs/ledger.md, "Plans").

Each store's contract chooses one plan (``billing_plan``, a per-store setting):

- **attributed incremental**: the period's attributed incremental revenue, net of reversals,
  times the success fee (``billing_fee_bp``, 20%). A period that nets negative (an adjustment
  period with more refunds than gains) gets a credit note.
- **baseline uplift**: the period's store revenue (every order, net of refunds and
  cancellations) minus the baseline monthly revenue times the growth factor
  (``billing_growth_bp``), floored at 0, times the success fee.
- **ROAS profit share**: the attributed incremental revenue minus what the ad spend would have
  returned at the baseline ROAS (spend times ``baseline_roas_bp``, 3.0 by default), floored at 0,
  times the share (``billing_roas_share_bp``, 15%).

Every figure is a sum of entries; the terms (rates) are the contract's. Amounts are rounded in
two documented places only, half to even: the expected revenue (a figure times a rate) and the
fee (:func:`fee_minor`). Each billed order's share of the fee is a split of that one figure
(largest remainder), so a proof's lines sum exactly to its invoice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from revloop.ledger import Code
from revloop.money import allocate, half_even

BP = 10_000
"""Basis points in a whole: 2000 bp is 20%, 30000 bp a ROAS of 3.0."""


class Plan(StrEnum):
    ATTRIBUTED_INCREMENTAL = "attributed_incremental"
    BASELINE_UPLIFT = "baseline_uplift"
    ROAS_PROFIT_SHARE = "roas_profit_share"


@dataclass(frozen=True)
class Terms:
    """A contract's rates for one period."""

    plan: Plan
    fee_bp: int
    """The success fee (attributed incremental, baseline uplift) or the profit share (ROAS)."""
    growth_bp: int = BP
    """Baseline uplift: the growth factor the baseline is expected to grow by (10000 = 1.0)."""
    baseline_roas_bp: int = 3 * BP
    """ROAS profit share: the return the spend would have had anyway (30000 = 3.0)."""


@dataclass(frozen=True)
class Booked:
    """A ledger entry as settlement reads it back."""

    entry_id: str
    code: str
    amount_minor: int
    currency: str
    order_id: str | None
    caused_by: tuple[str, ...] = ()
    """The events behind it (a score's event id, a report's)."""


@dataclass(frozen=True)
class ProofLine:
    """One billed order: what it counts for in the period (its net incremental revenue, or for
    baseline uplift its net revenue), its share of the fee, and the entries behind both."""

    order_id: str
    amount_minor: int
    fee_minor: int
    entry_ids: tuple[str, ...]
    scores: tuple[str, ...] = ()
    """The scores its entries book (event ids): the proof's confidence and credits."""


@dataclass(frozen=True)
class Settlement:
    """One currency's bill for a period."""

    currency: str
    plan: Plan
    incremental_minor: int
    """Attributed incremental revenue, net of reversals."""
    revenue_minor: int
    """Store revenue, net of refunds and cancellations."""
    spend_minor: int
    """Ad spend, net of restatements."""
    baseline_minor: int | None
    """Baseline uplift: the baseline monthly revenue booked for the period."""
    expected_minor: int | None
    """What the plan expects without revloop: baseline x growth, or spend x baseline ROAS."""
    base_minor: int
    """What the fee is charged on (may be negative only for attributed incremental)."""
    fee_minor: int
    lines: tuple[ProofLine, ...]
    attributed: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
    """Each order with attributed incremental revenue in the period: its net and its scores."""
    spend_entry_ids: tuple[str, ...] = ()


_ATTRIBUTED = {Code.ATTRIBUTED_REVENUE.value: 1, Code.ATTRIBUTED_REVENUE_REVERSAL.value: -1}
_REVENUE = {Code.REVENUE.value: 1, Code.REVENUE_REVERSAL.value: -1}
_SPEND = {Code.AD_SPEND.value: 1, Code.AD_SPEND_REVERSAL.value: -1}
_BASELINE = {Code.BASELINE.value: 1}


def settle(entries: Sequence[Booked], terms: Terms) -> list[Settlement]:
    """The plan over one period's entries, per currency with entries (for baseline uplift: a
    currency with a booked baseline), even when it bills nothing: the invoice still says so. A
    pure function of the entries and terms: an invoice recomputed from the ledger comes out
    identical."""
    by_currency: dict[str, list[Booked]] = {}
    for one in entries:
        by_currency.setdefault(one.currency, []).append(one)
    settled = []
    for currency, booked in sorted(by_currency.items()):
        incremental = _net(booked, _ATTRIBUTED)
        revenue = _net(booked, _REVENUE)
        spend = _net(booked, _SPEND)
        spend_ids = tuple(sorted(b.entry_id for b in booked if b.code in _SPEND))
        baseline: int | None = None
        if terms.plan is Plan.BASELINE_UPLIFT:
            if not any(b.code in _BASELINE for b in booked):
                continue
            baseline = _net(booked, _BASELINE)
            expected: int | None = scaled_minor(baseline, terms.growth_bp)
            base = max(0, revenue - scaled_minor(baseline, terms.growth_bp))
            counted = _REVENUE
        elif terms.plan is Plan.ROAS_PROFIT_SHARE:
            # Net spend below 0 (a restatement down, adjusting a settled month) expects nothing:
            # the additional revenue is never more than the attributed revenue.
            expected = scaled_minor(max(0, spend), terms.baseline_roas_bp)
            base = max(0, incremental - expected)
            counted = _ATTRIBUTED
        else:
            expected, base, counted = None, incremental, _ATTRIBUTED
        orders = _by_order(booked, counted)
        attributed_orders = _by_order(booked, _ATTRIBUTED)
        fee = fee_minor(base, terms.fee_bp)
        nets = {order: _net(lines, counted) for order, lines in orders.items()}
        billed = [order for order, net in nets.items() if net != 0]
        shares = _split(fee, [nets[o] for o in billed])
        lines = tuple(
            ProofLine(
                order,
                nets[order],
                share,
                tuple(sorted(e.entry_id for e in orders[order])),
                _causes(orders[order]),
            )
            for order, share in zip(billed, shares, strict=True)
        )
        settled.append(
            Settlement(
                currency=currency,
                plan=terms.plan,
                incremental_minor=incremental,
                revenue_minor=revenue,
                spend_minor=spend,
                baseline_minor=baseline,
                expected_minor=expected,
                base_minor=base,
                fee_minor=fee,
                lines=lines,
                attributed=tuple(
                    (order, _net(entries, _ATTRIBUTED), _causes(entries))
                    for order, entries in attributed_orders.items()
                ),
                spend_entry_ids=spend_ids,
            )
        )
    return settled


def _net(entries: Sequence[Booked], signs: dict[str, int]) -> int:
    return sum(signs[e.code] * e.amount_minor for e in entries if e.code in signs)


def _causes(entries: Sequence[Booked]) -> tuple[str, ...]:
    return tuple(sorted({c for e in entries for c in e.caused_by}))


def _by_order(entries: Sequence[Booked], signs: dict[str, int]) -> dict[str, list[Booked]]:
    orders: dict[str, list[Booked]] = {}
    for e in entries:
        if e.code in signs and e.order_id is not None:
            orders.setdefault(e.order_id, []).append(e)
    return dict(sorted(orders.items()))


def scaled_minor(amount_minor: int, bp: int) -> int:
    """``amount * bp / 10000`` in whole minor units, half to even. Exact integer arithmetic."""
    if bp < 0:
        raise ValueError("a rate is not negative")
    if amount_minor < 0:
        return -scaled_minor(-amount_minor, bp)
    quotient, remainder = divmod(amount_minor * bp, BP)
    if remainder * 2 > BP or (remainder * 2 == BP and quotient % 2 == 1):
        quotient += 1
    return quotient


def fee_minor(amount_minor: int, fee_bp: int) -> int:
    """The fee on a period's amount: the one rounding of a fee, half to even."""
    return scaled_minor(amount_minor, fee_bp)


def _split(fee: int, nets: Sequence[int]) -> list[int]:
    """``fee`` over the orders in proportion to their nets. An order whose net has the other
    sign than the total (a reversal of an earlier period's order) gets a share of that sign."""
    if not nets:
        return []
    positive = [max(n, 0) for n in nets]
    negative = [max(-n, 0) for n in nets]
    if fee == 0 or (not any(positive) and fee > 0) or (not any(negative) and fee < 0):
        return [0] * len(nets)
    total = sum(nets)
    # Each order's exact share of the fee is fee * net / total; allocate keeps the sum exact.
    weights = [Fraction(n, total) for n in nets] if total else [Fraction(0)] * len(nets)
    if all(w >= 0 for w in weights):
        return allocate(fee, weights)
    # Mixed signs: round each share half to even, then put what is left on the largest order.
    parts = [half_even(Fraction(fee) * w) for w in weights]
    largest = max(range(len(nets)), key=lambda i: (abs(nets[i]), -i))
    parts[largest] += fee - sum(parts)
    return parts
