"""Events to rows, pure: a decoded event in, the rows it writes out (sinks/postgres/tables.py
names the columns). Nothing here touches a database; the writer decides how each table's rows
land (latest wins, insert once, inventory arithmetic)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Value = Mapping[str, Any]


@dataclass(frozen=True)
class Row:
    table: str
    values: dict[str, Any]


def rows_for(record: str, value: Value, published_at: datetime) -> list[Row]:
    """The rows one event writes; ``record`` is its short record name (e.g. ``OrderEvent``),
    ``published_at`` when it was written to Kafka (the record's timestamp)."""
    build = _BUILDERS.get(record)
    if build is None:
        return []
    rows = build(value)
    if record in _PUBLISHED:
        rows = [Row(r.table, {**r.values, "published_at": published_at}) for r in rows]
    return rows


def _envelope(value: Value) -> Value:
    envelope: Value = value["envelope"]
    return envelope


def _version(value: Value) -> dict[str, Any]:
    envelope = _envelope(value)
    return {
        "store_id": envelope["store_id"],
        "source_at": envelope["occurred_at"],
        "source_event_id": envelope["event_id"],
    }


def _fact(value: Value) -> dict[str, Any]:
    envelope = _envelope(value)
    return {
        "event_id": envelope["event_id"],
        "store_id": envelope["store_id"],
        "occurred_at": envelope["occurred_at"],
        "caused_by": list(envelope.get("caused_by") or []),
    }


def _minor(money: Value | None) -> int | None:
    return None if money is None else int(money["amount_minor"])


# -- catalogue ------------------------------------------------------------------------------------


def product_rows(value: Value) -> list[Row]:
    product = {
        **_version(value),
        "product_id": value["product_id"],
        "title": value["title"],
        "handle": value["handle"],
        "status": value["status"],
        "vendor": value["vendor"],
        "product_type": value["product_type"],
        "tags": list(value["tags"]),
        "url_path": f"/products/{value['handle']}" if value["handle"] else None,
    }
    variants = [
        Row(
            "variants",
            {
                **_version(value),
                "variant_id": variant["variant_id"],
                "product_id": value["product_id"],
                "sku": variant["sku"],
                "title": variant["title"],
                "price_minor": int(variant["price"]["amount_minor"]),
                "currency": variant["price"]["currency"],
                "inventory_item_id": variant["inventory_item_id"],
                "removed_at": None,
            },
        )
        for variant in value["variants"]
    ]
    return [Row("products", product), *variants]


def product_delete_rows(value: Value) -> list[Row]:
    # Only the deletion's time: the product's last known details stay readable.
    envelope = _envelope(value)
    deleted = {
        "store_id": envelope["store_id"],
        "product_id": value["product_id"],
        "deleted_at": envelope["occurred_at"],
    }
    return [Row("products", deleted)]


def inventory_rows(value: Value) -> list[Row]:
    envelope = _envelope(value)
    where = {
        "store_id": envelope["store_id"],
        "inventory_item_id": value["inventory_item_id"],
        "location_id": value["location_id"],
        "product_id": value["product_id"],
        "variant_id": value["variant_id"],
    }
    if value["method"] == "absolute":
        return [
            Row("inventory_snapshots", {**_version(value), **where, "quantity": value["quantity"]})
        ]
    adjustment = {
        **where,
        "event_id": envelope["event_id"],
        "delta": int(value["quantity"]),
        "occurred_at": envelope["occurred_at"],
    }
    return [Row("inventory_adjustments", adjustment)]


# -- customers and orders -------------------------------------------------------------------------


def customer_rows(value: Value) -> list[Row]:
    spent = value["total_spent"]
    return [
        Row(
            "customers",
            {
                **_version(value),
                "customer_id": value["customer_id"],
                "customer_key": value["customer_key"],
                "email": value["email"],
                "accepts_marketing": bool(value["accepts_marketing"]),
                "orders_count": value["orders_count"],
                "total_spent_minor": _minor(spent),
                "currency": spent["currency"] if spent else None,
                "created_at": value["created_at"],
            },
        )
    ]


_ORDER_COLUMNS = (
    "order_number",
    "customer_id",
    "customer_key",
    "currency",
    "financial_status",
    "fulfillment_status",
    "cancelled_at",
)


def order_rows(value: Value) -> list[Row]:
    envelope = _envelope(value)
    if value["kind"] == "refunded":
        return _refund_rows(value)
    order: dict[str, Any] = {
        **_version(value),
        "order_id": value["order_id"],
        **{name: value[name] for name in _ORDER_COLUMNS},
        "total_minor": _minor(value["total"]),
        "subtotal_minor": _minor(value["subtotal"]),
        "tax_minor": _minor(value["total_tax"]),
        "discounts_minor": _minor(value["total_discounts"]),
        "shipping_minor": _minor(value["total_shipping"]),
    }
    if value.get("placed_at") is not None:
        order["placed_at"] = value["placed_at"]
    elif value["kind"] in ("created", "paid"):
        order["placed_at"] = envelope["occurred_at"]
    items = [
        Row(
            "order_items",
            {
                **_version(value),
                "order_id": value["order_id"],
                "line_item_id": line["line_item_id"],
                "product_id": line["product_id"],
                "variant_id": line["variant_id"],
                "sku": line["sku"],
                "title": line["title"],
                "quantity": int(line["quantity"]),
                "unit_price_minor": int(line["unit_price"]["amount_minor"]),
                "total_minor": int(line["total"]["amount_minor"]),
                "currency": line["total"]["currency"],
            },
        )
        for line in value["line_items"]
    ]
    return [Row("orders", order), *items]


def _refund_rows(value: Value) -> list[Row]:
    refund = value["refund"]
    if refund is None:
        return []
    return [
        Row(
            "refunds",
            {
                "store_id": _envelope(value)["store_id"],
                "order_id": value["order_id"],
                "refund_id": refund["refund_id"],
                "amount_minor": int(refund["amount"]["amount_minor"]),
                "currency": refund["amount"]["currency"],
                "refunded_at": refund["created_at"],
                "event_id": _envelope(value)["event_id"],
            },
        )
    ]


# -- marketing ------------------------------------------------------------------------------------


def touchpoint_rows(value: Value) -> list[Row]:
    envelope, cost = _envelope(value), value["cost"]
    return [
        Row(
            "touchpoints",
            {
                "store_id": envelope["store_id"],
                "touchpoint_id": value["touchpoint_id"],
                "event_id": envelope["event_id"],
                "occurred_at": envelope["occurred_at"],
                "kind": value["kind"],
                "channel": value["channel"],
                "customer_key": value["customer_key"],
                "campaign_id": value["campaign_id"],
                "ad_id": value["ad_id"],
                "content_id": value["content_id"],
                "product_ids": list(value["product_ids"]),
                "click_id": value["click_id"],
                "landing_url": value["landing_url"],
                "cost_minor": _minor(cost),
                "cost_currency": cost["currency"] if cost else None,
            },
        )
    ]


def campaign_product_rows(value: Value) -> list[Row]:
    return [
        Row(
            "campaign_products",
            {
                **_version(value),
                "campaign_id": value["campaign_id"],
                "product_id": value["product_id"],
                "channel": value["channel"],
                "active": bool(value["active"]),
            },
        )
    ]


def campaign_spend_rows(value: Value) -> list[Row]:
    spend = value["spend"]
    return [
        Row(
            "campaign_spend",
            {
                **_version(value),
                "channel": value["channel"],
                "campaign_id": value["campaign_id"],
                "day": value["day"],
                "spend_minor": int(spend["amount_minor"]),
                "currency": spend["currency"],
            },
        )
    ]


# -- derived --------------------------------------------------------------------------------------


def action_rows(value: Value) -> list[Row]:
    return [
        Row(
            "circuit_breaker_actions",
            {
                **_fact(value),
                "product_id": value["product_id"],
                "variant_id": value["variant_id"],
                "action": value["action"],
                "campaign_ids": list(value["campaign_ids"]),
                "available": int(value["available"]),
                "previous_available": value["previous_available"],
                "reason": value["reason"],
            },
        )
    ]


def call_rows(value: Value) -> list[Row]:
    return [
        Row(
            "connector_calls",
            {
                **_fact(value),
                "action_id": value["action_id"],
                "channel": value["channel"],
                "call": value["call"],
                "attempt": int(value["attempt"]),
                "status": value["status"],
                "outcome": value["outcome"],
                "error": value["error"],
                "elapsed_ms": int(value["elapsed_ms"]),
            },
        )
    ]


def warning_rows(value: Value) -> list[Row]:
    return [
        Row(
            "low_stock_warnings",
            {
                **_fact(value),
                "product_id": value["product_id"],
                "variant_id": value["variant_id"],
                "available": int(value["available"]),
                "threshold": int(value["threshold"]),
                "campaign_ids": list(value["campaign_ids"]),
                "reason": value["reason"],
            },
        )
    ]


def score_rows(value: Value) -> list[Row]:
    credits = [
        {
            "touchpoint_id": c["touchpoint_id"],
            "campaign_id": c["campaign_id"],
            "channel": c["channel"],
            "weight_bp": int(c["weight_bp"]),
            "amount_minor": int(c["amount"]["amount_minor"]),
        }
        for c in value["credits"]
    ]
    return [
        Row(
            "attribution_scores",
            {
                **_fact(value),
                "order_id": value["order_id"],
                "customer_key": value["customer_key"],
                "confidence_bp": int(value["confidence_bp"]),
                "is_incremental": bool(value["is_incremental"]),
                "model": value["model"],
                "order_total_minor": int(value["order_total"]["amount_minor"]),
                "incremental_minor": int(value["incremental_revenue"]["amount_minor"]),
                "currency": value["incremental_revenue"]["currency"],
                "credits": credits,
                "signals": list(value["signals"]),
                "holdout": bool(value["holdout"]),
                "reverses": value["reverses"],
            },
        )
    ]


def trigger_rows(value: Value) -> list[Row]:
    return [
        Row(
            "lifecycle_triggers",
            {
                **_fact(value),
                "trigger_id": value["trigger_id"],
                "flow": value["flow"],
                "customer_id": value["customer_id"],
                "customer_key": value["customer_key"],
                "order_id": value["order_id"],
                "product_id": value["product_id"],
                "due_at": value["due_at"],
            },
        )
    ]


def webhook_rows(value: Value) -> list[Row]:
    envelope = _envelope(value)
    return [
        Row(
            "webhook_log",
            {
                "event_id": envelope["event_id"],
                "store_id": envelope["store_id"],
                "platform": envelope["platform"],
                "topic": value["topic"],
                "delivery_id": value["delivery_id"],
                "content_type": value["content_type"],
                "body_bytes": len(value["body"]),
                "occurred_at": envelope["occurred_at"],
                "received_at": envelope["received_at"],
            },
        )
    ]


def redaction_rows(value: Value) -> list[Row]:
    envelope = _envelope(value)
    return [
        Row(
            "redactions",
            {
                "event_id": envelope["event_id"],
                "store_id": envelope["store_id"],
                "scope": value["scope"],
                "customer_id": value["customer_id"],
                "customer_key": value["customer_key"],
                "orders": list(value["orders_to_redact"]),
                "request_id": value["request_id"],
                "requested_at": envelope["occurred_at"],
            },
        )
    ]


RECORDS: frozenset[str]
"""The records the sink writes (short names)."""


def ledger_rows(value: Value) -> list[Row]:
    """An entry, as appended to its store's chain (sinks/postgres/ledger.py adds its place
    and links)."""
    envelope = _envelope(value)
    return [
        Row(
            "ledger_entries",
            {
                "entry_id": value["entry_id"],
                "store_id": envelope["store_id"],
                "ledger": value["ledger"],
                "debit_account": value["debit_account"],
                "credit_account": value["credit_account"],
                "amount_minor": int(value["amount"]["amount_minor"]),
                "currency": value["amount"]["currency"],
                "code": value["code"],
                "reverses_entry_id": value["reverses_entry_id"],
                "order_id": value["order_id"],
                "period": value["period"],
                "occurred_at": envelope["occurred_at"],
                "caused_by": list(envelope.get("caused_by") or []),
            },
        )
    ]


_BUILDERS = {
    "ProductUpsert": product_rows,
    "ProductDelete": product_delete_rows,
    "InventoryLevel": inventory_rows,
    "CustomerUpsert": customer_rows,
    "OrderEvent": order_rows,
    "Touchpoint": touchpoint_rows,
    "CampaignProductLink": campaign_product_rows,
    "CampaignSpend": campaign_spend_rows,
    "CircuitBreakerAction": action_rows,
    "ConnectorCall": call_rows,
    "LowStockWarning": warning_rows,
    "AttributionScore": score_rows,
    "LifecycleTrigger": trigger_rows,
    "RawWebhook": webhook_rows,
    "CustomerRedact": redaction_rows,
    "LedgerEntry": ledger_rows,
}
_PUBLISHED = frozenset({"CircuitBreakerAction", "LowStockWarning"})
RECORDS = frozenset(_BUILDERS)
