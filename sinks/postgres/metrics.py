"""The sink's Prometheus metrics (served by `revloop sink postgres` on ``sink_metrics_port``):
what it wrote, and, read from Postgres at each scrape, what the tables say ops should watch:
open circuit breakers, flapping products and the ledger's totals (sinks/postgres/ops_views.py).

Gauges read at scrape time use a connection of their own (the sink's is inside its batch
transactions, on another thread), autocommit and with a statement timeout, so a slow or absent
database costs a scrape a few seconds at most; then ``revloop_sink_ops_views_up`` is 0 and the
gauges are left out rather than reported stale.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from sinks.postgres.ops_views import LedgerTally, flapping_products, open_breakers

log = logging.getLogger(__name__)

FLAPPING_WINDOW = timedelta(hours=1)
FLAPPING_MIN_ACTIONS = 4
"""A product flaps when it had this many breaker actions (pauses and resumes) in the window."""
QUERY_TIMEOUT_MS = 5_000


class OpsViewsCollector:
    """The scrape-time gauges, read from Postgres."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # scrapes may come in on several server threads
        self._ledger = LedgerTally()
        """Caught up over the first scrapes of a connection, then reads only new entries."""

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not query the database.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        up, breakers, flapping, ledger = self._families()
        with self._lock:
            try:
                conn = self._connection()
                opened = open_breakers(conn)
                flaps = flapping_products(conn, FLAPPING_WINDOW, FLAPPING_MIN_ACTIONS)
                totals = self._ledger.advance(conn)
            except (psycopg.Error, OSError) as exc:
                log.warning("sink metrics: cannot read the ops views: %s", type(exc).__name__)
                self._close()
                up.add_metric([], 0)
                yield up
                return
        up.add_metric([], 1)
        breakers.add_metric([], len(opened))
        flapping.add_metric([], flaps)
        # Partial totals (a large ledger still being caught up) would read as real ones.
        for total in totals if self._ledger.complete else ():
            ledger.add_metric([total.account, total.currency], total.amount_minor)
        yield from (up, breakers, flapping, ledger)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                application_name="revloop-sink-metrics",
                connect_timeout=3,
                # No JIT: compiling the ledger query costs ~0.5 s, and it reads a few rows.
                options=f"-c statement_timeout={QUERY_TIMEOUT_MS} -c jit=off",
            )
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        # The database may come back as another one (a restore): count it whole again.
        self._ledger = LedgerTally()

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
    ]:
        return (
            GaugeMetricFamily(
                "revloop_sink_ops_views_up",
                "1 when the last scrape could read the gauges below from Postgres, else 0.",
            ),
            GaugeMetricFamily(
                "revloop_circuit_breakers_open",
                "Products (or variants) whose newest circuit-breaker action is a pause.",
            ),
            GaugeMetricFamily(
                "revloop_circuit_breaker_flapping_products",
                f"Products (or variants) with at least {FLAPPING_MIN_ACTIONS} breaker actions "
                f"published in the last {FLAPPING_WINDOW.total_seconds() / 3600:g} h.",
            ),
            GaugeMetricFamily(
                "revloop_ledger_amount_minor",
                "Each debit-normal ledger account's balance over all stores, net of reversals, "
                "in the currency's minor units.",
                labels=["account", "currency"],
            ),
        )


class SinkMetrics:
    def __init__(self, dsn: str | None, registry: CollectorRegistry | None = None) -> None:
        """``dsn`` None leaves the Postgres-read gauges out (a sink under test, in-process)."""
        self.registry = registry or CollectorRegistry()
        self.records = Counter(
            "revloop_sink_records",
            "Records of a committed batch, by topic (a batch written again after a failure "
            "counts once).",
            ["topic"],
            registry=self.registry,
        )
        self.batches = Counter(
            "revloop_sink_batches",
            "Batches by outcome: written (committed with their offsets), failed (rolled back, "
            "read again).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("written", "failed"):
            self.batches.labels(outcome)
        self.ops_views: OpsViewsCollector | None = None
        if dsn is not None:
            self.ops_views = OpsViewsCollector(dsn)
            self.registry.register(self.ops_views)

    def written(self, messages: Sequence[Message]) -> None:
        self.batches.labels("written").inc()
        for name, count in Tally(m.topic() or "" for m in messages).items():
            self.records.labels(name).inc(count)

    def failed(self) -> None:
        self.batches.labels("failed").inc()

    def close(self) -> None:
        """Close the scrape-time gauges' own Postgres connection."""
        if self.ops_views is not None:
            self.ops_views.close()
