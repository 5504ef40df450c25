"""The worker's Prometheus metrics (served by `revloop worker` on ``worker_metrics_port``).

Counts are per process life and taken when a record is processed, not when its transaction
commits: records processed in a transaction that is then aborted (the process killed or fenced
before the checkpoint) are processed, and counted, again by the next life. So a rate over a
crash can read a little high; what readers see on the output topics is exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records = Counter(
            "revloop_worker_records",
            "Input records processed, by topic as named on the broker (with the topic "
            "prefix; replays after an aborted transaction count again).",
            ["topic"],
            registry=self.registry,
        )
        self.breaker_actions = Counter(
            "revloop_circuit_breaker_actions",
            "Circuit-breaker actions emitted to actions.circuit-breaker.v1, by action "
            "(pause, resume).",
            ["action"],
            registry=self.registry,
        )
        for action in ("pause", "resume"):  # present at 0, so increase() sees the first one
            self.breaker_actions.labels(action)

    def record_read(self, topic: str) -> None:
        self.records.labels(topic).inc()

    def breaker_action(self, value: Mapping[str, Any]) -> None:
        """Count one CircuitBreakerAction value on its way out (a stream ``update``)."""
        self.breaker_actions.labels(value["action"]).inc()
