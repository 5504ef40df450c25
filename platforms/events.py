"""The canonical events a platform normalizer emits, and what it is given.

A normalizer is a function ``(RawDelivery, NormalizeContext) -> list[Emit] | Skip`` that raises
:class:`~platforms.payloads.NotNormalizable` for a payload it cannot turn into events. Event ids
are deterministic, so a retried delivery derives the same events. Nothing here touches Kafka.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from platforms.payloads import NotNormalizable, currency_code, money_minor
from revloop.ids import deterministic_id
from revloop.privacy import customer_key, customer_key_for_id
from schemas.registry import load_definition

EVENTS = "dev.revloop.events."


@dataclass(frozen=True)
class RawDelivery:
    """The parts of a RawWebhook record a normalizer needs."""

    event_id: str
    store_id: str
    platform: str
    topic: str
    occurred_at: datetime
    received_at: datetime
    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RawDelivery:
        envelope = record["envelope"]
        return cls(
            event_id=envelope["event_id"],
            store_id=envelope["store_id"],
            platform=envelope["platform"],
            topic=record["topic"],
            occurred_at=envelope["occurred_at"],
            received_at=envelope["received_at"],
            headers=record["headers"],
            body=record["body"],
        )


@dataclass(frozen=True)
class NormalizeContext:
    customer_salt: bytes = field(repr=False)
    store_currency: Mapping[str, str] = field(default_factory=dict)
    """The shop currency per store id, for payloads whose prices name none (products)."""
    source: str = "webhook"
    """Envelope source of the events: ``webhook``, or ``redrive`` when replaying raw records."""


@dataclass(frozen=True)
class Emit:
    """One canonical event: its Avro record full name and its value."""

    record: str
    value: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.value["envelope"]["event_id"])


@dataclass(frozen=True)
class Skip:
    """A verified delivery that deliberately yields no canonical event (kept raw, counted)."""

    reason: str


def derived_event_id(raw: RawDelivery, *parts: str) -> str:
    """The id of an event derived from one delivery: a retried delivery derives the same ids."""
    return deterministic_id("/".join(("derived", raw.event_id, *parts)))


def fact_event_id(raw: RawDelivery, kind: str, fact_id: str) -> str:
    """The id of an immutable fact the platform names itself (a refund), whichever delivery
    carries it: Shopify sends each refund twice, in refunds/create and in the next order update."""
    name = "/".join(("fact", raw.platform, raw.store_id, kind, fact_id))
    return deterministic_id(name)


@dataclass(frozen=True)
class Version:
    """Names an event that states one version of a platform resource (an order as of its
    ``updated_at``), whichever path carried it: a webhook, a hydration, a backfill or a
    reconciliation read of the same version make one event id, not two.

    The id is the resource, the ``kind`` (which tells apart the events one version yields: an
    order ``created`` and ``paid`` at one instant), the instant written in UTC (so the REST and
    GraphQL spellings of one time name one version) and a digest of the event's content (two
    changes within one second of a platform's clock are two versions). Without an instant the
    event is the delivery's own, as before versions."""

    kind: str
    resource_id: str
    at: datetime | None
    parts: tuple[str, ...] = ()

    def __init__(self, kind: str, resource_id: str, at: datetime | None, *parts: str) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "resource_id", resource_id)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "parts", parts)

    def event_id(self, raw: RawDelivery, content: Mapping[str, Any]) -> str:
        if self.at is None:
            return derived_event_id(raw, self.kind, self.resource_id, *self.parts)
        stamp = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        name = "/".join((self.resource_id, *self.parts, "v", stamp, digest))
        return fact_event_id(raw, self.kind, name)


def store_currency(raw: RawDelivery, context: NormalizeContext) -> str:
    """The shop currency for payloads that carry none. Unknown means dead letter, not a guess:
    once the store's currency is configured the delivery can be re-driven."""
    configured = context.store_currency.get(raw.store_id)
    if not configured:
        raise NotNormalizable(
            "store_currency_unknown", f"store {raw.store_id} has no currency configured"
        )
    return currency_code(configured)


