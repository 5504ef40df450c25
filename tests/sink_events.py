"""Canonical and derived events as the sink's tests publish them (every field of the contract)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.sink_support import T0, envelope


def money(minor: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount_minor": minor, "currency": currency}


def product(
    event: str,
    minutes: float,
    product_id: str,
    title: str,
    variants: list[str],
    store: str = "acme",
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store),
        "product_id": product_id,
        "title": title,
        "handle": title.lower().replace(" ", "-"),
        "status": "active",
        "vendor": "Northwind",
        "product_type": "Hats",
        "tags": ["wool"],
        "variants": [
            {
                "variant_id": v,
                "sku": f"SKU-{v}",
                "title": v,
                "price": money(2500),
                "inventory_item_id": f"item-{v}",
                "inventory_quantity": None,
            }
            for v in variants
        ],
    }


def level(
    event: str,
    minutes: float,
    item: str,
    quantity: int,
    method: str = "absolute",
    store: str = "acme",
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store),
        "inventory_item_id": item,
        "location_id": "loc-1",
        "method": method,
        "quantity": quantity,
        "product_id": None,
        "variant_id": None,
        "sku": None,
    }


def customer(
    event: str, minutes: float, customer_id: str, key: str, email: str | None, store: str = "acme"
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store),
        "customer_id": customer_id,
        "customer_key": key,
        "email": email,
        "accepts_marketing": True,
        "orders_count": 1,
        "total_spent": money(5000),
        "created_at": T0,
        "tags": [],
    }


def order(
    event: str,
    minutes: float,
    order_id: str,
    kind: str,
    customer_id: str | None,
    key: str | None,
    total: int = 5000,
    store: str = "acme",
    financial: str = "paid",
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store),
        "kind": kind,
        "order_id": order_id,
        "order_number": f"#{order_id}",
        "customer_id": customer_id,
        "customer_key": key,
        "currency": "USD",
        "total": money(total),
        "subtotal": money(total - 500),
        "total_tax": money(300),
        "total_discounts": money(0),
        "total_shipping": money(200),
        "financial_status": financial,
        "fulfillment_status": None,
        "placed_at": None,
        "cancelled_at": None,
        "line_items": [
            {
                "line_item_id": f"{order_id}-l1",
                "product_id": "p1",
                "variant_id": "v1",
                "sku": "SKU-v1",
                "title": "Merino Beanie",
                "quantity": 2,
                "unit_price": money(2250),
                "total": money(4500),
            }
        ],
        "refund": None,
        "attribution_hints": {},
    }


def refund(
    event: str, minutes: float, order_id: str, refund_id: str, amount: int, store: str = "acme"
) -> dict[str, Any]:
    return {
        **order(event, minutes, order_id, "refunded", None, None, store=store),
        "total": None,
        "subtotal": None,
        "total_tax": None,
        "total_discounts": None,
        "total_shipping": None,
        "line_items": [],
        "refund": {
            "refund_id": refund_id,
            "amount": money(amount),
            "created_at": T0 + timedelta(minutes=minutes),
            "line_items": [],
        },
    }


def touchpoint(
    event: str,
    minutes: float,
    touchpoint_id: str,
    key: str,
    campaign: str | None,
    store: str = "acme",
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store, source="api"),
        "touchpoint_id": touchpoint_id,
        "kind": "ad_click",
        "channel": "meta",
        "customer_key": key,
        "campaign_id": campaign,
        "ad_id": "ad-1",
        "content_id": None,
        "product_ids": ["p1"],
        "click_id": "fbclid-secret",
        "landing_url": "https://shop.example/p1?email=someone",
        "cost": money(120),
    }


def link(
    event: str, minutes: float, campaign: str, product_id: str, active: bool, store: str = "acme"
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store, source="api"),
        "campaign_id": campaign,
        "product_id": product_id,
        "channel": "meta",
        "active": active,
    }


def score(
    event: str,
    minutes: float,
    order_id: str,
    key: str | None,
    incremental: int,
    reverses: str | None = None,
    signals: list[str] | None = None,
    store: str = "acme",
    revenue: int | None = None,
) -> dict[str, Any]:
    """An AttributionScore; ``revenue``, its change to the store's revenue (none when left out,
    as from writers before the field)."""
    return {
        "envelope": envelope(event, minutes, store, source="derived"),
        "revenue_change": None if revenue is None else money(revenue),
        "order_id": order_id,
        "customer_key": key,
        "confidence_bp": 10_000,
        "is_incremental": True,
        "model": "last_click",
        "order_total": money(5000),
        "incremental_revenue": money(incremental),
        "credits": [
            {
                "touchpoint_id": "t1",
                "campaign_id": "c1",
                "channel": "meta",
                "weight_bp": 10_000,
                "amount": money(incremental),
            }
        ],
        "signals": signals
        if signals is not None
        else ["touchpoint_in_window", "acquired_via_campaign"],
        "holdout": False,
        "reverses": reverses,
    }


def action(
    event: str, minutes: float, product_id: str, kind: str, available: int, store: str = "acme"
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store, source="derived", caused_by=["lv-x"]),
        "action": kind,
        "product_id": product_id,
        "variant_id": None,
        "campaign_ids": ["c1"],
        "campaigns": [{"campaign_id": "c1", "channel": "meta"}],
        "available": available,
        "previous_available": 3,
        "reason": f"{kind}: {available} available",
    }


def trigger(
    event: str, minutes: float, customer_id: str, key: str | None, store: str = "acme"
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store, source="derived"),
        "trigger_id": f"trig-{event}",
        "flow": "post_purchase",
        "customer_id": customer_id,
        "customer_key": key,
        "order_id": "o1",
        "product_id": None,
        "due_at": None,
    }


def redact(
    event: str, minutes: float, customer_id: str, key: str, orders: list[str], store: str = "acme"
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store),
        "scope": "customer",
        "customer_id": customer_id,
        "customer_key": key,
        "orders_to_redact": orders,
        "request_id": "req-1",
    }


def raw(event: str, minutes: float, body: bytes, store: str = "acme") -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store),
        "topic": "orders/create",
        "delivery_id": f"d-{event}",
        "content_type": "application/json",
        "headers": {"x-shopify-topic": "orders/create"},
        "body": body,
    }


def spend_report(
    event: str, minutes: float, campaign: str, day: date, minor: int, store: str = "acme"
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, store, source="api"),
        "channel": "meta",
        "campaign_id": campaign,
        "day": day,
        "spend": money(minor),
    }
