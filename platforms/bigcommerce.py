"""BigCommerce webhooks: Standard Webhooks signatures, the store from the payload's ``producer``.

``webhook-signature`` holds ``v1,`` + base64(HMAC-SHA256(client secret, "{id}.{timestamp}.{body}"))
with id and timestamp from the webhook-id and webhook-timestamp headers; several space-separated
signatures may be sent. The secret is the app's, shared by every store that installed it, so
the signature is checked against the app secrets first and the body is parsed only afterwards to
find the store. Timestamps outside the tolerance window are refused, which stops replays of
captured deliveries.

Payloads are thin (ids only); the normalizer turns them into hydration requests.
"""

from __future__ import annotations

import email.utils
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
    NotNormalizable,
    count,
    currency_code,
    decode_json_object,
    epoch_seconds,
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
    kept_headers,
    registered_store,
    signing_keys,
    standard_signed_content,
    standard_webhook_headers,
    unauthorized,
    verified_fields,
)

PLATFORM = "bigcommerce"
DEFAULT_TOLERANCE = timedelta(minutes=5)
MAX_SIGNATURES = 8
_B64_SHA256_LEN = 44
_UNIX_TIME = re.compile(r"[0-9]{1,12}")
TOPICS = frozenset(
    {
        "store/order/created",
        "store/order/updated",
        "store/order/archived",
        "store/order/statusUpdated",
        "store/order/refund/created",
        "store/product/created",
        "store/product/updated",
        "store/product/deleted",
        "store/product/inventory/updated",
        "store/product/inventory/order/updated",
        "store/sku/inventory/updated",
        "store/sku/inventory/order/updated",
        "store/customer/created",
        "store/customer/updated",
        "store/customer/deleted",
        "store/app/uninstalled",
    }
)
KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")


def authenticate(
    body: bytes,
    headers: Mapping[str, str],
    stores: StoreLookup,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    custom_headers: Mapping[str, str] | None = None,
) -> Delivery:
    webhook_id = header(headers, "webhook-id")
    timestamp = header(headers, "webhook-timestamp")
    signatures = header(headers, "webhook-signature")
    if not webhook_id or not timestamp or not signatures:
        raise unauthorized("missing_header", "Standard Webhooks headers missing")
    if not _UNIX_TIME.fullmatch(timestamp):
        raise unauthorized("bad_timestamp", "webhook-timestamp is not a Unix time")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (OverflowError, OSError, ValueError):
        raise unauthorized("bad_timestamp", "webhook-timestamp is out of range") from None
    if abs(now - sent_at) > tolerance:
        raise unauthorized("stale_timestamp", "webhook-timestamp outside the tolerance window")
    app_keys = stores.verification_keys(PLATFORM, now)
    content = standard_signed_content(webhook_id, timestamp, body)
    # The header is unauthenticated: bound how many candidates it can make us check.
    candidates = [
        s.split(",", 1)[1].encode()
        for s in signatures.split()[:MAX_SIGNATURES]
        if s.startswith("v1,") and len(s) <= 3 + _B64_SHA256_LEN
    ]
    signers = signing_keys(candidates, app_keys, content)
    if not signers:
        raise unauthorized("bad_signature", "signature does not match")
    if custom_headers:
        # Optional per-registration secret headers, echoed by BigCommerce on every callback.
        for name, expected in custom_headers.items():
            if not _equal(header(headers, name), expected):
                raise unauthorized("bad_signature", "custom secret header does not match")
    # Not an object: {}, and the store lookup fails.
    payload = verified_fields(body, "producer", "created_at", "hash", "scope")
    producer = str(payload.get("producer") or "")
    if not producer.startswith("stores/"):
        raise unauthorized("unknown_store", "payload names no store")
    store = registered_store(stores, PLATFORM, producer)
    # The app-key check above only made parsing safe. With several apps registered, a delivery
    # signed by one app must not be able to speak for another app's store. (Set membership
    # compares our own keys with each other; nothing the caller sent is compared here.)
    if signers.isdisjoint(store.verification_keys(now)):
        raise unauthorized("bad_signature", "signature is not the store's app's")
    # `hash` (SHA-1 of `data`) repeats when BigCommerce fires one event twice, but also when two
    # real changes carry equal data (a SKU back at a level it had before); the event's own
    # `created_at` tells those apart. webhook-id only survives retries of one message.
    created_at = payload.get("created_at")
    source_id = (
        f"{payload['hash']}/{created_at}"
        if payload.get("hash") and created_at is not None
        else webhook_id
    )
    return Delivery(
        store=store,
        topic=str(payload.get("scope") or "unknown"),
        event_id=event_id(PLATFORM, store.identity, source_id),
        delivery_id=webhook_id,
        occurred_at=sent_at,
        headers=kept_headers(headers, KEPT_HEADERS),
    )


