"""The connectors' Prometheus metrics: `revloop connect hydrate` and `revloop connect ads` each
serve theirs on their own port (``hydrator_metrics_port``, ``ads_metrics_port``).

Counted as the work is done, per process life: an action or request redone after a crash (its
offset not yet committed) counts again, though its effects are not repeated."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from connectors.http import Answer


class ConnectorMetrics:
    def __init__(self, connector: str, registry: CollectorRegistry | None = None) -> None:
        self.connector = connector
        """``hydrate`` or ``ads``: the ``connector`` label of every series."""
        self.registry = registry or CollectorRegistry()
        self.calls = Counter(
            "revloop_connector_calls",
            "Platform API calls, each try counted, by connector, platform (or channel) and "
            "outcome: ok; retried (another try followed); failed (the call failed with it).",
            ["connector", "platform", "outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "revloop_connector_dead_letters",
            "Records the connector sent to ops.dead-letters.v1.",
            ["connector"],
            registry=self.registry,
        )
        self.dead_letters.labels(connector)  # present at 0, so increase() sees the first one

    def tried(self, platform: str, answers: Iterable[Answer]) -> None:
        """Count the tries an ApiClient journaled (``ApiClient.take_journal``)."""
        for answer in answers:
            self.calls.labels(self.connector, platform, answer.outcome).inc()

    def dead_lettered(self) -> None:
        self.dead_letters.labels(self.connector).inc()
