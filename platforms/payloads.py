"""Reading platform payloads exactly: string ids, integers, money in minor units, instants.

Pure helpers the platform normalizers share. A value that cannot be read raises
:class:`NotNormalizable`, which the normalizer turns into a dead letter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

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


class NotNormalizable(Exception):
    """A verified delivery that cannot become canonical events. ``reason`` is a short code for
    the dead letter and the metrics; the message must never quote payload values (PII)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


def comma_separated(value: Any) -> list[str]:
    """Shopify's tags: one string, comma-separated."""
    return [part.strip() for part in (text(value) or "").split(",") if part.strip()]
