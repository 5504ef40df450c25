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


_NEW_LEDGER_MOVES = """
WITH RECURSIVE stores(store_id) AS (
    -- Each store with entries, one index probe per store (a loose index scan).
    (SELECT store_id FROM ledger_entries ORDER BY store_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.store_id FROM ledger_entries e WHERE e.store_id > s.store_id
            ORDER BY e.store_id LIMIT 1)
    FROM stores s WHERE s.store_id IS NOT NULL
),
seen(store_id, seq) AS (SELECT * FROM unnest(%(stores)s::text[], %(seqs)s::bigint[])),
fresh AS (
    SELECT e.store_id, e.seq, e.debit_account, e.credit_account, e.currency, e.amount_minor
    FROM stores s
    LEFT JOIN seen ON seen.store_id = s.store_id
    CROSS JOIN LATERAL (
        -- A range scan of the (store_id, seq) index per store, at most a chunk each: the LIMIT
        -- also keeps the planner from pulling this into a join that scans the whole table.
        SELECT * FROM ledger_entries e
        WHERE e.store_id = s.store_id AND e.seq > coalesce(seen.seq, 0)
        ORDER BY e.seq
        LIMIT %(chunk)s
    ) e
    WHERE s.store_id IS NOT NULL
),
moves AS (
    SELECT regexp_replace(debit_account, '^.*/', '') AS account, currency, amount_minor AS amount
    FROM fresh
    UNION ALL
    SELECT regexp_replace(credit_account, '^.*/', ''), currency, -amount_minor FROM fresh
)
SELECT store_id, max(seq), NULL, NULL, NULL::bigint, count(*) FROM fresh GROUP BY store_id
UNION ALL
SELECT NULL, NULL, account, currency, sum(amount)::bigint, count(*) FROM moves
WHERE account = ANY(%(accounts)s) GROUP BY account, currency
"""


class LedgerTally:
    """Each debit-normal account's balance (debits minus credits, so net of reversals) per
    currency, summed over stores, kept up to date by reading only the entries that are new.

    Entries are immutable, and each store's are numbered 1, 2, 3... under a lock per store
    (sinks/postgres/ledger.py), so a snapshot holds a prefix of every store's chain: what is
    past each store's last seen ``seq`` is exactly what was not counted yet. Account names in
    the table are ``<store>/<currency>/<account>`` (:func:`revloop.ledger.account_name`); the
    last part is the account."""

    def __init__(self, budget: int = 200_000) -> None:
        self.budget = budget
        """About this many entries per read at most (shared evenly by the stores, at least 100
        each): a large ledger is caught up over several reads, each inside a scrape's time,
        instead of in one that times out every time."""
        self.complete = True
        """Whether the last read reached every store's newest entry (the totals are whole)."""
        self._last_seq: dict[str, int] = {}
        self._totals: dict[tuple[str, str], tuple[int, int]] = {}

    def advance(self, conn: psycopg.Connection[Any]) -> list[LedgerTotal]:
        """Count the entries written since the last call (all of them the first time, a chunk
        per store at a time: see :attr:`complete`); the totals. A failed read changes
        nothing."""
        chunk = self._chunk()
        rows = conn.execute(
            _NEW_LEDGER_MOVES,
            {
                "stores": list(self._last_seq),
                "seqs": list(self._last_seq.values()),
                "accounts": [a.value for a in TOTAL_ACCOUNTS],
                "chunk": chunk,
            },
        ).fetchall()
        self.complete = True
        for store_id, last_seq, account, currency, amount, entries in rows:
            if store_id is not None:
                self._last_seq[store_id] = int(last_seq)
                self.complete = self.complete and int(entries) < chunk
            else:
                before, count = self._totals.get((account, currency), (0, 0))
                self._totals[(account, currency)] = (before + int(amount), count + int(entries))
        return [
            LedgerTotal(account=account, currency=currency, amount_minor=total, entries=n)
            for (account, currency), (total, n) in sorted(self._totals.items())
        ]

    def _chunk(self) -> int:
        # The stores seen so far share the budget; the first read, knowing none, takes 100
        # entries of each, and so learns how many there are.
        if not self._last_seq:
            return 100
        return max(100, self.budget // len(self._last_seq))


def ledger_totals(conn: psycopg.Connection[Any]) -> list[LedgerTotal]:
    """The ledger's totals read whole (:class:`LedgerTally` reads only what is new)."""
    tally = LedgerTally()
    totals = tally.advance(conn)
    while not tally.complete:
        totals = tally.advance(conn)
    return totals
