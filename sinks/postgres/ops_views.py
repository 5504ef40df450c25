"""What ops read from the sink's tables: open circuit breakers, flapping products, ledger totals.
Plain typed queries on a psycopg connection, shared by the sink's /metrics (read at scrape time,
sinks/postgres/metrics.py) and the ops console, so both show the same figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from revloop.ledger import Account

TOTAL_ACCOUNTS: tuple[Account, ...] = (
    Account.ATTRIBUTED_INCREMENTAL_REVENUE,
    Account.SUCCESS_FEE_RECEIVABLE,
    Account.STORE_REVENUE,
    Account.AD_SPEND,
    Account.BASELINE_REVENUE,
)
"""The debit-normal account of each pair: its counterpart's balance is the same amount negated
(every code moves money within one pair), so these say everything."""


@dataclass(frozen=True)
class OpenBreaker:
    """A product (or variant) whose newest breaker action is a pause: its ads are held."""

    store_id: str
    product_id: str
    variant_id: str | None
    campaign_ids: tuple[str, ...]
    since: datetime
    """The pause's event time (the sell-out's own time)."""
    reason: str
    available: int


@dataclass(frozen=True)
class LedgerTotal:
    """An account's balance over every store, in one currency (integer minor units)."""

    account: str
    currency: str
    amount_minor: int
    entries: int
    """How many entries moved it (bookings and reversals)."""


def open_breakers(conn: psycopg.Connection[Any]) -> list[OpenBreaker]:
    """Every open breaker, oldest pause first (the ``open_circuit_breakers`` view, migration 0002:
    the newest action per store, product and variant is a pause)."""
    rows = conn.execute(
        """
        SELECT store_id, product_id, variant_id, campaign_ids, paused_at, reason, available
        FROM open_circuit_breakers
        ORDER BY paused_at, store_id, product_id, variant_id NULLS FIRST
        """
    ).fetchall()
    return [
        OpenBreaker(
            store_id=store,
            product_id=product,
            variant_id=variant,
            campaign_ids=tuple(campaigns or ()),
            since=since,
            reason=reason,
            available=int(available),
        )
        for store, product, variant, campaigns, since, reason, available in rows
    ]


def flapping_products(conn: psycopg.Connection[Any], window: timedelta, min_actions: int) -> int:
    """How many products (or variants) had at least ``min_actions`` breaker actions published in
    the last ``window`` of wall-clock time. ``published_at`` (the worker's Kafka timestamp) is
    used, not the event time: an alert asks whether ads are flapping now, and events that
    happened long ago but arrive late count when they act."""
    row = conn.execute(
        """
        SELECT count(*) FROM (
            SELECT 1 FROM circuit_breaker_actions
            WHERE published_at >= now() - %s
            GROUP BY store_id, product_id, coalesce(variant_id, '')
            HAVING count(*) >= %s
        ) flapping
        """,
        (window, min_actions),
    ).fetchone()
    return int(row[0]) if row else 0


def ledger_totals(conn: psycopg.Connection[Any]) -> list[LedgerTotal]:
    """Each debit-normal account's balance (debits minus credits, so net of reversals) per
    currency, summed over stores. Account names in the table are ``<store>/<currency>/<account>``
    (:func:`revloop.ledger.account_name`); the last part is the account."""
    rows = conn.execute(
        """
        SELECT account, currency, sum(amount)::bigint, count(*) FROM (
            SELECT regexp_replace(debit_account, '^.*/', '') AS account, currency,
                   amount_minor AS amount
            FROM ledger_entries
            UNION ALL
            SELECT regexp_replace(credit_account, '^.*/', ''), currency, -amount_minor
            FROM ledger_entries
        ) moves
        WHERE account = ANY(%s)
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        ([a.value for a in TOTAL_ACCOUNTS],),
    ).fetchall()
    return [
        LedgerTotal(account=account, currency=currency, amount_minor=int(total), entries=int(n))
        for account, currency, total, n in rows
    ]
