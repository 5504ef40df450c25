"""Prometheus metrics for ingest. Label values are bounded: a topic label is only ever a topic
the platform module knows, never a header value an unverified caller chose; feed labels are the
two feed names and fixed outcome and reason words."""

from __future__ import annotations

from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from revloop.metrics import add_process_collectors

M = TypeVar("M", Counter, Histogram)

REQUEST_SECONDS = "revloop_ingest_request_duration_seconds"
PUBLISH_SECONDS = "revloop_ingest_publish_duration_seconds"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class IngestMetrics:
    """The ingest metrics. ``labelled()`` caches labelled children: looking one up by labels
    costs more than the increment itself on the accept path."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        add_process_collectors(self.registry)
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}
        self.received = Counter(
            "revloop_ingest_deliveries_received_total",
            "Webhook deliveries received, before any check.",
            ["platform"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "revloop_ingest_deliveries_total",
            "Webhook deliveries by outcome: accepted, rejected, unavailable, ignored, error (an "
            "unexpected 500) or abandoned (the client left mid-body). Each delivery received "
            "has exactly one.",
            ["platform", "topic", "outcome", "reason"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            REQUEST_SECONDS,
            "Time from request start to response, by platform.",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            PUBLISH_SECONDS,
            "Time for Kafka to acknowledge a raw record with acks=all.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feed_requests = Counter(
            "revloop_ingest_feed_requests_total",
            "Marketing feed requests (POST /events/...) by feed, outcome (accepted, rejected, "
            "unavailable, abandoned) and reason.",
            ["feed", "outcome", "reason"],
            registry=self.registry,
        )
        self.feed_records = Counter(
            "revloop_ingest_feed_records_total",
            "Marketing feed records by feed and outcome: accepted (acked by Kafka) or "
            "unavailable (Kafka did not ack the batch in time). Invalid batches are counted "
            "as requests (revloop_ingest_feed_requests_total).",
            ["feed", "outcome"],
            registry=self.registry,
        )
        self.feed_request_seconds = Histogram(
            "revloop_ingest_feed_request_duration_seconds",
            "Time from request start to response, by marketing feed.",
            ["feed"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_reloads = Counter(
            "revloop_ingest_store_reloads_total",
            "Reads of the stores file after it changed, by outcome: loaded, or failed (the "
            "stores loaded before stay in service).",
            ["outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "revloop_ingest_requests_in_flight",
            "Webhook requests being handled now.",
            registry=self.registry,
        )

    def labelled(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, cached."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return cast(M, child)
