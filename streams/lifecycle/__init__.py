"""Lifecycle flows from purchase behaviour, per customer (docs/streams.md)."""

from streams.lifecycle.rules import (
    CustomerState,
    Flow,
    LifecycleRules,
    Order,
    Trigger,
    advance,
    churn_risk_due,
    record_order,
)

__all__ = [
    "CustomerState",
    "Flow",
    "LifecycleRules",
    "Order",
    "Trigger",
    "advance",
    "churn_risk_due",
    "record_order",
]
