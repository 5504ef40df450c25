"""Pause a product's ads the moment it sells out, resume them on restock (docs/streams.md)."""

from streams.circuit_breaker.breaker import (
    BreakerRules,
    BreakerState,
    Decision,
    Transition,
    advance,
    observe,
)

__all__ = ["BreakerRules", "BreakerState", "Decision", "Transition", "advance", "observe"]
