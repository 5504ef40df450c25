"""The backfill's tables: the order facts a baseline is computed from (``baseline_orders``),
and the baseline computed (``store_baselines``, and the stores table's figure settlement
reads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from revloop.baseline import Baseline, OrderFact
from revloop.settings import Settings
from sinks.postgres.settlement import set_baseline


def record_order_facts(
    conn: psycopg.Connection[Any], store_id: str, facts: Sequence[OrderFact]
) -> None:
    """Upsert: a page read again (a resumed backfill) counts its orders once."""
    if not facts:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO baseline_orders (store_id, order_id, placed_at, currency, total_minor,
                refunded_minor, customer_key, cancelled)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (store_id, order_id) DO UPDATE SET
                placed_at = excluded.placed_at, currency = excluded.currency,
                total_minor = excluded.total_minor, refunded_minor = excluded.refunded_minor,
                customer_key = excluded.customer_key, cancelled = excluded.cancelled
            """,
            [
                (
                    store_id,
                    f.order_id,
                    f.placed_at,
                    f.currency,
                    f.total_minor,
                    f.refunded_minor,
                    f.customer_key,
                    f.cancelled,
                )
                for f in facts
            ],
        )


def order_facts(conn: psycopg.Connection[Any], store_id: str) -> list[OrderFact]:
    rows = conn.execute(
        "SELECT order_id, placed_at, currency, total_minor, refunded_minor, customer_key,"
        " cancelled FROM baseline_orders WHERE store_id = %s",
        (store_id,),
    ).fetchall()
    return [OrderFact(*row) for row in rows]


def order_currencies(conn: psycopg.Connection[Any], store_id: str) -> list[str]:
    """The currencies of the store's backfilled orders, the most revenue first."""
    rows = conn.execute(
        "SELECT currency FROM baseline_orders WHERE store_id = %s GROUP BY currency"
        " ORDER BY sum(total_minor) DESC, currency",
        (store_id,),
    ).fetchall()
    return [row[0] for row in rows]


def store_computed_baseline(
    conn: psycopg.Connection[Any],
    settings: Settings,
    store_id: str,
    baseline: Baseline,
    now: datetime,
) -> None:
    """Keep the baseline's figures, and set the store's monthly revenue baseline from it
    (source ``backfill``) for settlement."""
    months = [
        {
            "month": m.month.isoformat(),
            "start": m.start.isoformat(),
            "end": m.end.isoformat(),
            "revenue_minor": m.revenue_minor,
            "orders": m.orders,
        }
        for m in baseline.months
    ]
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO store_baselines (store_id, computed_at, window_start, window_end,
                currency, revenue_minor, orders, average_order_minor, unique_customers,
                repeat_customers, repeat_rate_bp, monthly_revenue_minor, months, source)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'backfill')
            ON CONFLICT (store_id) DO UPDATE SET
                computed_at = excluded.computed_at, window_start = excluded.window_start,
                window_end = excluded.window_end, currency = excluded.currency,
                revenue_minor = excluded.revenue_minor, orders = excluded.orders,
                average_order_minor = excluded.average_order_minor,
                unique_customers = excluded.unique_customers,
                repeat_customers = excluded.repeat_customers,
                repeat_rate_bp = excluded.repeat_rate_bp,
                monthly_revenue_minor = excluded.monthly_revenue_minor,
                months = excluded.months, source = excluded.source
            """,
            (
                store_id,
                now,
                baseline.start,
                baseline.end,
                baseline.currency,
                baseline.revenue_minor,
                baseline.orders,
                baseline.average_order_minor,
                baseline.unique_customers,
                baseline.repeat_customers,
                baseline.repeat_rate_bp,
                baseline.monthly_revenue_minor,
                json.dumps(months),
            ),
        )
    if baseline.monthly_revenue_minor > 0:
        set_baseline(
            conn,
            settings,
            store_id,
            monthly_revenue_minor=baseline.monthly_revenue_minor,
            currency=baseline.currency,
            roas_bp=None,
            source="backfill",
            now=now,
        )
