"""Score each order's attribution against ad and content touchpoints (docs/streams.md)."""

from streams.attribution.rules import (
    AttributionRules,
    Confidence,
    Credit,
    Model,
    Touch,
    TouchKind,
    confidence,
    credits,
    in_holdout,
    in_window,
)

__all__ = [
    "AttributionRules",
    "Confidence",
    "Credit",
    "Model",
    "Touch",
    "TouchKind",
    "confidence",
    "credits",
    "in_holdout",
    "in_window",
]
