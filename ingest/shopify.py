"""Shopify webhooks: the store by X-Shopify-Shop-Domain, the signature by X-Shopify-Hmac-Sha256.

The signature is base64(HMAC-SHA256(app secret, raw body)). After a secret rotation Shopify may
sign with the previous secret for up to an hour, so the store's previous secret is accepted
until its window closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ingest.webhooks import (
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
