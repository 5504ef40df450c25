"""The billing ledger's postings, pure: accounts, entry ids and the entries an attribution score
books (docs/ledger.md).

Each store has one ledger per currency, and four accounts in it:

- ``attributed_incremental_revenue``: the revenue revloop's marketing earned the merchant (a
  memo account, debit-normal);
- ``attribution_source``: its counterpart, the orders that revenue came from (credit-normal);
- ``success_fee_receivable``: what the merchant owes revloop;
- ``fee_revenue``: revloop's income from it.

An entry moves an amount (positive, in the currency's minor units) from its credit account to
its debit account, so every entry's debits equal its credits and a ledger's balances sum to
zero. Entries are never changed: a correction is a new entry that reverses an old one and says
so. Every id is derived from what caused the entry, so a replayed or duplicated score books
nothing twice.

An attribution score books its incremental revenue; a reversal (a refund's share, a
cancellation, a correction) books the reverse, linked to the original's entry. Scores of
holdout customers book nothing: they are the control group. The success fee is booked at
settlement, once per store, period and currency, on the period's net incremental revenue: the
one place a fee is rounded (half to even, :func:`fee_minor`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any

from revloop.ids import deterministic_id
from revloop.money import allocate


class Account(StrEnum):
    ATTRIBUTED_INCREMENTAL_REVENUE = "attributed_incremental_revenue"
    ATTRIBUTION_SOURCE = "attribution_source"
    SUCCESS_FEE_RECEIVABLE = "success_fee_receivable"
    FEE_REVENUE = "fee_revenue"


class Code(StrEnum):
    ATTRIBUTED_REVENUE = "attributed_revenue"
    ATTRIBUTED_REVENUE_REVERSAL = "attributed_revenue_reversal"
    SUCCESS_FEE = "success_fee"
    SUCCESS_FEE_REVERSAL = "success_fee_reversal"


def ledger_name(store_id: str, currency: str) -> str:
    return f"{store_id}/{currency}"


def account_name(store_id: str, currency: str, account: Account) -> str:
    """``<store>/<currency>/<account>``: accounts are per store and currency."""
    return f"{ledger_name(store_id, currency)}/{account.value}"


def period_of(at: datetime) -> str:
    """The billing period (``YYYY-MM``, UTC) of an instant."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a billing instant needs a zone")
    return at.astimezone(UTC).strftime("%Y-%m")


def score_entry_id(score_event_id: str) -> str:
    """The id of the entry a score books (what a reversal's ``reverses_entry_id`` names)."""
    return deterministic_id(f"ledger/score/{score_event_id}")


@dataclass(frozen=True)
class Entry:
    entry_id: str
    store_id: str
    platform: str
    currency: str
    debit: Account
    credit: Account
    amount_minor: int
    code: Code
    period: str
    order_id: str | None
    reverses_entry_id: str | None
    at: datetime
    caused_by: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.amount_minor <= 0:
            raise ValueError("an entry moves a positive amount")
        if self.debit == self.credit:
            raise ValueError("an entry moves between two accounts")


def score_entries(score: Mapping[str, Any]) -> list[Entry]:
    """What an AttributionScore value books: its incremental revenue, or the reverse of the
    original's share for a reversal; nothing for a zero amount or a holdout customer."""
    envelope, revenue = score["envelope"], score["incremental_revenue"]
    amount = int(revenue["amount_minor"])
    if amount == 0 or score["holdout"]:
        return []
    reverses = score["reverses"]
    gained = reverses is None
    if (amount > 0) != gained:
        raise ValueError(
            f"score {envelope['event_id']}: a score books a gain and a reversal a loss"
        )
    at: datetime = envelope["occurred_at"]
    return [
        Entry(
            entry_id=score_entry_id(envelope["event_id"]),
            store_id=envelope["store_id"],
            platform=envelope["platform"],
            currency=revenue["currency"],
            debit=Account.ATTRIBUTED_INCREMENTAL_REVENUE if gained else Account.ATTRIBUTION_SOURCE,
            credit=Account.ATTRIBUTION_SOURCE if gained else Account.ATTRIBUTED_INCREMENTAL_REVENUE,
            amount_minor=abs(amount),
            code=Code.ATTRIBUTED_REVENUE if gained else Code.ATTRIBUTED_REVENUE_REVERSAL,
            period=period_of(at),
            order_id=score["order_id"],
            reverses_entry_id=None if gained else score_entry_id(reverses),
            at=at,
            caused_by=(envelope["event_id"],),
        )
    ]


def fee_minor(amount_minor: int, fee_bp: int) -> int:
    """``amount * fee_bp / 10000`` in whole minor units, half to even: the one rounding of a fee
    (at settlement, on a period's net amount). Exact integer arithmetic."""
    if fee_bp < 0:
        raise ValueError("a fee rate is not negative")
    if amount_minor < 0:
        return -fee_minor(-amount_minor, fee_bp)
    quotient, remainder = divmod(amount_minor * fee_bp, 10_000)
    if remainder * 2 > 10_000 or (remainder * 2 == 10_000 and quotient % 2 == 1):
        quotient += 1
    return quotient