def shopper_key(
    context: NormalizeContext, store_id: str, email: str | None, customer_id: str | None
) -> str | None:
    """The pseudonymous key touchpoints join on: from the email when there is one, else from
    the platform customer id."""
    if email and "@" in email:
        return customer_key(context.customer_salt, email)
    if customer_id:
        return customer_key_for_id(context.customer_salt, store_id, customer_id)
    return None


def emit(
    record: str,
    raw: RawDelivery,
    context: NormalizeContext,
    *,
    event_id: str | None = None,
    version: Version | None = None,
    occurred_at: datetime | None,
    **fields: Any,
) -> Emit:
    """A canonical event derived from ``raw``: same store and platform, caused by it. Its id
    is ``event_id``, or the one its ``version`` names."""
    if version is not None:
        event_id = version.event_id(raw, fields)
    if event_id is None:
        raise TypeError("an event needs its event_id or its version")
    envelope = {
        "event_id": event_id,
        "store_id": raw.store_id,
        "platform": raw.platform,
        "occurred_at": occurred_at or raw.occurred_at,
        "received_at": raw.received_at,
        "source": context.source,
        "caused_by": [raw.event_id],
    }
    return Emit(EVENTS + record, {**_defaults(EVENTS + record), "envelope": envelope, **fields})


@cache
def _defaults(record: str) -> dict[str, Any]:
    # The serde writes strictly (a misspelt field fails), so optional fields are filled here.
    return {f["name"]: f["default"] for f in load_definition(record)["fields"] if "default" in f}


_CLICK_IDS = ("gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid", "li_fat_id")


def attribution_hints(
    landing_url: str | None, referrer: str | None, **known: str | None
) -> dict[str, str]:
    """What the platform recorded about how the shopper arrived: landing page, referrer, and the
    utm_* parameters and ad click ids in the landing URL's query."""
    hints = {k: v for k, v in known.items() if v}
    if landing_url:
        hints["landing_site"] = landing_url
        for name, values in parse_qs(urlsplit(landing_url).query).items():
            if (name.startswith("utm_") or name in _CLICK_IDS) and values:
                hints[name] = values[0]
    if referrer:
        hints["referring_site"] = referrer
    return hints


def product_deleted(
    raw: RawDelivery, context: NormalizeContext, product_id: str, occurred_at: datetime | None
) -> list[Emit]:
    return [
        emit(
            "ProductDelete",
            raw,
            context,
            event_id=derived_event_id(raw, "product-delete", product_id),
            occurred_at=occurred_at,
            product_id=product_id,
        )
    ]


def customer_deleted(
    raw: RawDelivery, context: NormalizeContext, customer_id: str, occurred_at: datetime | None
) -> list[Emit]:
    """A customer deleted at the source: their personal data goes downstream too. Deletions
    carry only the id, so the key is the id-based one (sinks also erase by customer_id)."""
    return [
        emit(
            "CustomerRedact",
            raw,
            context,
            event_id=derived_event_id(raw, "redact", customer_id),
            occurred_at=occurred_at,
            scope="customer",
            customer_id=customer_id,
            customer_key=shopper_key(context, raw.store_id, None, customer_id),
        )
    ]


def refund_event(
    raw: RawDelivery,
    context: NormalizeContext,
    *,
    order_id: str,
    refund_id: str,
    currency: str,
    amount_minor: int,
    created_at: datetime | None,
    lines: list[dict[str, Any]],
    customer_id: str | None = None,
    customer_key: str | None = None,
) -> Emit:
    """A ``refunded`` OrderEvent. Its id is the platform's refund id, whichever delivery carries
    it, so a refund repeated in later order updates is one event."""
    return emit(
        "OrderEvent",
        raw,
        context,
        event_id=fact_event_id(raw, "refund", refund_id),
        occurred_at=created_at,
        kind="refunded",
        order_id=order_id,
        customer_id=customer_id,
        customer_key=customer_key,
        currency=currency,
        line_items=[],
        refund={
            "refund_id": refund_id,
            "amount": money_minor(amount_minor, currency),
            "created_at": created_at or raw.occurred_at,
            "line_items": lines,
        },
    )