def _equal(got: str | None, expected: str) -> bool:
    return got is not None and hmac.compare_digest(got.encode(), expected.encode())


signed_headers = standard_webhook_headers
"""Headers exactly as BigCommerce (Standard Webhooks) would send them with a body."""


# -- normalization: raw delivery → canonical events ------------------------------------------
# Callbacks carry ids only, so nearly everything becomes a hydration request that the connector
# completes by fetching the resource. Deletions are the exception: a deleted resource cannot be
# fetched, and its id is all a deletion needs.


def normalize(raw: RawDelivery, context: NormalizeContext) -> list[Emit] | Skip:
    if raw.topic not in TOPICS:
        return Skip("unknown_topic")
    if raw.topic == "store/app/uninstalled":
        return Skip("app_uninstalled")
    payload = decode_json_object(raw.body)
    data = mapping(payload.get("data"))
    resource = text(data.get("type")) or raw.topic.split("/")[1]
    resource_id = id_str(data.get("id"), "data.id")
    occurred_at = epoch_seconds(payload.get("created_at"))
    if raw.topic == "store/product/deleted":
        return product_deleted(raw, context, resource_id, occurred_at)
    if raw.topic == "store/customer/deleted":
        return customer_deleted(raw, context, resource_id, occurred_at)
    return [
        emit(
            "HydrationRequest",
            raw,
            context,
            event_id=derived_event_id(raw, "hydrate", resource, resource_id),
            occurred_at=occurred_at,
            resource=resource,
            resource_id=resource_id,
            scope=raw.topic,
            raw_event_id=raw.event_id,
            details=_flatten({k: v for k, v in data.items() if k not in ("type", "id")}),
        )
    ]


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested ids and hints as dotted string keys: {"inventory": {"value": -2}} →
    {"inventory.value": "-2"}."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    key = prefix[:-1]
    if isinstance(value, list):
        return {key: ",".join(str(v) for v in value)}
    if value is None:
        return {key: ""}
    if isinstance(value, bool):
        return {key: "true" if value else "false"}
    return {key: str(value)}


# -- hydration: fetched resources → canonical events -----------------------------------------
# What the connector reads back for a thin callback (or a backfill page) becomes the same events
# Shopify's and WooCommerce's fat payloads make. Records are the API's own shapes, read with
# JSON floats as Decimals (V3 money is JSON numbers): a V2 order with its V2 products under
# "products" and its V3 refunds under "refunds"; a V3 product with "variants"; a V3 customer; a
# V3 inventory item ({"identity", "locations"}). Event ids name the record's version
# (date_modified), so a hydration, a backfill and a reconciliation of one version are one event.

# V2 order status ids (GET /v2/order_statuses).
STATUS_SHIPPED, STATUS_REFUNDED, STATUS_CANCELLED, STATUS_COMPLETED = 2, 4, 5, 10
STATUS_PARTIALLY_REFUNDED = 14
# Shipped, Partially Shipped, Awaiting Pickup/Shipment, Completed, Awaiting Fulfillment (payment
# confirmed), Disputed (paid, then contested).
_PAID_STATUS_IDS = frozenset({2, 3, 8, 9, 10, 11, 13})
# Incomplete, Pending, Cancelled, Declined, Awaiting Payment (WooCommerce counts cancelled as
# unpaid too). 12, Manual Verification Required, says nothing either way.
_UNPAID_STATUS_IDS = frozenset({0, 1, 5, 6, 7})
RESOURCE_NAMES: dict[str, str] = {
    "order": "order",
    "orders": "order",
    "product": "product",
    "products": "product",
    "customer": "customer",
    "customers": "customer",
    "inventory": "inventory",
    "inventory_levels": "inventory",
}
"""Webhook ``data.type`` names and StoreApi resource names → the record kinds handled here."""


