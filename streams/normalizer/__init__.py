"""raw.webhooks.v1 → canonical events, exactly once (docs/normalizer.md)."""

from streams.normalizer.processor import Normalizer, build_normalizer, normalize_command

__all__ = ["Normalizer", "build_normalizer", "normalize_command"]
