"""Shopify webhooks: the store by X-Shopify-Shop-Domain, the signature by X-Shopify-Hmac-Sha256.

The signature is base64(HMAC-SHA256(app secret, raw body)). After a secret rotation Shopify may
sign with the previous secret for up to an hour, so the store's previous secret is accepted
until its window closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from platforms.events import (
    Emit,
    NormalizeContext,
    RawDelivery,
    Skip,
    Version,
    attribution_hints,
    derived_event_id,
    emit,
    product_deleted,
    refund_event,
    shopper_key,
    store_currency,
)
from platforms.payloads import (
    NotNormalizable,
    comma_separated,
    count,
    currency_code,
    decode_json_object,
    id_str,
    instant,
    items,
    mapping,
    minor_units,
    money,
    money_minor,
    optional_id,
    text,
)
from platforms.webhooks import (
    Delivery,
    StoreLookup,
    event_id,
    header,
    hmac_sha256_b64,
    kept_headers,
    parse_timestamp,
    registered_store,
    signed_by_any,
    unauthorized,
)

PLATFORM = "shopify"
TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/fulfilled",
        "refunds/create",
        "products/create",
        "products/update",
        "products/delete",
        "inventory_levels/update",
        "customers/create",
        "customers/update",
        "customers/delete",
        "app/uninstalled",
        "customers/data_request",
        "customers/redact",
        "shop/redact",
    }
)
KEPT_HEADERS = (
    "content-type",
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
    "x-shopify-webhook-id",
    "x-shopify-triggered-at",
    "x-shopify-event-id",
    "x-shopify-hmac-sha256",
)


def authenticate(
    body: bytes, headers: Mapping[str, str], stores: StoreLookup, now: datetime
) -> Delivery:
    signature = header(headers, "x-shopify-hmac-sha256")
    domain = header(headers, "x-shopify-shop-domain")
    topic = header(headers, "x-shopify-topic")
    webhook_id = header(headers, "x-shopify-webhook-id")
    if not signature or not domain or not topic or not webhook_id:
        raise unauthorized("missing_header", "Shopify headers missing")
    store = registered_store(stores, PLATFORM, domain)
    if not signed_by_any([signature.encode()], store.verification_keys(now), body):
        raise unauthorized("bad_signature", "signature does not match")
    return Delivery(
        store=store,
        topic=topic,
        event_id=event_id(PLATFORM, store.identity, webhook_id),
        delivery_id=webhook_id,
        occurred_at=parse_timestamp(header(headers, "x-shopify-triggered-at"), now),
        headers=kept_headers(headers, KEPT_HEADERS),
    )


def signed_headers(
    body: bytes,
    secret: bytes,
    *,
    shop_domain: str,
    topic: str,
    webhook_id: str,
    triggered_at: datetime,
    api_version: str = "2026-07",
) -> dict[str, str]:
    """Headers exactly as Shopify would send them with ``body`` (for the demo, bench and tests)."""
    return {
        "content-type": "application/json",
        "x-shopify-topic": topic,
        "x-shopify-shop-domain": shop_domain,
        "x-shopify-api-version": api_version,
        "x-shopify-webhook-id": webhook_id,
        "x-shopify-triggered-at": triggered_at.isoformat(),
        "x-shopify-hmac-sha256": hmac_sha256_b64(secret, body).decode(),
    }


# -- normalization: raw delivery → canonical events ------------------------------------------

_ORDER_KINDS = {
    "orders/create": "created",
    "orders/updated": "updated",
    "orders/paid": "paid",
    "orders/cancelled": "cancelled",
    "orders/fulfilled": "fulfilled",
}
# Kept raw for the connectors and ops (data export, store deactivation); no canonical event yet.
_RAW_ONLY = {"customers/data_request": "data_request", "app/uninstalled": "app_uninstalled"}


def normalize(raw: RawDelivery, context: NormalizeContext) -> list[Emit] | Skip:
    if raw.topic not in TOPICS:
        return Skip("unknown_topic")
    if raw.topic in _RAW_ONLY:
        return Skip(_RAW_ONLY[raw.topic])
    payload = decode_json_object(raw.body)
    if raw.topic in _ORDER_KINDS:
        return _order_events(raw, context, payload, _ORDER_KINDS[raw.topic])
    if raw.topic == "refunds/create":
        return [_refund_event(raw, context, payload, order_currency=None)]
    if raw.topic in ("products/create", "products/update"):
        return [_product_upsert(raw, context, payload)]
    if raw.topic == "products/delete":
        return product_deleted(raw, context, id_str(payload.get("id"), "id"), None)
    if raw.topic == "inventory_levels/update":
        return _inventory_level(raw, context, payload)
    if raw.topic in ("customers/create", "customers/update"):
        return [_customer_upsert(raw, context, payload)]
    return [_redaction(raw, context, payload)]


def _order_events(
    raw: RawDelivery, context: NormalizeContext, order: dict[str, Any], kind: str
) -> list[Emit]:
    currency = currency_code(order.get("currency"))
    order_id = id_str(order.get("id"), "id")
    customer = mapping(order.get("customer"))
    customer_id = optional_id(customer.get("id"), "customer.id")
    email = text(order.get("email") or order.get("contact_email") or customer.get("email"))
    shipping = mapping(mapping(order.get("total_shipping_price_set")).get("shop_money"))
    shipping_minor = (
        minor_units(shipping["amount"], currency)
        if "amount" in shipping
        else sum(
            minor_units(line.get("price", "0"), currency)
            for line in items(order.get("shipping_lines"))
        )
    )
    event = emit(
        "OrderEvent",
        raw,
        context,
        version=Version(f"order:{kind}", order_id, instant(order.get("updated_at"))),
        occurred_at=instant(order.get("updated_at")),
        kind=kind,
        order_id=order_id,
        order_number=text(order.get("name")) or text(order.get("order_number")),
        customer_id=customer_id,
        customer_key=shopper_key(context, raw.store_id, email, customer_id),
        currency=currency,
        total=money(order.get("total_price"), currency),
        subtotal=money(order.get("subtotal_price", "0"), currency),
        total_tax=money(order.get("total_tax", "0"), currency),
        total_discounts=money(order.get("total_discounts", "0"), currency),
        total_shipping=money_minor(shipping_minor, currency),
        financial_status=text(order.get("financial_status")),
        fulfillment_status=text(order.get("fulfillment_status")),
        placed_at=instant(order.get("created_at")),
        cancelled_at=instant(order.get("cancelled_at")),
        line_items=[_line_item(line, currency) for line in items(order.get("line_items"))],
        refund=None,
        attribution_hints=attribution_hints(
            text(order.get("landing_site")),
            text(order.get("referring_site")),
            source_name=text(order.get("source_name")),
            **_note_attribute_hints(order.get("note_attributes")),
        ),
    )
    # An order update repeats every refund so far; the fact id makes each one a single event.
    refunds = [
        _refund_event(raw, context, refund, order_currency=currency)
        for refund in items(order.get("refunds"))
    ]
    return [event, *refunds]


def _line_item(line: Any, currency: str) -> dict[str, Any]:
    line = mapping(line)
    quantity = count(line.get("quantity"), "line_items[].quantity")
    unit = minor_units(line.get("price"), currency)
    discounts = sum(
        minor_units(mapping(a).get("amount", "0"), currency)
        for a in items(line.get("discount_allocations"))
    ) or minor_units(line.get("total_discount") or "0", currency)
    return {
        "line_item_id": id_str(line.get("id"), "line_items[].id"),
        "product_id": optional_id(line.get("product_id"), "line_items[].product_id"),
        "variant_id": optional_id(line.get("variant_id"), "line_items[].variant_id"),
        "sku": text(line.get("sku")) or None,
        "title": text(line.get("name")) or text(line.get("title")),
        "quantity": quantity,
        "unit_price": money_minor(unit, currency),
        "total": money_minor(unit * quantity - discounts, currency),
    }


def _note_attribute_hints(value: Any) -> dict[str, str | None]:
    # Storefront scripts often record utm_* and click ids as note attributes.
    hints: dict[str, str | None] = {}
    for attribute in items(value):
        attribute = mapping(attribute)
        name = str(attribute.get("name") or "")
        if name.startswith("utm_") or name.endswith("clid"):
            hints[name] = text(attribute.get("value"))
    return hints


def _shop_money(value: Any) -> tuple[str | None, str | None]:
    shop = mapping(mapping(value).get("shop_money"))
    return text(shop.get("amount")), text(shop.get("currency_code"))


def _refund_event(
    raw: RawDelivery, context: NormalizeContext, refund: Any, order_currency: str | None
) -> Emit:
    """A refund, from refunds/create or from an order update's refunds[]. The money returned is
    the successful refund transactions (there is no refund total field); lines carry their
    shop-money subtotal plus tax."""
    refund = mapping(refund)
    refund_id = id_str(refund.get("id"), "refund.id")
    lines = [mapping(line) for line in items(refund.get("refund_line_items"))]
    transactions = [
        t
        for t in map(mapping, items(refund.get("transactions")))
        if t.get("kind") == "refund" and t.get("status") == "success"
    ]
    line_currency = next(
        (c for line in lines if (c := _shop_money(line.get("subtotal_set"))[1])), None
    )
    currency = currency_code(
        order_currency
        or line_currency
        or next((t.get("currency") for t in transactions if t.get("currency")), None)
        or store_currency(raw, context)
    )
    return refund_event(
        raw,
        context,
        order_id=id_str(refund.get("order_id"), "refund.order_id"),
        refund_id=refund_id,
        currency=currency,
        amount_minor=sum(minor_units(t.get("amount"), currency) for t in transactions),
        created_at=instant(refund.get("processed_at")) or instant(refund.get("created_at")),
        lines=[
            {
                "line_item_id": id_str(line.get("line_item_id"), "refund_line_items[].id"),
                "quantity": count(line.get("quantity"), "refund_line_items[].quantity"),
                "amount": money_minor(
                    minor_units(_shop_money(line.get("subtotal_set"))[0] or "0", currency)
                    + minor_units(_shop_money(line.get("total_tax_set"))[0] or "0", currency),
                    currency,
                ),
            }
            for line in lines
        ],
    )


def _product_upsert(raw: RawDelivery, context: NormalizeContext, product: dict[str, Any]) -> Emit:
    currency = store_currency(raw, context)
    product_id = id_str(product.get("id"), "id")
    return emit(
        "ProductUpsert",
        raw,
        context,
        version=Version("product", product_id, instant(product.get("updated_at"))),
        occurred_at=instant(product.get("updated_at")),
        product_id=product_id,
        title=text(product.get("title")) or "",
        handle=text(product.get("handle")),
        status=text(product.get("status")),
        vendor=text(product.get("vendor")),
        product_type=text(product.get("product_type")) or None,
        tags=comma_separated(product.get("tags")),
        variants=[
            {
                "variant_id": id_str(v.get("id"), "variants[].id"),
                "sku": text(v.get("sku")) or None,
                "title": text(v.get("title")),
                "price": money(v.get("price"), currency),
                "inventory_item_id": optional_id(
                    v.get("inventory_item_id"), "variants[].inventory_item_id"
                ),
                # Deprecated location-independent total; per-location stock comes from
                # inventory_levels/update.
                "inventory_quantity": (
                    count(v["inventory_quantity"], "variants[].inventory_quantity")
                    if v.get("inventory_quantity") is not None
                    else None
                ),
            }
            for v in map(mapping, items(product.get("variants")))
        ],
    )


def _inventory_level(
    raw: RawDelivery, context: NormalizeContext, level: dict[str, Any]
) -> list[Emit] | Skip:
    if level.get("available") is None:
        return Skip("untracked_inventory")  # no stock limit, so nothing can sell out
    item_id = id_str(level.get("inventory_item_id"), "inventory_item_id")
    location_id = id_str(level.get("location_id"), "location_id")
    return [
        emit(
            "InventoryLevel",
            raw,
            context,
            version=Version("inventory", item_id, instant(level.get("updated_at")), location_id),
            occurred_at=instant(level.get("updated_at")),
            inventory_item_id=item_id,
            location_id=location_id,
            method="absolute",
            quantity=count(level.get("available"), "available"),
        )
    ]


def _customer_upsert(raw: RawDelivery, context: NormalizeContext, customer: dict[str, Any]) -> Emit:
    customer_id = id_str(customer.get("id"), "id")
    email = text(customer.get("email"))
    consent = mapping(customer.get("email_marketing_consent"))
    spent = customer.get("total_spent")
    currency = text(customer.get("currency"))
    return emit(
        "CustomerUpsert",
        raw,
        context,
        version=Version("customer", customer_id, instant(customer.get("updated_at"))),
        occurred_at=instant(customer.get("updated_at")),
        customer_id=customer_id,
        customer_key=shopper_key(context, raw.store_id, email, customer_id),
        email=email,
        accepts_marketing=consent.get("state") == "subscribed"
        or customer.get("accepts_marketing") is True,
        orders_count=(
            count(customer["orders_count"], "orders_count")
            if customer.get("orders_count") is not None
            else None
        ),
        total_spent=(
            money(spent, currency_code(currency)) if spent is not None and currency else None
        ),
        created_at=instant(customer.get("created_at")),
        tags=comma_separated(customer.get("tags")),
    )


def _redaction(raw: RawDelivery, context: NormalizeContext, payload: dict[str, Any]) -> Emit:
    """customers/delete, customers/redact and shop/redact: erase personal data downstream."""
    if raw.topic == "shop/redact":
        return emit(
            "CustomerRedact",
            raw,
            context,
            event_id=derived_event_id(raw, "redact", "shop"),
            occurred_at=None,
            scope="shop",
        )
    customer = payload if raw.topic == "customers/delete" else mapping(payload.get("customer"))
    customer_id = optional_id(customer.get("id"), "customer.id")
    email = text(customer.get("email"))
    if customer_id is None and not email:
        raise NotNormalizable("missing_field", "redaction names no customer id or email")
    return emit(
        "CustomerRedact",
        raw,
        context,
        event_id=derived_event_id(raw, "redact", customer_id or "email"),
        occurred_at=None,
        scope="customer",
        customer_id=customer_id,
        customer_key=shopper_key(context, raw.store_id, email, customer_id),
        orders_to_redact=[
            id_str(o, "orders_to_redact[]") for o in items(payload.get("orders_to_redact"))
        ],
        request_id=None,
    )
