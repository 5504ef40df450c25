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
    customer_deleted,
    derived_event_id,
    emit,
    product_deleted,
)
from platforms.payloads import decode_json_object, epoch_seconds, id_str, mapping, text
from platforms.webhooks import (
    Delivery,
    StoreLookup,
    event_id,
    header,
    hmac_sha256_b64,
    kept_headers,
    registered_store,
    signing_keys,
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


def signed_content(webhook_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


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
    content = signed_content(webhook_id, timestamp, body)
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


def signed_headers(
    body: bytes, secret: bytes, *, webhook_id: str, sent_at: datetime
) -> dict[str, str]:
    """Headers exactly as BigCommerce (Standard Webhooks) would send them with ``body``."""
    timestamp = str(int(sent_at.timestamp()))
    signature = hmac_sha256_b64(secret, signed_content(webhook_id, timestamp, body)).decode()
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }


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
