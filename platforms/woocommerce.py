"""WooCommerce webhooks: the store by X-WC-Webhook-Source, the signature by X-WC-Webhook-Signature.

The signature is base64(HMAC-SHA256(webhook secret, raw body)). When a webhook is created,
WooCommerce sends an unsigned form-encoded ping (``webhook_id=N``) that must get a 200; it carries
nothing, so it is answered and not published. WooCommerce's delivery id is new on every send,
so the event id comes from the resource id and its ``date_modified_gmt`` instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from platforms.events import (
    Emit,
    NormalizeContext,
    RawDelivery,
    Skip,
    Version,
    attribution_hints,
    customer_deleted,
    derived_event_id,
    emit,
    product_deleted,
    refund_event,
    shopper_key,
    store_currency,
)
from platforms.payloads import (
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
    rounded_minor_units,
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
    verified_fields,
)

PLATFORM = "woocommerce"
TOPICS = frozenset(
    f"{resource}.{event}"
    for resource in ("order", "product", "customer")
    for event in ("created", "updated", "deleted", "restored")
)
KEPT_HEADERS = (
    "content-type",
    "x-wc-webhook-source",
    "x-wc-webhook-topic",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
    "x-wc-webhook-signature",
)
_PING = re.compile(rb"webhook_id=\d{1,20}")


def is_ping(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = (header(headers, "content-type") or "").lower()
    return (
        content_type.startswith("application/x-www-form-urlencoded")
        and header(headers, "x-wc-webhook-signature") is None
        and _PING.fullmatch(body.strip()) is not None
    )


def authenticate(
    body: bytes, headers: Mapping[str, str], stores: StoreLookup, now: datetime
) -> Delivery:
    source = header(headers, "x-wc-webhook-source")
    signature = header(headers, "x-wc-webhook-signature")
    topic = header(headers, "x-wc-webhook-topic")
    if not source or not signature or not topic:
        raise unauthorized("missing_header", "WooCommerce headers missing")
    store = registered_store(stores, PLATFORM, source)
    if not signed_by_any([signature.encode()], store.verification_keys(now), body):
        raise unauthorized("bad_signature", "signature does not match")
    resource_id, modified = _resource_version(body)
    source_id = (
        f"{topic}/{resource_id}/{modified}"
        if resource_id is not None and modified is not None
        else f"{topic}/sha256:{hashlib.sha256(body).hexdigest()}"
    )
    return Delivery(
        store=store,
        topic=topic,
        event_id=event_id(PLATFORM, store.identity, source_id),
        delivery_id=header(headers, "x-wc-webhook-delivery-id"),
        occurred_at=parse_timestamp(modified, now),
        headers=kept_headers(headers, KEPT_HEADERS),
    )


def _resource_version(body: bytes) -> tuple[str | None, str | None]:
    # Runs after verification. A body that isn't JSON still gets a stable id (from its bytes) and
    # goes on to the dead-letter path; it is never an error here.
    payload = verified_fields(body, "id", "date_modified_gmt", "date_modified")
    if payload.get("id") is None:
        return None, None
    modified = payload.get("date_modified_gmt") or payload.get("date_modified")
    return str(payload["id"]), (str(modified) if modified else None)


def signed_headers(
    body: bytes, secret: bytes, *, source: str, topic: str, webhook_id: str, delivery_id: str
) -> dict[str, str]:
    """Headers exactly as WooCommerce would send them with ``body``."""
    resource, _, event = topic.partition(".")
    return {
        "content-type": "application/json",
        "x-wc-webhook-source": source,
        "x-wc-webhook-topic": topic,
        "x-wc-webhook-resource": resource,
        "x-wc-webhook-event": event,
        "x-wc-webhook-id": webhook_id,
        "x-wc-webhook-delivery-id": delivery_id,
        "x-wc-webhook-signature": hmac_sha256_b64(secret, body).decode(),
    }


# -- normalization: raw delivery → canonical events ------------------------------------------
# Bodies are the REST v3 resource, built when the webhook is sent. Times are read from the
# ``*_gmt`` fields, which are UTC written without an offset.

# WooCommerce 8.5+ records how the shopper arrived in order meta with this prefix.
_ORDER_ATTRIBUTION_META = "_wc_order_attribution_"


def normalize(raw: RawDelivery, context: NormalizeContext) -> list[Emit] | Skip:
    if raw.topic not in TOPICS:
        return Skip("unknown_topic")
    resource, _, event = raw.topic.partition(".")
    payload = decode_json_object(raw.body)
    resource_id = id_str(payload.get("id"), "id")
    if resource == "order":
        if event == "deleted":
            return Skip("order_trashed")  # the body is {id}: no totals, nothing to correct
        return _order_events(raw, context, payload, event)
    if resource == "product":
        if event == "deleted":
            return product_deleted(raw, context, resource_id, None)
        return _product_events(raw, context, payload)
    if event == "deleted":
        return customer_deleted(raw, context, resource_id, None)
    return [_customer_upsert(raw, context, payload)]


def _gmt(payload: Mapping[str, Any], name: str) -> datetime | None:
    return instant(payload.get(f"{name}_gmt"), naive_is_utc=True)


def _order_kind(event: str, status: str | None) -> str:
    if event == "created":
        return "created"
    return {"cancelled": "cancelled", "failed": "cancelled", "completed": "fulfilled"}.get(
        status or "", "updated"
    )


# WooCommerce's paid statuses (wc_get_is_paid_statuses(), what WC_Order::is_paid() checks): paid
# even when no date_paid was recorded (imported or hand-edited orders).
_PAID_STATUSES = frozenset({"processing", "completed"})
# Still waiting for the payment, or given up on it.
_UNPAID_STATUSES = frozenset({"pending", "on-hold", "failed", "cancelled", "checkout-draft"})


def _financial_status(status: str | None, date_paid_gmt: Any) -> str | None:
    if status == "refunded":
        return "refunded"
    if status in _PAID_STATUSES or date_paid_gmt:
        return "paid"
    if status in _UNPAID_STATUSES:
        return "unpaid"
    return None  # a plugin's status and no payment date: unknown rather than a guess


def _subtotal(
    raw_lines: Any, lines: list[Mapping[str, Any]], currency: str
) -> dict[str, Any] | None:
    """The sum of the line subtotals (before discounts, excluding tax even when prices include
    it, like the order's subtotal). A line without one makes it unknown: its post-discount
    ``total`` is not its subtotal, and the payload does not say the line's discount."""
    if raw_lines is None or any(line.get("subtotal") is None for line in lines):
        return None
    return money_minor(sum(minor_units(line["subtotal"], currency) for line in lines), currency)


def _order_events(
    raw: RawDelivery, context: NormalizeContext, order: dict[str, Any], event: str
) -> list[Emit]:
    currency = currency_code(order.get("currency"))
    order_id = id_str(order.get("id"), "id")
    customer_id = optional_id(order.get("customer_id"), "customer_id")  # 0 is a guest
    email = text(mapping(order.get("billing")).get("email"))
    lines = [mapping(line) for line in items(order.get("line_items"))]
    status = text(order.get("status"))
    occurred_at = _gmt(order, "date_modified")
    meta = {
        str(m.get("key"))[len(_ORDER_ATTRIBUTION_META) :]: text(m.get("value"))
        for m in map(mapping, items(order.get("meta_data")))
        if str(m.get("key") or "").startswith(_ORDER_ATTRIBUTION_META)
    }
    landing = meta.pop("session_entry", None)
    referrer = meta.pop("referrer", None)
    kind = _order_kind(event, status)
    event_out = emit(
        "OrderEvent",
        raw,
        context,
        version=Version(f"order:{kind}", order_id, occurred_at),
        occurred_at=occurred_at,
        kind=kind,
        order_id=order_id,
        order_number=text(order.get("number")),
        customer_id=customer_id,
        customer_key=shopper_key(context, raw.store_id, email, customer_id),
        currency=currency,
        total=money(order.get("total"), currency),
        subtotal=_subtotal(order.get("line_items"), lines, currency),
        total_tax=money(order.get("total_tax", "0"), currency),
        total_discounts=money(order.get("discount_total", "0"), currency),
        total_shipping=money(order.get("shipping_total", "0"), currency),
        financial_status=_financial_status(status, order.get("date_paid_gmt")),
        fulfillment_status=status,
        placed_at=_gmt(order, "date_created"),
        cancelled_at=occurred_at if status == "cancelled" else None,
        line_items=[_line_item(line, currency) for line in lines],
        refund=None,
        attribution_hints=attribution_hints(landing, referrer, **meta),
    )
    # No refund topic exists: an order update lists every refund so far, with its negative total.
    refunds = [
        refund_event(
            raw,
            context,
            order_id=order_id,
            refund_id=id_str(refund.get("id"), "refunds[].id"),
            currency=currency,
            amount_minor=-minor_units(refund.get("total"), currency),
            created_at=occurred_at,
            lines=[],  # the order lists refund totals only
            customer_id=customer_id,
            customer_key=event_out.value["customer_key"],
        )
        for refund in map(mapping, items(order.get("refunds")))
    ]
    return [event_out, *refunds]


def _line_item(line: Any, currency: str) -> dict[str, Any]:
    line = mapping(line)
    quantity = count(line.get("quantity"), "line_items[].quantity")
    total = minor_units(line.get("total", "0"), currency)
    return {
        "line_item_id": id_str(line.get("id"), "line_items[].id"),
        "product_id": optional_id(line.get("product_id"), "line_items[].product_id"),
        "variant_id": optional_id(line.get("variation_id"), "line_items[].variation_id"),
        "sku": text(line.get("sku")) or None,
        "title": text(line.get("name")),
        "quantity": quantity,
        # `price` is an unrounded number (total / quantity); the line total is exact.
        "unit_price": money_minor(
            rounded_minor_units(line.get("price"), currency)
            if line.get("price") is not None
            else (total // quantity if quantity else 0),
            currency,
        ),
        "total": money_minor(total, currency),
    }


def _product_events(
    raw: RawDelivery, context: NormalizeContext, product: dict[str, Any]
) -> list[Emit]:
    product_id = id_str(product.get("id"), "id")
    occurred_at = _gmt(product, "date_modified")
    kind = text(product.get("type"))
    parent_id = optional_id(product.get("parent_id"), "parent_id")
    events: list[Emit] = []
    if kind != "variation":
        currency = store_currency(raw, context)
        price = text(product.get("price")) or "0"  # "" on a product with no price yet
        variants = (
            []  # a variable product lists variation ids only; the connector hydrates them
            if product.get("variations")
            else [
                {
                    "variant_id": product_id,
                    "sku": text(product.get("sku")) or None,
                    "title": None,
                    "price": money(price, currency),
                    "inventory_item_id": product_id,
                    "inventory_quantity": _stock(product),
                }
            ]
        )
        version = Version("product", product_id, occurred_at)
        events.append(_product_upsert(raw, context, product, version, variants))
        if product.get("variations"):
            events.append(
                emit(
                    "HydrationRequest",
                    raw,
                    context,
                    event_id=derived_event_id(raw, "hydrate", "product_variations", product_id),
                    occurred_at=occurred_at,
                    resource="product_variations",
                    resource_id=product_id,
                    scope=raw.topic,
                    raw_event_id=raw.event_id,
                    details={"variations": ",".join(str(v) for v in product["variations"])},
                )
            )
    stock_event = _stock_event(raw, context, product, parent_id or product_id)
    return events + ([stock_event] if stock_event is not None else [])


def _product_upsert(
    raw: RawDelivery,
    context: NormalizeContext,
    product: Mapping[str, Any],
    version: Version,
    variants: list[dict[str, Any]],
) -> Emit:
    return emit(
        "ProductUpsert",
        raw,
        context,
        version=version,
        occurred_at=version.at,
        product_id=version.resource_id,
        title=text(product.get("name")) or "",
        handle=text(product.get("slug")),
        status=text(product.get("status")),
        vendor=None,
        product_type=text(product.get("type")),
        tags=[str(mapping(t).get("name")) for t in items(product.get("tags"))],
        variants=variants,
    )


def _stock_event(
    raw: RawDelivery, context: NormalizeContext, item: Mapping[str, Any], product_id: str
) -> Emit | None:
    """A product's or variation's managed stock. WooCommerce has no inventory webhook and no
    locations: stock rides on the product."""
    stock = _stock(item)
    if stock is None:
        return None
    item_id = id_str(item.get("id"), "id")
    occurred_at = _gmt(item, "date_modified")
    return emit(
        "InventoryLevel",
        raw,
        context,
        version=Version("inventory", item_id, occurred_at, "default"),
        occurred_at=occurred_at,
        inventory_item_id=item_id,
        location_id="default",
        method="absolute",
        quantity=stock,
        product_id=product_id,
        variant_id=item_id,
        sku=text(item.get("sku")) or None,
    )


def variations_events(
    raw: RawDelivery,
    context: NormalizeContext,
    product: Mapping[str, Any],
    variations: Sequence[Mapping[str, Any]],
) -> list[Emit]:
    """A variable product made whole from the API (the hydrator): its ProductUpsert with every
    variation as a variant, and each variation's managed stock. Its version is the newest of
    the product's and the variations' (a variation's change changes the whole), and its kind
    differs from the webhook's variant-less upsert of the same product version."""
    currency = store_currency(raw, context)
    product_id = id_str(product.get("id"), "id")
    versions = [t for t in (_gmt(r, "date_modified") for r in (product, *variations)) if t]
    newest = max(versions) if versions else None
    variants = [
        {
            "variant_id": id_str(v.get("id"), "variations[].id"),
            "sku": text(v.get("sku")) or None,
            "title": " / ".join(str(mapping(a).get("option")) for a in items(v.get("attributes")))
            or None,
            "price": money(text(v.get("price")) or "0", currency),
            "inventory_item_id": id_str(v.get("id"), "variations[].id"),
            "inventory_quantity": _stock(v),
        }
        for v in map(mapping, variations)
    ]
    version = Version("product:variations", product_id, newest)
    upsert = _product_upsert(raw, context, product, version, variants)
    stock = [_stock_event(raw, context, v, product_id) for v in map(mapping, variations)]
    return [upsert, *(e for e in stock if e is not None)]


def _stock(product: Mapping[str, Any]) -> int | None:
    if not product.get("manage_stock") or product.get("stock_quantity") is None:
        return None
    return count(product["stock_quantity"], "stock_quantity")


def _customer_upsert(raw: RawDelivery, context: NormalizeContext, customer: dict[str, Any]) -> Emit:
    customer_id = id_str(customer.get("id"), "id")
    email = text(customer.get("email")) or text(mapping(customer.get("billing")).get("email"))
    return emit(
        "CustomerUpsert",
        raw,
        context,
        version=Version("customer", customer_id, _gmt(customer, "date_modified")),
        occurred_at=_gmt(customer, "date_modified"),
        customer_id=customer_id,
        customer_key=shopper_key(context, raw.store_id, email, customer_id),
        email=email,
        accepts_marketing=False,
        created_at=_gmt(customer, "date_created"),
    )
