"""Which platform module handles a delivery, and what one verified delivery becomes: events, a
deliberate skip, or a dead letter. Pure; ``streams.normalizer`` is the Kafka shell around it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from platforms import bigcommerce, shopify, woocommerce
from platforms.events import Emit, NormalizeContext, RawDelivery, Skip
from platforms.payloads import NotNormalizable
from revloop.ids import deterministic_id
from revloop.text import invalid_text_at, may_hold_surrogates

PlatformNormalizer = Callable[[RawDelivery, NormalizeContext], "list[Emit] | Skip"]


PLATFORMS: Mapping[str, ModuleType] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
    "bigcommerce": bigcommerce,
}
"""Each platform's module: ``authenticate`` for ingest, ``normalize`` for the normalizer."""

NORMALIZERS: Mapping[str, PlatformNormalizer] = {
    name: module.normalize for name, module in PLATFORMS.items()
}


_MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class Outcome:
    """What one raw delivery became: events, a deliberate skip, or a dead letter."""

    status: str  # "normalized", "skipped" or "dead_lettered"
    events: tuple[Emit, ...] = ()
    reason: str = ""
    message: str = ""


def normalize_delivery(raw: RawDelivery, context: NormalizeContext) -> Outcome:
    normalizer = NORMALIZERS.get(raw.platform)
    if normalizer is None:
        return Outcome("dead_lettered", reason="unknown_platform", message=raw.platform)
    bad_text = _invalid_text(raw.body)
    if bad_text is not None:
        return Outcome(
            "dead_lettered",
            reason="invalid_unicode",
            message=f"text at {bad_text} is not valid Unicode (a lone surrogate escape)",
        )
    try:
        result = normalizer(raw, context)
    except NotNormalizable as exc:
        return Outcome("dead_lettered", reason=exc.reason, message=str(exc)[:_MESSAGE_LIMIT])
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        # A payload shape no normalizer expected. Only the exception type is kept: its message
        # could quote payload values, and dead letters outlive the raw topic's PII retention.
        return Outcome("dead_lettered", reason="unexpected_shape", message=type(exc).__name__)
    if isinstance(result, Skip):
        return Outcome("skipped", reason=result.reason)
    return Outcome("normalized", events=tuple(result))


def _invalid_text(body: bytes) -> str | None:
    """Where the body spells text that is not Unicode (revloop/text.py), checked once here so
    no platform normalizer has to."""
    if not may_hold_surrogates(body):
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON at all: the platform normalizer says so (bad_json)
    return invalid_text_at(payload)


# -- API reads: a resource read from the platform's API → the events its webhook would make ---
# Shopify's and WooCommerce's webhooks carry the API's resource, so a read goes through the
# same normalizer as the webhook whose resource it resembles; BigCommerce reads are what its
# hydration completes. Upsert events get version ids (platforms.events.Version): a
# read of a version a webhook already carried makes the same event, so an overlap duplicates
# nothing.


def _shopify_topic(resource: str, record: Mapping[str, Any]) -> str | None:
    if resource == "orders":
        return "orders/cancelled" if record.get("cancelled_at") else "orders/create"
    return {
        "products": "products/update",
        "customers": "customers/update",
        "inventory_levels": "inventory_levels/update",
    }.get(resource)


def _woocommerce_topic(resource: str, record: Mapping[str, Any]) -> str | None:
    if resource == "orders":
        return (
            "order.updated" if record.get("status") in ("cancelled", "failed") else "order.created"
        )
    return {
        "products": "product.updated",
        "variants": "product.updated",
        "inventory_levels": "product.updated",
        "customers": "customer.updated",
    }.get(resource)


def _bigcommerce_scope(resource: str, record: Mapping[str, Any]) -> tuple[str, str] | None:
    if resource == "orders":
        cancelled = str(record.get("status_id")) == "5"
        return "order", "store/order/statusUpdated" if cancelled else "store/order/created"
    return {
        "products": ("product", "store/product/updated"),
        "customers": ("customer", "store/customer/updated"),
        "inventory_levels": ("inventory", "store/sku/inventory/updated"),
    }.get(resource)


_READ_RECORDS = {
    # What a listing of the resource may yield: inventory listings are stock, not products.
    "inventory_levels": frozenset({"dev.revloop.events.InventoryLevel"}),
    "variants": frozenset({"dev.revloop.events.InventoryLevel"}),
}


def read_delivery(
    platform: str,
    store_id: str,
    resource: str,
    record: Mapping[str, Any],
    topic: str,
    received_at: datetime,
) -> RawDelivery:
    """A stand-in for the webhook that would have carried ``record``: its id is the record's
    content, so reading the same record again derives the same ids."""
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()
    digest = hashlib.sha256(body).hexdigest()
    return RawDelivery(
        event_id=deterministic_id(f"read/{platform}/{store_id}/{resource}/{digest}"),
        store_id=store_id,
        platform=platform,
        topic=topic,
        occurred_at=received_at,
        received_at=received_at,
        headers={},
        body=body,
    )


def read_events(
    platform: str,
    store_id: str,
    resource: str,
    record: Mapping[str, Any],
    context: NormalizeContext,
    received_at: datetime,
) -> list[Emit]:
    """The canonical events for one record read from the platform API (a backfill or a
    reconciliation). They are source events: nothing in revloop caused them, so ``caused_by``
    is empty. A WooCommerce variable product still yields its HydrationRequest, for the caller
    to complete as the hydrator does. Raises NotNormalizable like a normalizer."""
    events: list[Emit]
    if platform == "bigcommerce":
        read = _bigcommerce_scope(resource, record)
        if read is None:
            return []
        kind, scope = read
        raw = read_delivery(platform, store_id, resource, record, scope, received_at)
        events = bigcommerce.resource_events(raw, context, kind, record, scope=scope)
    else:
        chosen = (_shopify_topic if platform == "shopify" else _woocommerce_topic)(resource, record)
        if chosen is None:
            return []
        raw = read_delivery(platform, store_id, resource, record, chosen, received_at)
        result = NORMALIZERS[platform](raw, context)
        events = [] if isinstance(result, Skip) else result
    wanted = _READ_RECORDS.get(resource)
    return [as_source(e) for e in events if wanted is None or e.record in wanted]


def as_source(event: Emit) -> Emit:
    """An event read from a platform API is a source event: nothing in revloop caused it."""
    envelope = {**event.value["envelope"], "caused_by": []}
    return Emit(event.record, {**event.value, "envelope": envelope})
