"""Pure building blocks the platform normalizers share: exact money, string ids, instants, and
canonical events with deterministic ids.

Nothing here touches Kafka. A normalizer is a function ``(RawDelivery, NormalizeContext) ->
list[Emit]`` that raises :class:`NotNormalizable` for a payload it cannot turn into events; the
shell (``ingest.normalizer``) sends those to the dead-letter topic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ingest.webhooks import deterministic_id
from revloop.privacy import customer_key, customer_key_for_id
from schemas.registry import load_definition

# ISO 4217 minor-unit exponents that differ from 2. Amounts are never assumed to have two
# decimals: JPY has none, KWD three.
# fmt: off
CURRENCY_EXPONENTS: Mapping[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}
# fmt: on
_CURRENCY = re.compile(r"[A-Z]{3}")
EVENTS = "dev.revloop.events."


class NotNormalizable(Exception):
    """A verified delivery that cannot become canonical events. ``reason`` is a short code for
    the dead letter and the metrics; the message must never quote payload values (PII)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


# -- ids -------------------------------------------------------------------------------------


def derived_event_id(raw: RawDelivery, *parts: str) -> str:
    """The id of an event derived from one delivery: a retried delivery derives the same ids."""
    return deterministic_id("/".join(("derived", raw.event_id, *parts)))


def fact_event_id(raw: RawDelivery, kind: str, fact_id: str) -> str:
    """The id of an immutable fact the platform names itself (a refund), whichever delivery
    carries it: Shopify sends each refund twice, in refunds/create and in the next order update."""
    name = "/".join(("fact", raw.platform, raw.store_id, kind, fact_id))
    return deterministic_id(name)


def id_str(value: Any, what: str) -> str:
    """A platform id as a string. Ints come from a big-int-safe parse, so Shopify's ids above
    2^53 keep every digit; a JSON float would already have lost them and is refused."""
    if isinstance(value, bool) or value is None:
        raise NotNormalizable("missing_field", f"{what} is missing")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise NotNormalizable("bad_id", f"{what} is not an integer or string id")


def optional_id(value: Any, what: str) -> str | None:
    """Like :func:`id_str`, but ``None`` (and WooCommerce's 0, which means 'none') give None."""
    if value is None or value == 0 or value == "":
        return None
    return id_str(value, what)


# -- payloads --------------------------------------------------------------------------------


def decode_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object. Floats become Decimals (so 18.5 stays exact) and integers
    Python ints (so big ids stay exact); NaN and Infinity are refused."""
    try:
        payload = json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # The message says where parsing stopped, never what the body holds.
        raise NotNormalizable("bad_json", f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(payload, dict):
        raise NotNormalizable("bad_json", "body is JSON but not an object")
    return payload


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def mapping(value: Any) -> Mapping[str, Any]:
    """A nested object, with ``null`` read as empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotNormalizable("bad_shape", "expected a JSON object")
    return value


def items(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotNormalizable("bad_shape", "expected a JSON array")
    return value


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    raise NotNormalizable("bad_shape", "expected a string")


_INT32 = 2**31
_INT64 = 2**63


def count(value: Any, what: str) -> int:
    """A quantity: an integer (or integer string) that fits Avro's int."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -_INT32 <= value < _INT32:
        return value
    raise NotNormalizable("bad_quantity", f"{what} is not an integer quantity")


# -- money -----------------------------------------------------------------------------------


def currency_code(value: Any) -> str:
    code = value.strip().upper() if isinstance(value, str) else ""
    if not _CURRENCY.fullmatch(code):
        raise NotNormalizable("bad_currency", "currency is not an ISO 4217 code")
    return code


def _decimal(amount: Any) -> Decimal:
    if isinstance(amount, (bool, float)):
        raise NotNormalizable("bad_money", "amount is not a decimal string")
    try:
        value = Decimal(amount.strip() if isinstance(amount, str) else amount)
    except (InvalidOperation, TypeError, ValueError, AttributeError):
        raise NotNormalizable("bad_money", "amount is not a decimal number") from None
    if not value.is_finite():
        raise NotNormalizable("bad_money", "amount is not finite")
    return value


def minor_units(amount: Any, currency: str) -> int:
    """An exact amount in the currency's minor units: "18.50" USD → 1850, "12800" JPY → 12800.
    More precision than the currency has (1.005 USD) is refused rather than rounded: a cent that
    appears or vanishes here would be billed."""
    scaled = _decimal(amount).scaleb(CURRENCY_EXPONENTS.get(currency, 2))
    if scaled != scaled.to_integral_value():
        raise NotNormalizable("bad_money", f"amount has more decimals than {currency} allows")
    if not -_INT64 <= scaled < _INT64:
        raise NotNormalizable("bad_money", "amount is out of range")
    return int(scaled)


def rounded_minor_units(amount: Any, currency: str) -> int:
    """For figures the platform itself leaves unrounded (WooCommerce unit prices), rounded half
    to even. Never used for totals."""
    scaled = _decimal(amount).scaleb(CURRENCY_EXPONENTS.get(currency, 2))
    return int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))


def money(amount: Any, currency: str) -> dict[str, Any]:
    return {"amount_minor": minor_units(amount, currency), "currency": currency}


def money_minor(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency}


def store_currency(raw: RawDelivery, context: NormalizeContext) -> str:
    """The shop currency for payloads that carry none. Unknown means dead letter, not a guess:
    once the store's currency is configured the delivery can be re-driven."""
    configured = context.store_currency.get(raw.store_id)
    if not configured:
        raise NotNormalizable(
            "store_currency_unknown", f"store {raw.store_id} has no currency configured"
        )
    return currency_code(configured)


# -- time ------------------------------------------------------------------------------------


def instant(value: Any, *, naive_is_utc: bool = False) -> datetime | None:
    """An ISO-8601 timestamp as an aware datetime. Offsets are required unless the platform
    documents the field as UTC without one (WooCommerce's ``*_gmt``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NotNormalizable("bad_timestamp", "timestamp is not a string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise NotNormalizable("bad_timestamp", "timestamp is not ISO 8601") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise NotNormalizable("bad_timestamp", "timestamp has no UTC offset")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def epoch_seconds(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**11:
        return datetime.fromtimestamp(value, UTC)
    return None


# -- customers -------------------------------------------------------------------------------


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


# -- events ----------------------------------------------------------------------------------


def emit(
    record: str,
    raw: RawDelivery,
    context: NormalizeContext,
    *,
    event_id: str,
    occurred_at: datetime | None,
    **fields: Any,
) -> Emit:
    """A canonical event derived from ``raw``: same store and platform, caused by it."""
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


def comma_separated(value: Any) -> list[str]:
    """Shopify's tags: one string, comma-separated."""
    return [part.strip() for part in (text(value) or "").split(",") if part.strip()]


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
