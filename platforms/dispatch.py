"""Which platform module handles a delivery, and what one verified delivery becomes: events, a
deliberate skip, or a dead letter. Pure; ``streams.normalizer`` is the Kafka shell around it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from platforms import bigcommerce, shopify, woocommerce
from platforms.events import Emit, NormalizeContext, RawDelivery, Skip
from platforms.payloads import NotNormalizable
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
