"""WooCommerce webhooks: the store by X-WC-Webhook-Source, the signature by X-WC-Webhook-Signature.

The signature is base64(HMAC-SHA256(webhook secret, raw body)). When a webhook is created,
WooCommerce sends an unsigned form-encoded ping (``webhook_id=N``) that must get a 200; it carries
nothing, so it is answered and not published. WooCommerce's delivery id is new on every send,
so the event id comes from the resource id and its ``date_modified_gmt`` instead.
"""

from __future__ import annotations

import hashlib
import json
import re
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
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(payload, dict) or payload.get("id") is None:
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
