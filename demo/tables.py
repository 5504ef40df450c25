"""The demo's last step: what `revloop sink postgres` wrote for this run, checked against the
worker's own figures (the orders, their standing incremental revenue, the ledger)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer

from revloop.kafka import cluster_id, high_watermarks
from revloop.settings import Settings
from revloop.stores.store_settings import StoreSettings, settings_histories
from sinks.postgres import SINK_TOPICS
from sinks.postgres.ledger import balances, verify
from sinks.postgres.settlement import baseline_of, preview, set_baseline


@dataclass(frozen=True)
class StoreTables:
    orders_expected: int
    orders_found: int
    incremental_minor: int
    """The run's orders' ``orders.incremental_minor``, summed."""
    ledger_minor: int
    """The run's orders' ledger entries: attributed revenue less its reversals."""
    ledger_entries: int
    chain_holds: bool
    balances_sum_to_zero: bool
    currency: str


def wait_sink_caught_up(
    settings: Settings, reader: Consumer, check: Callable[[], None], timeout: float
) -> None:
    """Until the sink's offsets in Postgres reach every topic's end as it is now."""
    ends = {
        (settings.topic_prefix + name, p): end
        for name in SINK_TOPICS
        for p, end in high_watermarks(reader, settings.topic_prefix + name).items()
        if end
    }
    group, cluster = settings.topic_prefix + settings.sink_group_id, cluster_id(settings)
    deadline = time.monotonic() + timeout
    last: dict[tuple[str, int], int] | None = None
    while True:
        check()
        with psycopg.connect(settings.dsn) as conn:
            stored = {
                (t, p): o
                for t, p, o in conn.execute(
                    "SELECT topic, partition, next_offset FROM kafka_offsets"
                    " WHERE cluster_id = %s AND group_id = %s",
                    (cluster, group),
                )
            }
        # A transactional producer's commit marker takes an offset the sink never reads, so
        # within one of the end, and no longer moving.
        if stored == last and all(stored.get(k, 0) >= end - 1 for k, end in ends.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sink did not reach the topics' ends within {timeout:.0f} s")
        last = stored
        time.sleep(1.5)


def store_tables(
    settings: Settings, placed: Mapping[str, Mapping[str, str]]
) -> dict[str, StoreTables]:
    """Per store, this run's orders (``placed``: store → order → currency) as the tables hold
    them."""
    found: dict[str, StoreTables] = {}
    with psycopg.connect(settings.dsn) as conn:
        for store_id, orders in sorted(placed.items()):
            ids = sorted(orders)
            currency = next(iter(orders.values()), "")
            rows = conn.execute(
                "SELECT count(*), coalesce(sum(incremental_minor), 0) FROM orders"
                " WHERE store_id = %s AND order_id = ANY(%s)",
                (store_id, ids),
            ).fetchone()
            ledger = conn.execute(
                "SELECT count(*), coalesce(sum(CASE WHEN code = 'attributed_revenue'"
                " THEN amount_minor ELSE -amount_minor END), 0) FROM ledger_entries"
                " WHERE store_id = %s AND order_id = ANY(%s)"
                " AND code IN ('attributed_revenue', 'attributed_revenue_reversal')",
                (store_id, ids),
            ).fetchone()
            assert rows is not None and ledger is not None
            breaks = list(verify(conn, store_id))
            sums: dict[str, int] = {}
            for _, cur, total in balances(conn, store_id):
                sums[cur] = sums.get(cur, 0) + total
            found[store_id] = StoreTables(
                orders_expected=len(ids),
                orders_found=int(rows[0]),
                incremental_minor=int(rows[1]),
                ledger_minor=int(ledger[1]),
                ledger_entries=int(ledger[0]),
                chain_holds=not breaks,
                balances_sum_to_zero=all(v == 0 for v in sums.values()),
                currency=currency,
            )
    return found


@dataclass(frozen=True)
class InvoicePreview:
    store_id: str
    period: str
    currency: str
    plan: str
    billed_on_minor: int
    """What the fee is charged on: net incremental revenue, or the uplift over a baseline or
    over the baseline ROAS."""
    fee_minor: int
    amount_minor: int
    """The invoice's figure the proof's amount column must sum to (incremental revenue, or
    revenue for baseline uplift)."""
    proof_amount_minor: int
    proof_fee_minor: int
    expected_minor: int | None
    """Baseline uplift and ROAS: what the store would have made anyway."""


DEMO_BASELINE_PERCENT = 80
"""A baseline-uplift store without a baseline gets one at this share of the month's revenue so
far (as if its history said so), so the demo's invoice shows an uplift."""


