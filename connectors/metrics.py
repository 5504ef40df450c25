"""The connectors' Prometheus metrics: `revloop connect hydrate`, `revloop connect ads` and
`revloop reconcile --every` each serve theirs on their own port (``hydrator_metrics_port``,
``ads_metrics_port``, ``reconcile_metrics_port``).

Counted as the work is done, per process life: an action or request redone after a crash (its
offset not yet committed) counts again, though its effects are not repeated."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

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


class ReconcileMetrics:
    """A scheduled reconciliation's: rounds, and each store's run in them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rounds = Counter(
            "revloop_reconcile_rounds",
            "Rounds finished: every store with its platform API connected, tried once.",
            registry=self.registry,
        )
        self.runs = Counter(
            "revloop_reconcile_runs",
            "Store reconciliations by store and outcome: ok; failed (the platform, Kafka or "
            "Postgres failed it; the next round resumes from its checkpoints).",
            ["store", "outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "revloop_reconcile_events",
            "Events read from platforms, by store and outcome: held (the pipeline had that "
            "version), published (webhooks had missed it).",
            ["store", "outcome"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "revloop_reconcile_last_success_timestamp_seconds",
            "When each store's last successful reconciliation finished (Unix time).",
            ["store"],
            registry=self.registry,
        )

    def succeeded(self, store_id: str, read: int, published: int) -> None:
        self.runs.labels(store_id, "ok").inc()
        self.events.labels(store_id, "held").inc(read - published)
        self.events.labels(store_id, "published").inc(published)
        self.last_success.labels(store_id).set_to_current_time()

    def failed(self, store_id: str) -> None:
        self.runs.labels(store_id, "failed").inc()