def resource_events(
    raw: RawDelivery,
    context: NormalizeContext,
    resource: str,
    record: Mapping[str, Any],
    *,
    scope: str,
) -> list[Emit]:
    """The canonical events of one fetched record. ``scope`` is the webhook scope that asked for
    it (a backfill passes the ``.../updated`` scope): it decides an order's kind, and a
    ``store/order/refund/created`` yields the order's refunds only."""
    kind = RESOURCE_NAMES.get(resource)
    if kind == "order":
        return _hydrated_order_events(raw, context, record, scope)
    if kind == "product":
        return [_hydrated_product(raw, context, record)]
    if kind == "customer":
        return [_hydrated_customer(raw, context, record)]
    if kind == "inventory":
        return _hydrated_inventory(raw, context, record)
    raise NotNormalizable("unknown_resource", "no canonical events for this resource kind")


def bc_instant(value: Any) -> datetime | None:
    """A BigCommerce date: V2 writes RFC 2822 ("Tue, 20 Nov 2012 00:00:00 +0000"), V3 ISO 8601
    ("2018-08-15T14:48:46+00:00"). RFC 2822's "-0000" (no zone said) is read as UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NotNormalizable("bad_timestamp", "timestamp is not a string")
    if value.strip()[:1].isdigit():
        return instant(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise NotNormalizable("bad_timestamp", "timestamp is not RFC 2822 or ISO 8601") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _status_id(order: Mapping[str, Any]) -> int | None:
    value = order.get("status_id")
    return None if value is None else count(value, "status_id")


def order_kind(scope: str, status_id: int | None) -> str:
    if scope == "store/order/created":
        return "created"
    if status_id == STATUS_CANCELLED:
        return "cancelled"
    if status_id in (STATUS_SHIPPED, STATUS_COMPLETED):
        return "fulfilled"  # as WooCommerce's "completed"
    return "updated"  # updated, statusUpdated, archived


def financial_status(status_id: int | None) -> str | None:
    if status_id == STATUS_REFUNDED:
        return "refunded"
    if status_id == STATUS_PARTIALLY_REFUNDED:
        return "partially_refunded"
    if status_id in _PAID_STATUS_IDS:
        return "paid"
    if status_id in _UNPAID_STATUS_IDS:
        return "unpaid"
    return None


def _cents(value: Any, currency: str) -> int:
    # BigCommerce keeps four decimals: the tax-exclusive parts of tax-inclusive prices are
    # unrounded (10.00 incl. 20% VAT is 8.3333 ex tax). Reported parts are rounded; what was
    # charged (total_inc_tax) and refunded stays exact.
    return rounded_minor_units(value if value is not None else "0", currency)


def _hydrated_order_events(
    raw: RawDelivery, context: NormalizeContext, order: Mapping[str, Any], scope: str
) -> list[Emit]:
    order_id = id_str(order.get("id"), "id")
    # Amounts are in the transactional currency; currency_code is the display currency.
    currency = currency_code(
        order.get("default_currency_code")
        or order.get("currency_code")
        or store_currency(raw, context)
    )
    products = order.get("products")
    if not isinstance(products, list):
        # V2 answers {"url", "resource"} here; the client replaces it with the products.
        raise NotNormalizable("missing_field", "the order's products were not fetched")
    lines = [mapping(line) for line in products]
    customer_id = optional_id(order.get("customer_id"), "customer_id")  # 0 is a guest
    email = text(mapping(order.get("billing_address")).get("email"))
    key = shopper_key(context, raw.store_id, email, customer_id)
    status_id = _status_id(order)
    version = bc_instant(order.get("date_modified"))
    refunds = [
        _hydrated_refund(raw, context, mapping(r), order_id, currency, lines, customer_id, key)
        for r in items(order.get("refunds"))
    ]
    if scope == "store/order/refund/created":
        return refunds
    kind = order_kind(scope, status_id)
    event = emit(
        "OrderEvent",
        raw,
        context,
        version=Version(f"order:{kind}", order_id, version),
        occurred_at=version,
        kind=kind,
        order_id=order_id,
        order_number=order_id,  # BigCommerce shows the order id as its number
        customer_id=customer_id,
        customer_key=key,
        currency=currency,
        total=money(order.get("total_inc_tax"), currency),
        subtotal=money_minor(_cents(order.get("subtotal_ex_tax"), currency), currency),
        total_tax=money_minor(_cents(order.get("total_tax"), currency), currency),
        total_discounts=money_minor(
            _cents(order.get("discount_amount"), currency)
            + _cents(order.get("coupon_discount"), currency),
            currency,
        ),
        total_shipping=money_minor(_cents(order.get("shipping_cost_ex_tax"), currency), currency),
        financial_status=financial_status(status_id),
        fulfillment_status=text(order.get("status")),
        cancelled_at=version if status_id == STATUS_CANCELLED else None,
        line_items=[_order_line(line, currency) for line in lines],
        refund=None,
        attribution_hints=attribution_hints(
            None, None, source_name=text(order.get("order_source"))
        ),
    )
    # Every read repeats the refunds so far; their fact ids make each one a single event.
    return [event, *refunds]


def _order_line(line: Mapping[str, Any], currency: str) -> dict[str, Any]:
    quantity = count(line.get("quantity"), "products[].quantity")
    discounts = sum(
        _cents(mapping(d).get("amount"), currency) for d in items(line.get("applied_discounts"))
    )
    return {
        "line_item_id": id_str(line.get("id"), "products[].id"),
        "product_id": optional_id(line.get("product_id"), "products[].product_id"),
        "variant_id": optional_id(line.get("variant_id"), "products[].variant_id"),
        "sku": text(line.get("sku")) or None,
        "title": text(line.get("name")),
        "quantity": quantity,
        "unit_price": money_minor(_cents(line.get("price_ex_tax"), currency), currency),
        # total_ex_tax is before discounts; applied_discounts holds both the product's and its
        # share of order-level ones.
        "total": money_minor(_cents(line.get("total_ex_tax"), currency) - discounts, currency),
    }


def _hydrated_refund(
    raw: RawDelivery,
    context: NormalizeContext,
    refund: Mapping[str, Any],
    order_id: str,
    currency: str,
    lines: list[Mapping[str, Any]],
    customer_id: str | None,
    key: str | None,
) -> Emit:
    """A V3 refund (payment_actions/refunds): total_amount, less any payment the provider
    declined; the PRODUCT items as lines (item_id is the order product id)."""
    declined = sum(
        minor_units(p.get("amount") or 0, currency)
        for p in map(mapping, items(refund.get("payments")))
        if p.get("is_declined") is True
    )
    unit_inc_tax = {str(line.get("id")): line.get("price_inc_tax") for line in lines}
    refund_lines = []
    for item in map(mapping, items(refund.get("items"))):
        if item.get("item_type") != "PRODUCT":
            continue  # shipping, handling, wrapping, order-level amounts
        line_id = id_str(item.get("item_id"), "refund.items[].item_id")
        quantity = count(item.get("quantity") or 0, "refund.items[].quantity")
        requested = item.get("requested_amount")
        amount = (
            minor_units(requested, currency)
            if requested is not None
            else _cents(unit_inc_tax.get(line_id), currency) * quantity
        )
        refund_lines.append(
            {
                "line_item_id": line_id,
                "quantity": quantity,
                "amount": money_minor(amount, currency),
            }
        )
    return refund_event(
        raw,
        context,
        order_id=order_id,
        refund_id=id_str(refund.get("id"), "refund.id"),
        currency=currency,
        amount_minor=minor_units(refund.get("total_amount"), currency) - declined,
        created_at=bc_instant(refund.get("created")),
        lines=refund_lines,
        customer_id=customer_id,
        customer_key=key,
    )


def _hydrated_product(
    raw: RawDelivery, context: NormalizeContext, product: Mapping[str, Any]
) -> Emit:
    """A V3 product with its variants (``include=variants``). Catalog prices are in the store's
    default currency; a variant's null price inherits the product's."""
    currency = store_currency(raw, context)
    product_id = id_str(product.get("id"), "id")
    version = bc_instant(product.get("date_modified"))
    tracked = text(product.get("inventory_tracking")) in ("product", "variant")
    return emit(
        "ProductUpsert",
        raw,
        context,
        version=Version("product", product_id, version),
        occurred_at=version,
        product_id=product_id,
        title=text(product.get("name")) or "",
        handle=text(mapping(product.get("custom_url")).get("url")),
        status=text(product.get("availability")),  # available, disabled or preorder
        vendor=None,  # brand_id names a brand record, not a name
        product_type=text(product.get("type")),  # physical or digital
        tags=[],
        variants=[
            {
                "variant_id": id_str(v.get("id"), "variants[].id"),
                "sku": text(v.get("sku")) or None,
                "title": " / ".join(
                    str(mapping(o).get("label")) for o in items(v.get("option_values"))
                )
                or None,
                "price": money(
                    v.get("price") if v.get("price") is not None else product.get("price", 0),
                    currency,
                ),
                # The Inventory API names stock by variant id.
                "inventory_item_id": id_str(v.get("id"), "variants[].id"),
                "inventory_quantity": (
                    count(v["inventory_level"], "variants[].inventory_level")
                    if tracked and v.get("inventory_level") is not None
                    else None
                ),
            }
            for v in map(mapping, items(product.get("variants")))
        ],
    )


def _hydrated_customer(
    raw: RawDelivery, context: NormalizeContext, customer: Mapping[str, Any]
) -> Emit:
    customer_id = id_str(customer.get("id"), "id")
    email = text(customer.get("email"))
    version = bc_instant(customer.get("date_modified"))
    return emit(
        "CustomerUpsert",
        raw,
        context,
        version=Version("customer", customer_id, version),
        occurred_at=version,
        customer_id=customer_id,
        customer_key=shopper_key(context, raw.store_id, email, customer_id),
        email=email,
        # The V3 customer's only marketing-email consent (newsletter sign-ups are subscribers).
        accepts_marketing=customer.get("accepts_product_review_abandoned_cart_emails") is True,
        created_at=bc_instant(customer.get("date_created")),
    )


def _hydrated_inventory(
    raw: RawDelivery, context: NormalizeContext, item: Mapping[str, Any]
) -> list[Emit]:
    """A V3 inventory item: one variant's stock at each location. The quantity is
    ``available_to_sell`` (on hand less safety stock), what can still sell out. Inventory items
    carry no modification date, so without one the events are the delivery's own."""
    identity = mapping(item.get("identity"))
    variant_id = id_str(identity.get("variant_id"), "identity.variant_id")
    version = bc_instant(item.get("date_modified"))
    events = []
    for location in map(mapping, items(item.get("locations"))):
        location_id = id_str(location.get("location_id"), "locations[].location_id")
        events.append(
            emit(
                "InventoryLevel",
                raw,
                context,
                version=Version("inventory", variant_id, version, location_id),
                occurred_at=version,
                inventory_item_id=variant_id,
                location_id=location_id,
                method="absolute",
                quantity=count(location.get("available_to_sell"), "available_to_sell"),
                product_id=optional_id(identity.get("product_id"), "identity.product_id"),
                variant_id=variant_id,
                sku=text(identity.get("sku")) or None,
            )
        )
    return events


DEFAULT_LOCATION = "1"
"""BigCommerce's default inventory location: stock webhooks do not name one."""


def announced_level(
    raw: RawDelivery,
    context: NormalizeContext,
    variant_id: str,
    product_id: str,
    details: Mapping[str, str],
    occurred_at: datetime | None,
) -> Emit | None:
    """The stock level an inventory webhook announces, when it announces one: with method
    ``absolute``, ``inventory.value`` is the variant's level as of the event, which a read made
    later could no longer tell (a sell-out and its restock seconds apart). None for a relative
    change, which only a read of the level completes."""
    if details.get("inventory.method") != "absolute":
        return None
    quantity = count(int(details.get("inventory.value", "")), "inventory.value")
    return emit(
        "InventoryLevel",
        raw,
        context,
        version=Version("inventory", variant_id, occurred_at, DEFAULT_LOCATION),
        occurred_at=occurred_at,
        inventory_item_id=variant_id,
        location_id=DEFAULT_LOCATION,
        method="absolute",
        quantity=quantity,
        product_id=product_id,
        variant_id=variant_id,
        sku=None,
    )