def invoice_previews(
    settings: Settings, stores: Sequence[str], since: datetime
) -> list[InvoicePreview]:
    """Each demo store's invoice for the periods its entries since ``since`` (this run's) were
    booked in, on its plan, as `revloop settle --preview` computes it (nothing posted or
    closed), with its proof's sums."""
    found = []
    now = datetime.now(UTC)
    with psycopg.connect(settings.dsn) as conn:
        for store_id in sorted(stores):
            periods = [
                p
                for (p,) in conn.execute(
                    "SELECT DISTINCT booked_period FROM ledger_entries"
                    " WHERE store_id = %s AND occurred_at >= %s ORDER BY 1",
                    (store_id, since),
                )
            ]
            for period in periods:
                _demo_baseline(conn, settings, store_id, period, now)
                for invoice in preview(conn, settings, store_id, period, now):
                    proof = list(csv.DictReader(io.StringIO(invoice.proof_csv)))
                    doc = invoice.document
                    found.append(
                        InvoicePreview(
                            store_id=store_id,
                            period=period,
                            currency=doc["currency"],
                            plan=doc["plan"],
                            billed_on_minor=doc["billed_on_minor"],
                            fee_minor=doc["fee_minor"],
                            amount_minor=doc["revenue_minor"]
                            if doc["proof"]["amount"] == "revenue"
                            else doc["incremental_revenue_minor"],
                            proof_amount_minor=sum(int(row["amount_minor"]) for row in proof),
                            proof_fee_minor=sum(int(row["fee_minor"]) for row in proof),
                            expected_minor=(doc["baseline"] or {}).get("expected_revenue_minor"),
                        )
                    )
    return found


def _demo_baseline(
    conn: psycopg.Connection[Any], settings: Settings, store_id: str, period: str, now: datetime
) -> None:
    """A baseline for a baseline-uplift demo store that has none (DEMO_BASELINE_PERCENT)."""
    plan = StoreSettings(settings, settings_histories(settings.stores_file)).at(store_id, now)
    if plan.billing_plan != "baseline_uplift" or baseline_of(conn, store_id).currency:
        return
    revenue = conn.execute(
        "SELECT currency, sum(CASE code WHEN 'revenue' THEN amount_minor ELSE -amount_minor END)"
        " FROM ledger_entries WHERE store_id = %s AND booked_period = %s"
        " AND code IN ('revenue', 'revenue_reversal') GROUP BY currency ORDER BY 2 DESC LIMIT 1",
        (store_id, period),
    ).fetchone()
    if revenue and revenue[1] > 0:
        set_baseline(
            conn,
            settings,
            store_id,
            monthly_revenue_minor=int(revenue[1]) * DEMO_BASELINE_PERCENT // 100,
            currency=revenue[0],
            roas_bp=None,
            source="demo",
            now=now,
        )


def table_problems(
    tables: Mapping[str, StoreTables], worker_incremental: Mapping[str, int]
) -> list[str]:
    """Where the tables disagree with the worker's scores, or the ledger does not hold."""
    problems = []
    for store_id, t in tables.items():
        if t.orders_found != t.orders_expected:
            problems.append(
                f"{store_id}: {t.orders_found} of {t.orders_expected} orders in Postgres"
            )
        standing = worker_incremental.get(store_id, 0)
        if t.incremental_minor != standing:
            problems.append(
                f"{store_id}: orders.incremental_minor sums to {t.incremental_minor}, the scores "
                f"to {standing}"
            )
        if t.ledger_minor != standing:
            problems.append(f"{store_id}: the ledger books {t.ledger_minor}, the scores {standing}")
        if not t.chain_holds:
            problems.append(f"{store_id}: the ledger's hash chain does not hold")
        if not t.balances_sum_to_zero:
            problems.append(f"{store_id}: the ledger's balances do not sum to zero")
    return problems


def invoice_problems(invoices: list[InvoicePreview]) -> list[str]:
    return [
        f"{i.store_id} {i.period} {i.currency}: the proof sums to {i.proof_amount_minor}"
        f" and a fee of {i.proof_fee_minor}, the invoice says {i.amount_minor} and"
        f" {i.fee_minor}"
        for i in invoices
        if (i.proof_amount_minor, i.proof_fee_minor) != (i.amount_minor, i.fee_minor)
    ]


def as_json(tables: Mapping[str, StoreTables]) -> dict[str, Any]:
    return {store_id: vars(t) for store_id, t in tables.items()}
