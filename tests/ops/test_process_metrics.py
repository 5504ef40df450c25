"""Every long-running process's /metrics: the shared helper that serves it, the Postgres reads
the sink's scrape-time gauges (and the ops console) are made of. The worker's counters are
checked in a real worker by tests/streams/test_circuit_breaker_worker.py, and that every
supervised process answers on its port by tests/infra/test_supervisor.py, where `revloop up` has
them all running."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from connectors.http import Answer
from connectors.metrics import ConnectorMetrics
from revloop.metrics import add_process_collectors, serve_metrics
from revloop.settings import Settings
from sinks.postgres.metrics import SinkMetrics
from sinks.postgres.ops_views import (
    LedgerTally,
    LedgerTotal,
    OpenBreaker,
    flapping_products,
    ledger_totals,
    open_breakers,
)
from tests.sink_support import scratch_database
from tests.stack_support import free_ports

# -- the helper ----------------------------------------------------------------------------------


def test_a_registry_is_served_with_the_process_collectors_and_a_taken_port_only_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    Counter("revloop_test_things", "Things.", ["kind"], registry=registry).labels("a").inc(3)
    server = serve_metrics(registry, 0, any_port=True, process="test")
    assert server is not None
    try:
        text = httpx.get(server.url, timeout=5).text
        assert 'revloop_test_things_total{kind="a"} 3.0' in text
        assert "process_cpu_seconds_total" in text and "python_info" in text
        # Another process on the same port: a warning, no exception, no endpoint.
        with caplog.at_level(logging.WARNING, logger="revloop.metrics"):
            again = serve_metrics(CollectorRegistry(), server.port, process="second")
        assert again is None
        assert f"second: cannot serve /metrics on 127.0.0.1:{server.port}" in caplog.text
        assert serve_metrics(registry, 0, process="off") is None  # 0: off
        add_process_collectors(registry)  # again: no duplicate, no error
        assert httpx.get(server.url, timeout=5).text.count("\nprocess_cpu_seconds_total ") == 1
    finally:
        server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


def test_connector_metrics_count_each_try_by_outcome_and_every_dead_letter() -> None:
    metrics = ConnectorMetrics("ads")
    before = generate_latest(metrics.registry).decode().splitlines()
    assert 'revloop_connector_dead_letters_total{connector="ads"} 0.0' in before  # at 0 already
    metrics.tried(
        "meta",
        [
            Answer("GET /adsets", 1, 503, "retried", "HTTP 503", 12),
            Answer("GET /adsets", 2, 200, "ok", None, 8),
            Answer("POST /adset", 1, 400, "failed", "HTTP 400", 9),
        ],
    )
    metrics.dead_lettered()
    lines = generate_latest(metrics.registry).decode().splitlines()
    for outcome in ("retried", "ok", "failed"):
        labels = f'connector="ads",outcome="{outcome}",platform="meta"'
        assert f"revloop_connector_calls_total{{{labels}}} 1.0" in lines
    assert 'revloop_connector_dead_letters_total{connector="ads"} 1.0' in lines


# -- the ops views and the sink's scrape-time gauges ---------------------------------------------


def _action(
    conn: psycopg.Connection[Any],
    event: str,
    product: str,
    action: str,
    minutes_ago: float,
    variant: str | None = None,
    *,
    now: datetime,
) -> None:
    at = now - timedelta(minutes=minutes_ago)
    conn.execute(
        """
        INSERT INTO circuit_breaker_actions (event_id, store_id, occurred_at, caused_by,
            product_id, variant_id, action, campaign_ids, available, previous_available, reason,
            published_at)
        VALUES (%s, 'acme', %s, '{}', %s, %s, %s, %s, 0, 3, %s, %s)
        """,
        (event, at, product, variant, action, ["c1", "c2"], f"{action} {event}", at),
    )


def _entry(
    conn: psycopg.Connection[Any],
    seq: int,
    code: str,
    debit: str,
    credit: str,
    amount: int,
    currency: str = "EUR",
    store: str = "acme",
) -> None:
    # The chain's hashes are not checked on insert (`revloop ledger verify` checks them).
    conn.execute(
        """
        INSERT INTO ledger_entries (entry_id, store_id, seq, ledger, debit_account,
            credit_account, amount_minor, currency, code, period, booked_period, occurred_at,
            prev_hash, hash)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '2026-12', '2026-12', now(), %s, %s)
        """,
        (
            f"{store}-{seq}",
            store,
            seq,
            f"{store}/{currency}",
            f"{store}/{currency}/{debit}",
            f"{store}/{currency}/{credit}",
            amount,
            currency,
            code,
            "0" * 64,
            f"{seq:064d}",
        ),
    )


class Seeded(NamedTuple):
    dsn: str
    at: datetime
    """When the rows were written: "the last hour" is measured from here, not from when the
    module was imported (a long suite reaches these tests many minutes later)."""


@pytest.fixture(scope="module")
def seeded(settings: Settings) -> Iterator[Seeded]:
    """A scratch database with breaker actions and ledger entries, committed."""
    now = datetime.now(UTC)
    with scratch_database(settings) as dsn:
        with psycopg.connect(dsn) as conn:
            _action(conn, "e1", "p-open", "pause", 30, now=now)
            _action(conn, "e2", "p-closed", "pause", 40, now=now)
            _action(conn, "e3", "p-closed", "resume", 20, now=now)
            _action(conn, "e4", "p-open", "pause", 10, variant="v1", now=now)  # a scope of its own
            # Flapping: four actions within the last hour; another product's, hours ago.
            for n, action in enumerate(("pause", "resume", "pause", "resume")):
                _action(conn, f"f{n}", "p-flap", action, 50 - n, now=now)
                _action(conn, f"o{n}", "p-old", action, 180 - n, now=now)
            _entry(conn, 1, "attributed_revenue", "attributed_incremental_revenue",
                   "attribution_source", 10_000)  # fmt: skip
            _entry(conn, 2, "success_fee", "success_fee_receivable", "fee_revenue", 1_000)
            _entry(conn, 3, "attributed_revenue_reversal", "attribution_source",
                   "attributed_incremental_revenue", 2_500)  # fmt: skip
            _entry(conn, 1, "attributed_revenue", "attributed_incremental_revenue",
                   "attribution_source", 700, store="other")  # fmt: skip
            _entry(conn, 2, "ad_spend", "ad_spend", "spend_source", 300, "USD", store="other")
        yield Seeded(dsn, now)


def test_open_breakers_are_the_scopes_whose_newest_action_is_a_pause(seeded: Seeded) -> None:
    with psycopg.connect(seeded.dsn) as conn:
        assert open_breakers(conn) == [
            OpenBreaker(
                "acme",
                "p-open",
                None,
                ("c1", "c2"),
                seeded.at - timedelta(minutes=30),
                "pause e1",
                0,
            ),
            OpenBreaker(
                "acme",
                "p-open",
                "v1",
                ("c1", "c2"),
                seeded.at - timedelta(minutes=10),
                "pause e4",
                0,
            ),
        ]


def test_flapping_products_count_actions_published_within_the_window(seeded: Seeded) -> None:
    with psycopg.connect(seeded.dsn) as conn:
        assert flapping_products(conn, timedelta(hours=1), 4) == 1
        assert flapping_products(conn, timedelta(hours=4), 4) == 2
        assert flapping_products(conn, timedelta(hours=1), 5) == 0


def test_ledger_totals_are_account_balances_net_of_reversals_per_currency(
    seeded: Seeded,
) -> None:
    with psycopg.connect(seeded.dsn) as conn:
        assert ledger_totals(conn) == [
            LedgerTotal("ad_spend", "USD", 300, 1),
            LedgerTotal("attributed_incremental_revenue", "EUR", 8_200, 3),
            LedgerTotal("success_fee_receivable", "EUR", 1_000, 1),
        ]


def test_the_ledger_tally_reads_only_new_entries_and_agrees_with_a_whole_read(
    settings: Settings,
) -> None:
    with scratch_database(settings) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        tally = LedgerTally()
        assert tally.advance(conn) == []  # an empty ledger
        _entry(conn, 1, "attributed_revenue", "attributed_incremental_revenue",
               "attribution_source", 10_000)  # fmt: skip
        _entry(conn, 2, "success_fee", "success_fee_receivable", "fee_revenue", 1_000)
        _entry(conn, 1, "ad_spend", "ad_spend", "spend_source", 300, "USD", store="other")
        first = tally.advance(conn)
        assert first == ledger_totals(conn)
        assert tally.advance(conn) == first  # nothing new: nothing counted twice

        # New entries on a known store, a new store, a new currency; a reversal.
        _entry(conn, 3, "attributed_revenue_reversal", "attribution_source",
               "attributed_incremental_revenue", 2_500)  # fmt: skip
        _entry(conn, 2, "ad_spend", "ad_spend", "spend_source", 200, "USD", store="other")
        _entry(conn, 1, "attributed_revenue", "attributed_incremental_revenue",
               "attribution_source", 700, "GBP", store="third")  # fmt: skip
        second = tally.advance(conn)
        assert second == ledger_totals(conn) != first
        assert LedgerTotal("attributed_incremental_revenue", "EUR", 7_500, 2) in second
        assert LedgerTotal("ad_spend", "USD", 500, 2) in second

        # A read that fails counts nothing: the next one counts the entries once.
        _entry(conn, 4, "success_fee", "success_fee_receivable", "fee_revenue", 50)
        lost = psycopg.connect(dsn)
        lost.close()
        with pytest.raises(psycopg.OperationalError):
            tally.advance(lost)
        assert tally.advance(conn) == ledger_totals(conn)
        assert LedgerTotal("success_fee_receivable", "EUR", 1_050, 2) in tally.advance(conn)

        # A large ledger is caught up a chunk per store per read; until then it says so.
        for n in range(5, 251):  # acme: 250 entries, 150 past the first read's 100 a store
            _entry(conn, n, "success_fee", "success_fee_receivable", "fee_revenue", 1)
        small = LedgerTally(budget=300)  # 100 a store over three stores, after the first read
        small.advance(conn)
        assert not small.complete
        small.advance(conn)
        assert not small.complete  # 200 of 250: a full chunk, so maybe more
        assert small.advance(conn) == ledger_totals(conn)
        assert small.complete


def test_the_sink_metrics_read_the_ops_views_at_scrape_time(
    seeded: Seeded, settings: Settings
) -> None:
    metrics = SinkMetrics(seeded.dsn)
    assert metrics.ops_views is not None
    try:
        text = generate_latest(metrics.registry).decode()
    finally:
        metrics.ops_views.close()
    for line in (
        "revloop_sink_ops_views_up 1.0",
        "revloop_circuit_breakers_open 2.0",
        "revloop_circuit_breaker_flapping_products 1.0",
        'revloop_ledger_amount_minor{account="attributed_incremental_revenue",currency="EUR"} '
        "8200.0",
        'revloop_ledger_amount_minor{account="ad_spend",currency="USD"} 300.0',
        'revloop_sink_batches_total{outcome="failed"} 0.0',
    ):
        assert line in text.splitlines(), line
    # A database that cannot be reached: the scrape still answers, saying so.
    (closed,) = free_ports(1)
    away = SinkMetrics(f"postgresql://nobody@127.0.0.1:{closed}/none")
    text = generate_latest(away.registry).decode()
    assert "revloop_sink_ops_views_up 0.0" in text.splitlines()
    assert "revloop_circuit_breakers_open " not in text
