"""The billing ledger's postings, pure: accounts, entry ids, and the entries that scores,
touchpoint costs, spend reports and settlements book (docs/ledger.md). The plans that bill from
them are in :mod:`revloop.billing`.

Each store has one ledger per currency. Its accounts come in pairs, a debit-normal one and its
counterpart:

- ``attributed_incremental_revenue`` / ``attribution_source``: the revenue revloop's marketing
  earned the merchant, and the orders it came from;
- ``success_fee_receivable`` / ``fee_revenue``: what the merchant owes revloop, revloop's income;
- ``store_revenue`` / ``sales``: every order's revenue, net of refunds and cancellations;
- ``ad_spend`` / ``spend_source``: what the ads cost, from touchpoints and spend reports;
- ``baseline_revenue`` / ``baseline_source``: the baseline a settled period was measured against.

All but the fee pair are memo accounts: they hold the figures the plans bill on, so an invoice
recomputes from the ledger alone. An entry moves a positive amount (in the currency's minor
units) from its credit account to its debit account, so every entry's debits equal its credits
and a ledger's balances sum to zero. Entries are never changed: a correction is a new entry that
reverses an old one and says so. Every id is derived from what caused the entry, so a replayed
or duplicated event books nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from revloop.ids import deterministic_id


class Account(StrEnum):
    ATTRIBUTED_INCREMENTAL_REVENUE = "attributed_incremental_revenue"
    ATTRIBUTION_SOURCE = "attribution_source"
    SUCCESS_FEE_RECEIVABLE = "success_fee_receivable"
    FEE_REVENUE = "fee_revenue"
    # Memo pairs: the other plans' inputs, booked so an invoice recomputes from the ledger alone.
    STORE_REVENUE = "store_revenue"
    SALES = "sales"
    AD_SPEND = "ad_spend"
    SPEND_SOURCE = "spend_source"
    BASELINE_REVENUE = "baseline_revenue"
    BASELINE_SOURCE = "baseline_source"


class Code(StrEnum):
    ATTRIBUTED_REVENUE = "attributed_revenue"
    ATTRIBUTED_REVENUE_REVERSAL = "attributed_revenue_reversal"
    SUCCESS_FEE = "success_fee"
    SUCCESS_FEE_REVERSAL = "success_fee_reversal"
    REVENUE = "revenue"
    REVENUE_REVERSAL = "revenue_reversal"
    AD_SPEND = "ad_spend"
    AD_SPEND_REVERSAL = "ad_spend_reversal"
    BASELINE = "baseline"


_ACCOUNTS: dict[Code, tuple[Account, Account]] = {
    Code.ATTRIBUTED_REVENUE: (Account.ATTRIBUTED_INCREMENTAL_REVENUE, Account.ATTRIBUTION_SOURCE),
    Code.ATTRIBUTED_REVENUE_REVERSAL: (
        Account.ATTRIBUTION_SOURCE,
        Account.ATTRIBUTED_INCREMENTAL_REVENUE,
    ),
    Code.SUCCESS_FEE: (Account.SUCCESS_FEE_RECEIVABLE, Account.FEE_REVENUE),
    Code.SUCCESS_FEE_REVERSAL: (Account.FEE_REVENUE, Account.SUCCESS_FEE_RECEIVABLE),
    Code.REVENUE: (Account.STORE_REVENUE, Account.SALES),
    Code.REVENUE_REVERSAL: (Account.SALES, Account.STORE_REVENUE),
    Code.AD_SPEND: (Account.AD_SPEND, Account.SPEND_SOURCE),
    Code.AD_SPEND_REVERSAL: (Account.SPEND_SOURCE, Account.AD_SPEND),
    Code.BASELINE: (Account.BASELINE_REVENUE, Account.BASELINE_SOURCE),
}
"""Each code's (debit, credit) accounts: a code says everything about an entry's direction."""


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
    """The id of the attributed revenue a score books (what a reversal's link names)."""
    return deterministic_id(f"ledger/score/{score_event_id}")


def revenue_entry_id(score_event_id: str) -> str:
    """The id of the store revenue a score books."""
    return deterministic_id(f"ledger/revenue/{score_event_id}")


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


def book(
    code: Code,
    entry_id: str,
    envelope: Mapping[str, Any],
    money: Mapping[str, Any],
    *,
    period: str | None = None,
    order_id: str | None = None,
    reverses_entry_id: str | None = None,
    caused_by: tuple[str, ...] | None = None,
) -> Entry:
    """An entry of ``code`` (which gives its accounts) for the event in ``envelope``: its store,
    time, period (unless given) and cause."""
    debit, credit = _ACCOUNTS[code]
    at: datetime = envelope["occurred_at"]
    return Entry(
        entry_id=entry_id,
        store_id=envelope["store_id"],
        platform=envelope["platform"],
        currency=money["currency"],
        debit=debit,
        credit=credit,
        amount_minor=int(money["amount_minor"]),
        code=code,
        period=period or period_of(at),
        order_id=order_id,
        reverses_entry_id=reverses_entry_id,
        at=at,
        caused_by=(envelope["event_id"],) if caused_by is None else caused_by,
    )


def score_entries(score: Mapping[str, Any]) -> list[Entry]:
    """What an AttributionScore value books:

    - its incremental revenue (a reversal: the reverse of its share, linked to the original's
      entry); nothing for a zero amount or a holdout customer, the control group;
    - its change to the store's revenue (``revenue_change``, holdouts included: they are
      customers like any other), linked the same way.
    """
    booked = []
    if not score["holdout"]:
        booked += _score_move(score, score["incremental_revenue"], Code.ATTRIBUTED_REVENUE)
    # Absent from scores written before it existed.
    booked += _score_move(score, score.get("revenue_change"), Code.REVENUE)
    return booked


_REVERSAL = {
    Code.ATTRIBUTED_REVENUE: (Code.ATTRIBUTED_REVENUE_REVERSAL, score_entry_id),
    Code.REVENUE: (Code.REVENUE_REVERSAL, revenue_entry_id),
}


def _score_move(
    score: Mapping[str, Any], money: Mapping[str, Any] | None, gain: Code
) -> list[Entry]:
    """A score's signed amount as a ``gain`` entry, or as its reversal (linked to the entry the
    reversed score booked); nothing for none or zero."""
    amount = int(money["amount_minor"]) if money else 0
    if not money or not amount:
        return []
    envelope, reverses = score["envelope"], score["reverses"]
    loss, entry_id = _REVERSAL[gain]
    gained = reverses is None
    if (amount > 0) != gained:
        raise ValueError(
            f"score {envelope['event_id']}: a score books a gain and a reversal a loss"
            f" ({gain.value})"
        )
    return [
        book(
            gain if gained else loss,
            entry_id(envelope["event_id"]),
            envelope,
            {"amount_minor": abs(amount), "currency": money["currency"]},
            order_id=score["order_id"],
            reverses_entry_id=None if gained else entry_id(reverses),
        )
    ]


def touch_spend_entries(touchpoint: Mapping[str, Any]) -> list[Entry]:
    """A Touchpoint's media cost as ad spend (a touch without a cost books nothing). The id is
    the touch event's: a resent touch books its cost once."""
    cost = touchpoint.get("cost")
    if not cost or int(cost["amount_minor"]) <= 0:
        return []
    envelope = touchpoint["envelope"]
    return [
        book(
            Code.AD_SPEND,
            deterministic_id(f"ledger/spend/touch/{envelope['event_id']}"),
            envelope,
            cost,
        )
    ]


@dataclass(frozen=True)
class DaySpend:
    """The standing report of one campaign's day: what its spend entries add up to."""

    reported_at: datetime
    amount_minor: int
    currency: str
    event_id: str


def spend_report_entries(
    standing: DaySpend | None, report: Mapping[str, Any]
) -> tuple[list[Entry], DaySpend | None]:
    """A CampaignSpend report against the day's standing one: entries for the difference (more
    spend, or a reversal of the part restated away; a change of currency takes the old amount
    back whole) and the new standing report. A report no newer than the standing one changes
    nothing: reports may arrive out of order."""
    envelope = report["envelope"]
    at: datetime = envelope["occurred_at"]
    if standing is not None and at <= standing.reported_at:
        return [], standing
    spend = report["spend"]
    amount, currency = int(spend["amount_minor"]), spend["currency"]
    if amount < 0:
        raise ValueError(f"spend report {envelope['event_id']}: spend is not negative")
    period = report["day"].strftime("%Y-%m")
    was = standing.amount_minor if standing is not None and standing.currency == currency else 0
    booked = []
    causes = (envelope["event_id"],) + ((standing.event_id,) if standing is not None else ())
    if standing is not None and standing.currency != currency and standing.amount_minor:
        booked.append(
            _spend(
                report,
                Code.AD_SPEND_REVERSAL,
                standing.amount_minor,
                standing.currency,
                period,
                causes,
            )
        )
    if amount != was:
        code = Code.AD_SPEND if amount > was else Code.AD_SPEND_REVERSAL
        booked.append(_spend(report, code, abs(amount - was), currency, period, causes))
    return booked, DaySpend(at, amount, currency, envelope["event_id"])


def _spend(
    report: Mapping[str, Any],
    code: Code,
    amount: int,
    currency: str,
    period: str,
    causes: tuple[str, ...],
) -> Entry:
    envelope = report["envelope"]
    return book(
        code,
        deterministic_id(f"ledger/spend/report/{envelope['event_id']}/{currency}"),
        envelope,
        {"amount_minor": amount, "currency": currency},
        period=period,
        caused_by=causes,
    )


def fee_entry(
    store_id: str, platform: str, currency: str, period: str, fee: int, at: datetime
) -> Entry | None:
    """The period's fee as an entry (a credit note when negative; none when zero). Its id is
    the store's, period's and currency's, whichever way it points: one fee per period."""
    if fee == 0:
        return None
    code = Code.SUCCESS_FEE if fee > 0 else Code.SUCCESS_FEE_REVERSAL
    return _period_entry("fee", code, store_id, platform, currency, period, abs(fee), at)


def baseline_entry(
    store_id: str, platform: str, currency: str, period: str, amount: int, at: datetime
) -> Entry:
    """The baseline monthly revenue a period is measured against (baseline uplift), booked
    when it is settled: the stores table may change later, the settled period's figure not."""
    return _period_entry(
        "baseline", Code.BASELINE, store_id, platform, currency, period, amount, at
    )


def _period_entry(
    kind: str,
    code: Code,
    store_id: str,
    platform: str,
    currency: str,
    period: str,
    amount: int,
    at: datetime,
) -> Entry:
    return book(
        code,
        deterministic_id(f"ledger/{kind}/{store_id}/{period}/{currency}"),
        {"event_id": "", "store_id": store_id, "platform": platform, "occurred_at": at},
        {"amount_minor": amount, "currency": currency},
        period=period,
        caused_by=(),
    )


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
