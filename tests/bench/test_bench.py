"""`revloop bench ingest`: the machinery, run briefly against the real broker. Nothing here asserts
speed; it checks what would make the figures wrong."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from bench.ingest import (
    SERVER_HISTOGRAMS,
    BenchOptions,
    CpuShare,
    PlatformChoice,
    _Connection,
    add_histograms,
    bench_stores,
    mean_share,
    percentiles,
    registry_of,
    request_templates,
    run_bench,
    server_view,
)
from platforms import bigcommerce, shopify, woocommerce
from revloop.settings import Settings
from tests import FIXTURES

MODULES: dict[str, Any] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
    "bigcommerce": bigcommerce,
}


def test_every_platforms_bench_request_verifies_as_its_own_store() -> None:
    stores = bench_stores("benchtest0001", PlatformChoice.MIX, per_platform=2)
    registry = registry_of(stores)  # refuses repeated ids and identities
    assert len(registry) == 6
    templates = request_templates(stores, FIXTURES)
    assert len({t.head.split(b" ", 2)[1] for t in templates[:3]}) == 3  # a mix rotates platforms
    verified_by = set()
    for n, template in enumerate(templates[:6]):
        ident = b"benchtest0001-%010d" % n
        head, body = template.render(ident).split(b"\r\n\r\n", 1)
        request_line, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        assert int(headers["content-length"]) == len(body)
        platform = request_line.split()[1].rsplit("/", 1)[1]
        delivery = MODULES[platform].authenticate(body, headers, registry, datetime.now(UTC))
        assert delivery.delivery_id == ident.decode()
        assert delivery.store.platform == platform
        verified_by.add(delivery.store.store_id)
    assert verified_by == {s.store_id for s in stores}  # and the load rotates through stores


def test_bench_bodies_come_from_the_fixtures_passed_in_or_are_synthetic() -> None:
    (store,) = bench_stores("benchtest0002", PlatformChoice.SHOPIFY)
    fixture = json.loads((FIXTURES / "shopify" / "orders__create.json").read_bytes())
    from_fixtures = json.loads(request_templates([store], FIXTURES)[0].body)
    synthetic = json.loads(request_templates([store])[0].body)
    assert from_fixtures["line_items"] == fixture["line_items"]
    assert synthetic["line_items"] != fixture["line_items"]
    assert [item["title"] for item in synthetic["line_items"]] == ["Item"] * 20


class _Recorder:
    def __init__(self) -> None:
        self.statuses: list[int] = []

    def on_response(self, _conn: Any, status: int) -> None:
        self.statuses.append(status)

    def on_lost(self, _conn: Any) -> None:
        pass


def test_the_client_parses_responses_split_and_joined_anywhere() -> None:
    one = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello"
    two = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\nretry-after: 5\r\n\r\n{}"
    stream = one + two + one
    for cut in range(1, len(stream)):
        recorder = _Recorder()
        conn = _Connection(recorder)  # type: ignore[arg-type]
        conn.data_received(stream[:cut])
        conn.data_received(stream[cut:])
        assert recorder.statuses == [200, 503, 200]
        assert conn.buffer == b""


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    figures = percentiles([n / 1000 for n in range(1, 101)])
    assert (figures.p50_ms, figures.p90_ms, figures.p99_ms, figures.max_ms) == (50, 90, 99, 100)


def test_a_short_run_acks_only_what_kafka_holds(settings: Settings, admin: AdminClient) -> None:
    report = run_bench(
        BenchOptions(
            duration=1.0, latency_duration=1.0, warmup=0.5, rounds=2, connections=4, stores=3
        ),
        settings,
    )
    # The run wrote to its own copy of the raw topic, and deleted it once it had read it back.
    assert report.options["topic"] == f"{report.options['tag']}.raw.webhooks.v1"
    assert report.options["topic"] not in admin.list_topics(timeout=10).topics
    assert report.ingest.accepted > 0
    assert report.bare.accepted_per_s > 0
    durability = report.durability
    assert durability.accepted >= report.ingest.accepted  # warm-ups and the paced phase too
    assert durability.records >= durability.accepted
    assert durability.accepted_without_record == 0
    assert durability.ok
    for figures in (report.ingest_latency, report.bare_latency):
        assert figures.accepted > 0
        lat = figures.latency
        assert 0 < lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    # Each round pairs the two servers' windows; the headline figures are medians over rounds.
    ingest_rates, bare_rates = report.ingest.round_accepted_per_s, report.bare.round_accepted_per_s
    assert len(ingest_rates) == len(bare_rates) == len(report.round_ratios) == 2
    assert report.ingest.accepted_per_s == pytest.approx(statistics.median(ingest_rates), abs=0.1)
    for ratio, ingest_rate, bare_rate in zip(
        report.round_ratios, ingest_rates, bare_rates, strict=True
    ):
        assert ratio == pytest.approx(ingest_rate / bare_rate, abs=0.001)  # rates are rounded
    assert report.ratio == round(statistics.median(report.round_ratios), 3)  # median of ratios
    assert report.ingest.seconds == report.ingest_latency.seconds == 2.0
    view = report.ingest_server_view
    assert view is not None
    assert view.requests == report.ingest_latency.sent  # the scrapes bracket exactly that phase
    for share in (view.requests_over_10ms_pct, view.acks_over_10ms_pct):
        assert 0 <= share <= 100


def test_the_server_view_counts_what_crossed_each_bound() -> None:
    bounds = [0.005, 0.01, 0.025, math.inf]
    before = {name: dict.fromkeys(bounds, 10.0) for name in SERVER_HISTOGRAMS}
    after = {
        SERVER_HISTOGRAMS[0]: dict(zip(bounds, [100.0, 150.0, 200.0, 210.0], strict=True)),
        SERVER_HISTOGRAMS[1]: dict(zip(bounds, [190.0, 200.0, 210.0, 210.0], strict=True)),
    }
    view = server_view(add_histograms({}, before, after))
    assert view.requests == 200
    assert (view.requests_over_10ms_pct, view.requests_over_25ms_pct) == (30.0, 5.0)
    assert (view.acks_over_10ms_pct, view.acks_over_25ms_pct) == (5.0, 0.0)


def test_histograms_add_up_over_windows() -> None:
    bounds = [0.01, math.inf]
    scrapes = [
        {SERVER_HISTOGRAMS[0]: dict(zip(bounds, pair, strict=True))}
        for pair in ((5.0, 6.0), (15.0, 20.0), (15.0, 20.0), (40.0, 50.0))
    ]
    total = add_histograms({}, scrapes[0], scrapes[1])
    total = add_histograms(
        total, scrapes[2], scrapes[3]
    )  # what came between windows is not counted
    assert total == {SERVER_HISTOGRAMS[0]: {0.01: 35.0, math.inf: 44.0}}


def test_cpu_shares_average_by_time() -> None:
    shares = [(CpuShare(1.0, 0.2, 0.4, 0.0), 30.0), (CpuShare(0.6, 0.6, 0.2, 0.8), 10.0)]
    assert mean_share(shares) == CpuShare(server=0.9, loadgen=0.3, other=0.35, steal=0.2)


def test_the_ledger_bench_checks_the_tally_against_a_whole_read(settings: Settings) -> None:
    env = {**os.environ, "DATABASE_URL": settings.dsn}
    done = subprocess.run(
        [sys.executable, "-m", "revloop", "bench", "ledger", "--entries", "3000", "--stores", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3,000 entries over 3 stores" in done.stdout
    assert re.search(r"steady scrape: [0-9.]+ ms, [0-9.]+% of the ceiling", done.stdout)
