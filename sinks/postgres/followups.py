"""What a batch's rows imply for other rows, in the same transaction: variants a newer product
no longer lists, each order's standing attribution, each customer's acquisition source, and
redactions (applied, and applied again to data of a redacted customer that arrives later).

Each statement reads only tables, so its result does not depend on which partition's rows came
first: after any interleaving of the same events, the tables are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from sinks.postgres.rows import Row


def follow_up(conn: psycopg.Connection[Any], rows: Sequence[Row]) -> None:
    products: set[tuple[str, str]] = set()
    orders: set[tuple[str, str]] = set()
    customers: set[tuple[str, str]] = set()
    ids: set[tuple[str, str]] = set()
    keys: set[tuple[str, str]] = set()
    stores: set[str] = set()
    redactions = []
    for row in rows:
        v = row.values
        stores.add(v["store_id"])
        if row.table == "products":
            products.add((v["store_id"], v["product_id"]))
        elif row.table in ("orders", "attribution_scores"):
            orders.add((v["store_id"], v["order_id"]))
        elif row.table == "redactions":
            redactions.append(v["event_id"])
        if row.table in ("customers", "attribution_scores", "orders") and v.get("customer_key"):
            customers.add((v["store_id"], v["customer_key"]))
        if v.get("customer_id") is not None:
            ids.add((v["store_id"], v["customer_id"]))
        if v.get("customer_key") is not None:
            keys.add((v["store_id"], v["customer_key"]))
    if products:
        _remove_unlisted_variants(conn, products)
    if orders:
        _order_attribution(conn, orders)
    if customers:
        _acquisition(conn, customers)
    _redact(conn, redactions, ids, keys, stores)


def _pairs(pairs: set[tuple[str, str]]) -> tuple[list[str], list[str]]:
    ordered = sorted(pairs)
    return [a for a, _ in ordered], [b for _, b in ordered]


def _remove_unlisted_variants(
    conn: psycopg.Connection[Any], products: set[tuple[str, str]]
) -> None:
    # Removed: not listed by the product's newest upsert, or the product deleted after it.
    conn.execute(
        """
        UPDATE variants v SET removed_at =
            CASE WHEN v.source_at < p.source_at THEN p.source_at ELSE p.deleted_at END
        FROM products p
        JOIN unnest(%s::text[], %s::text[]) AS k(store_id, product_id)
          ON p.store_id = k.store_id AND p.product_id = k.product_id
        WHERE v.store_id = p.store_id AND v.product_id = p.product_id
          AND (v.source_at < p.source_at OR p.deleted_at > v.source_at)
          AND v.removed_at IS DISTINCT FROM
              CASE WHEN v.source_at < p.source_at THEN p.source_at ELSE p.deleted_at END
        """,
        _pairs(products),
    )


def _order_attribution(conn: psycopg.Connection[Any], orders: set[tuple[str, str]]) -> None:
    # The figures of the order's latest score (not reversal), and the sum of every score and
    # reversal: what stands to be billed on (nothing for a holdout customer, as in the ledger).
    conn.execute(
        """
        UPDATE orders o SET
            confidence_bp = latest.confidence_bp,
            is_incremental = latest.is_incremental,
            attribution_model = latest.model,
            holdout = latest.holdout,
            incremental_minor = standing.total
        FROM unnest(%s::text[], %s::text[]) AS k(store_id, order_id)
        CROSS JOIN LATERAL (
            SELECT CAST(sum(a.incremental_minor) FILTER (WHERE NOT a.holdout) AS bigint) AS total
            FROM attribution_scores a
            WHERE a.store_id = k.store_id AND a.order_id = k.order_id
        ) standing
        CROSS JOIN LATERAL (
            SELECT a.confidence_bp, a.is_incremental, a.model, a.holdout FROM attribution_scores a
            WHERE a.store_id = k.store_id AND a.order_id = k.order_id AND a.reverses IS NULL
            ORDER BY a.occurred_at DESC, a.event_id DESC LIMIT 1
        ) latest
        WHERE o.store_id = k.store_id AND o.order_id = k.order_id
        """,
        _pairs(orders),
    )


def _acquisition(conn: psycopg.Connection[Any], customers: set[tuple[str, str]]) -> None:
    # The campaign credited most on the customer's earliest score that says they were acquired
    # through one; 'organic' once they have a score without.
    conn.execute(
        """
        UPDATE customers c SET acquisition_source = found.source
        FROM unnest(%s::text[], %s::text[]) AS k(store_id, customer_key)
        CROSS JOIN LATERAL (
            SELECT CASE WHEN 'acquired_via_campaign' = ANY(a.signals)
                        THEN COALESCE((
                            SELECT credit->>'campaign_id'
                            FROM jsonb_array_elements(a.credits) credit
                            ORDER BY (credit->>'weight_bp')::int DESC, credit->>'campaign_id'
                            LIMIT 1), 'campaign')
                        ELSE 'organic' END AS source
            FROM attribution_scores a
            WHERE a.store_id = k.store_id AND a.customer_key = k.customer_key
              AND a.reverses IS NULL
            ORDER BY ('acquired_via_campaign' = ANY(a.signals)) DESC, a.occurred_at, a.event_id
            LIMIT 1
        ) found
        WHERE c.store_id = k.store_id AND c.customer_key = k.customer_key
          AND c.acquisition_source IS DISTINCT FROM found.source
        """,
        _pairs(customers),
    )


# -- redaction ------------------------------------------------------------------------------------

_BLANKED = (
    # table, what it blanks, how a redaction finds the customer's rows there
    (
        "customers",
        # The acquisition source ties the person to the ads they saw: it goes too.
        "email = NULL, customer_key = NULL, acquisition_source = NULL,"
        " redacted_at = LEAST(redacted_at, %(at)s)",
        "id_or_key",
    ),
    ("orders", "customer_id = NULL, customer_key = NULL", "id_key_or_order"),
    ("touchpoints", "customer_key = NULL, click_id = NULL, landing_url = NULL", "key"),
    ("attribution_scores", "customer_key = NULL", "key"),
    ("lifecycle_triggers", "customer_id = NULL, customer_key = NULL", "id_or_key"),
)

_MATCH = {
    "key": "customer_key = %(key)s",
    "id_or_key": "(customer_id = %(id)s OR customer_key = %(key)s)",
    "id_key_or_order": (
        "(customer_id = %(id)s OR customer_key = %(key)s OR order_id = ANY(%(orders)s))"
    ),
}
_TIME = {
    "customers": "source_at",
    "orders": "source_at",
    "touchpoints": "occurred_at",
    "attribution_scores": "occurred_at",
    "lifecycle_triggers": "occurred_at",
}
_STILL_THERE = {
    "customers": (
        "(email IS NOT NULL OR customer_key IS NOT NULL OR acquisition_source IS NOT NULL"
        " OR redacted_at IS NULL OR redacted_at > %(at)s)"
    ),
    "orders": "(customer_id IS NOT NULL OR customer_key IS NOT NULL)",
    "touchpoints": "(customer_key IS NOT NULL OR click_id IS NOT NULL OR landing_url IS NOT NULL)",
    "attribution_scores": "customer_key IS NOT NULL",
    "lifecycle_triggers": "(customer_id IS NOT NULL OR customer_key IS NOT NULL)",
}


def _redact(
    conn: psycopg.Connection[Any],
    new: list[str],
    ids: set[tuple[str, str]],
    keys: set[tuple[str, str]],
    stores: set[str],
) -> None:
    """Apply the batch's redactions, and every earlier one whose customer the batch wrote
    about again (a late or replayed event must not bring the data back)."""
    id_stores, id_values = _pairs(ids)
    key_stores, key_values = _pairs(keys)
    found = conn.execute(
        """
        SELECT r.store_id, r.scope, r.customer_id, r.customer_key, r.orders, r.requested_at
        FROM redactions r
        WHERE r.event_id = ANY(%s)
           OR (r.scope = 'shop' AND r.store_id = ANY(%s))
           OR (r.store_id, r.customer_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
           OR (r.store_id, r.customer_key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
        ORDER BY r.requested_at, r.event_id
        """,
        (new, sorted(stores), id_stores, id_values, key_stores, key_values),
    ).fetchall()
    for store_id, scope, customer_id, customer_key, orders, at in found:
        params = {
            "store": store_id,
            "id": customer_id,
            "key": customer_key,
            "orders": list(orders),
            "at": at,
        }
        for table, blanked, match in _BLANKED:
            # A shop's redaction covers what the shop held when it asked; a reinstalled shop's
            # new data is its own.
            where = f"{_TIME[table]} <= %(at)s" if scope == "shop" else _MATCH[match]
            conn.execute(
                f"UPDATE {table} SET {blanked} "  # noqa: S608  (fixed fragments, no input)
                f"WHERE store_id = %(store)s AND {where} AND {_STILL_THERE[table]}",
                params,
            )
