"""What the pipeline already holds, for reconciliation (docs/connectors.md, "Reconciliation"):
of the events a platform read makes, those the sink's tables do not reflect yet. The tables are
the pipeline's view of each store; a read event they already hold (a version as new or newer,
the same stock level, a refund known) is not published again.

A redacted customer is held whatever the platform still says: reconciliation never brings back
personal data a redaction erased.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from platforms.events import EVENTS, Emit

_NEWER = {
    # record → (table, id column): held when the row's source_at is at or after the event.
    EVENTS + "OrderEvent": ("orders", "order_id"),
    EVENTS + "ProductUpsert": ("products", "product_id"),
    EVENTS + "CustomerUpsert": ("customers", "customer_id"),
}


def unheld(conn: psycopg.Connection[Any], events: Sequence[Emit]) -> list[Emit]:
    """The events the pipeline's tables do not hold yet, in order."""
    return [event for event in events if not _held(conn, event)]


def _held(conn: psycopg.Connection[Any], event: Emit) -> bool:
    value = event.value
    store_id = value["envelope"]["store_id"]
    occurred_at: datetime = value["envelope"]["occurred_at"]
    if event.record == EVENTS + "OrderEvent" and value["kind"] == "refunded":
        return _exists(
            conn,
            "SELECT 1 FROM refunds WHERE store_id = %s AND refund_id = %s",
            (store_id, value["refund"]["refund_id"]),
        )
    if event.record == EVENTS + "CustomerUpsert" and _exists(
        conn,
        "SELECT 1 FROM customers WHERE store_id = %s AND customer_id = %s"
        " AND redacted_at IS NOT NULL",
        (store_id, value["customer_id"]),
    ):
        return True
    if event.record in _NEWER:
        table, column = _NEWER[event.record]
        return _exists(
            conn,
            f"SELECT 1 FROM {table} WHERE store_id = %s AND {column} = %s"  # noqa: S608 (names from _NEWER)
            " AND source_at >= %s",
            (store_id, value[column], occurred_at),
        )
    if event.record == EVENTS + "InventoryLevel":
        return _exists(
            conn,
            "SELECT 1 FROM inventory_levels WHERE store_id = %s AND inventory_item_id = %s"
            " AND location_id = %s AND available = %s",
            (store_id, value["inventory_item_id"], value["location_id"], value["quantity"]),
        )
    return False


def _exists(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> bool:
    return conn.execute(query, params).fetchone() is not None


def pipeline_counts(
    conn: psycopg.Connection[Any], store_id: str, since: datetime | None
) -> dict[str, int]:
    """What the pipeline holds of a store, changed at or after ``since``: for the report."""
    counts = {}
    for resource, table in (
        ("orders", "orders"),
        ("products", "products"),
        ("customers", "customers"),
    ):
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE store_id = %s"  # noqa: S608 (fixed names)
            " AND (%s::timestamptz IS NULL OR source_at >= %s)",
            (store_id, since, since),
        ).fetchone()
        counts[resource] = int(row[0]) if row else 0
    return counts
