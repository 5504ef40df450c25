"""Pure per-platform logic: verify a delivery, sign one (for simulations), normalize one.

One module per platform; what they share lives in ``webhooks`` (verification, raw records),
``payloads`` (reading fields exactly) and ``events`` (canonical events). Nothing here does I/O.
"""

from platforms.dispatch import PLATFORMS, Outcome, normalize_delivery

__all__ = ["PLATFORMS", "Outcome", "normalize_delivery"]