def entry_value(entry: Entry) -> dict[str, Any]:
    """The entry as a LedgerEntry value (billing.ledger-entries.v1)."""
    return {
        "envelope": {
            "event_id": entry.entry_id,
            "store_id": entry.store_id,
            "platform": entry.platform,
            "occurred_at": entry.at,
            "received_at": entry.at,
            "source": "derived",
            "caused_by": list(entry.caused_by),
        },
        "entry_id": entry.entry_id,
        "ledger": ledger_name(entry.store_id, entry.currency),
        "debit_account": account_name(entry.store_id, entry.currency, entry.debit),
        "credit_account": account_name(entry.store_id, entry.currency, entry.credit),
        "amount": {"amount_minor": entry.amount_minor, "currency": entry.currency},
        "code": entry.code.value,
        "reverses_entry_id": entry.reverses_entry_id,
        "order_id": entry.order_id,
        "period": entry.period,
    }


GENESIS = "0" * 64
"""The hash before a store's first entry."""


def chain_hash(previous: str, fields: tuple[object, ...]) -> str:
    """An entry's link in its store's chain: SHA-256 over the previous link and the entry's
    fields (``None`` as empty, times in ISO 8601), so changing, dropping or reordering any entry
    breaks every link after it."""
    text = "\x1f".join("" if f is None else _text(f) for f in (previous, *fields))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(value: object) -> str:
    # In UTC whatever zone the database session hands back: the link must not depend on it.
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


# -- settlement (attributed incremental plan) -----------------------------------------------------


@dataclass(frozen=True)
class Booked:
    """A ledger entry as settlement reads it back."""

    entry_id: str
    code: str
    amount_minor: int
    currency: str
    order_id: str | None
    caused_by: tuple[str, ...] = ()
    """The scores behind it (event ids)."""


@dataclass(frozen=True)
class ProofLine:
    """One billed order: its net incremental revenue in the period, its share of the fee, and
    the entries behind both."""

    order_id: str
    incremental_minor: int
    fee_minor: int
    entry_ids: tuple[str, ...]
    scores: tuple[str, ...] = ()
    """The scores its entries book (event ids): the proof's confidence and credits."""


@dataclass(frozen=True)
class Settlement:
    currency: str
    incremental_minor: int
    """The period's attributed incremental revenue, net of reversals (may be negative when an
    adjustment period holds more reversals than gains)."""
    fee_minor: int
    lines: tuple[ProofLine, ...]


def settle(entries: Sequence[Booked], fee_bp: int) -> list[Settlement]:
    """The attributed-incremental plan over one period's entries, per currency: the net
    incremental revenue, the fee on it (rounded once, half to even), and each order's share of
    both. The shares are split by largest remainder (:func:`revloop.money.allocate`) over the
    orders' net amounts, so the proof's lines sum exactly to the invoice. A pure function of the
    entries: an invoice recomputed from the ledger comes out identical."""
    by_currency: dict[str, dict[str, list[Booked]]] = {}
    for entry in entries:
        sign = _SIGN.get(entry.code)
        if sign is None or entry.order_id is None:
            continue
        by_currency.setdefault(entry.currency, {}).setdefault(entry.order_id, []).append(entry)
    settled = []
    for currency, orders in sorted(by_currency.items()):
        nets = {
            order: sum(_SIGN[e.code] * e.amount_minor for e in booked)
            for order, booked in sorted(orders.items())
        }
        billed = [order for order, net in nets.items() if net != 0]
        total = sum(nets.values())
        fee = fee_minor(total, fee_bp)
        shares = _split(fee, [nets[o] for o in billed])
        lines = tuple(
            ProofLine(
                order,
                nets[order],
                share,
                tuple(sorted(e.entry_id for e in orders[order])),
                tuple(sorted({c for e in orders[order] for c in e.caused_by})),
            )
            for order, share in zip(billed, shares, strict=True)
        )
        settled.append(Settlement(currency, total, fee, lines))
    return settled


_SIGN = {Code.ATTRIBUTED_REVENUE.value: 1, Code.ATTRIBUTED_REVENUE_REVERSAL.value: -1}


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
    parts = [fee_minor_exact(Fraction(fee) * w) for w in weights]
    largest = max(range(len(nets)), key=lambda i: (abs(nets[i]), -i))
    parts[largest] += fee - sum(parts)
    return parts


def fee_minor_exact(value: Fraction) -> int:
    """A fraction of minor units rounded half to even."""
    floor = value.numerator // value.denominator
    rest = value - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return floor


def fee_entry(
    store_id: str, platform: str, currency: str, period: str, fee: int, at: datetime
) -> Entry | None:
    """The period's fee as a ledger entry (a credit note when negative; none when zero). Its id
    is the store's, period's and currency's, so settling twice posts it once."""
    if fee == 0:
        return None
    charged = fee > 0
    return Entry(
        entry_id=deterministic_id(f"ledger/fee/{store_id}/{period}/{currency}"),
        store_id=store_id,
        platform=platform,
        currency=currency,
        debit=Account.SUCCESS_FEE_RECEIVABLE if charged else Account.FEE_REVENUE,
        credit=Account.FEE_REVENUE if charged else Account.SUCCESS_FEE_RECEIVABLE,
        amount_minor=abs(fee),
        code=Code.SUCCESS_FEE if charged else Code.SUCCESS_FEE_REVERSAL,
        period=period,
        order_id=None,
        reverses_entry_id=None,
        at=at,
        caused_by=(),
    )
