"""`revloop backfill` against a real broker, a real Postgres and the WooCommerce emulator: a
year of history read into the canonical topics once, a SIGKILL mid-run resumed without a
duplicate, and the baseline computed and stored for settlement."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from emulators.server import serve
from emulators.woocommerce import WooCommerceEmulator
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import ensure_topics
from revloop.settings import Settings
from revloop.stores import Connection, Store, StoreRegistry
from tests.normalizer_support import Pipeline, wait_for
from tests.sink_support import scratch_database
from tests.stack_support import free_ports

KEY, SECRET = "ck_backfill_key", "cs_backfill-secret"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "woocommerce"
NOW = datetime.now(UTC).replace(microsecond=0)


def _gmt(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def _template(name: str) -> dict[str, Any]:
    record = json.loads((FIXTURES / name).read_text())
    for field in ("id", "date_modified", "date_modified_gmt", "_links"):
        record.pop(field, None)
    return record


@dataclass
class Backfill:
    env: dict[str, str]
    dsn: str
    pipeline: Pipeline
    woo: WooCommerceEmulator
    log: Path

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "revloop", "backfill", "--store", "acme-woo", *args],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def checkpoints(self) -> list[dict[str, Any]]:
        return [v for _, v in self.pipeline.read("ops.connector-checkpoints.v1")]


@pytest.fixture
def backfill(settings: Settings, scratch_catalogue: Any, tmp_path: Path) -> Iterator[Backfill]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    keys = new_master_key("k1")
    box = SecretBox.from_settings(settings.model_copy(update={"master_keys": SecretStr(keys)}))
    credentials = json.dumps({"consumer_key": KEY, "consumer_secret": SECRET}).encode()
    store = Store(
        "acme-woo",
        "woocommerce",
        "https://woo.example/",
        (Secret(b"whsec"),),
        currency="EUR",
        connections=(Connection("woocommerce", "https://woo.example/", Secret(credentials)),),
    )
    StoreRegistry([store]).save(tmp_path / "stores.json", box)
    woo = WooCommerceEmulator(KEY, SECRET, requests_per_window=12, window_seconds=1.0)
    prefix = topics[0].name.split(".", 1)[0] + "."
    with scratch_database(settings) as dsn, serve(woo.app) as running:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "DATABASE_URL": dsn,
            "REVLOOP_TOPIC_PREFIX": prefix,
            "REVLOOP_STATE_DIR": str(tmp_path),
            "REVLOOP_STORES_FILE": str(tmp_path / "stores.json"),
            "REVLOOP_MASTER_KEYS": keys,
            "REVLOOP_CUSTOMER_KEY_SALT": "backfill-test-salt",
            "REVLOOP_WOOCOMMERCE_API_URL": running.base_url,
            # Well under the emulator's 12 a second: paced, never refused, slow enough to kill.
            "REVLOOP_WOOCOMMERCE_REQUESTS_PER_SECOND": "3",
            "REVLOOP_CONNECT_BACKOFF_CAP_SECONDS": "0.2",
        }
        yield Backfill(env, dsn, Pipeline(settings, topics), woo, tmp_path / "backfill.log")


def seed(woo: WooCommerceEmulator) -> list[dict[str, Any]]:
    """Products (two variable), customers, and 26 orders over the last year plus one older."""
    product = _template("product__updated.json")
    for n in range(4):
        woo.add_product(
            {
                **copy.deepcopy(product),
                "name": f"Simple {n}",
                "type": "simple",
                "variations": [],
                "manage_stock": True,
                "stock_quantity": 10 + n,
                "date_modified_gmt": _gmt(NOW - timedelta(days=30 * n)),
            }
        )
    for n in range(2):
        woo.add_product(
            {
                **copy.deepcopy(product),
                "name": f"Variable {n}",
                "type": "variable",
                "variations": [],
                "manage_stock": False,
                "date_modified_gmt": _gmt(NOW - timedelta(days=5)),
            },
            variations=[
                {
                    "sku": f"V{n}-{size}",
                    "price": "12.50",
                    "attributes": [{"name": "Size", "option": size}],
                    "manage_stock": True,
                    "stock_quantity": 3,
                    "date_modified_gmt": _gmt(NOW - timedelta(days=4)),
                }
                for size in ("S", "M")
            ],
        )
    customer = _template("customer__created.json")
    for n in range(5):
        woo.add_customer(
            {
                **copy.deepcopy(customer),
                "email": f"c{n}@example.com",
                "date_modified_gmt": _gmt(NOW - timedelta(days=n)),
            }
        )
    order = _template("order__created.json")
    orders = []
    for n in range(27):
        placed = NOW - timedelta(days=14 * n + 1) if n < 26 else NOW - timedelta(days=500)
        record = {
            **copy.deepcopy(order),
            "status": "cancelled" if n == 3 else "processing",
            "total": f"{20 + n}.00",
            "customer_id": n % 7,
            "billing": {**order["billing"], "email": f"c{n % 7}@example.com"},
            "date_created_gmt": _gmt(placed),
            "date_modified_gmt": _gmt(placed + timedelta(minutes=5)),
            "refunds": [{"id": 900, "reason": "", "total": "-5.00"}] if n == 6 else [],
        }
        orders.append(woo.add_order(record))
    return orders


def test_a_killed_backfill_resumes_without_duplicates_and_stores_the_baseline(
    backfill: Backfill,
) -> None:
    orders = seed(backfill.woo)
    first = backfill.start("--since", "12mo", "--page-size", "3")

    def reading_orders() -> bool:
        assert first.poll() is None, backfill.log.read_text()[-3000:]
        return any(
            c["resource"] == "orders" and not c["done"] and c["pages"] >= 1
            for c in backfill.checkpoints()
        )

    wait_for(reading_orders, timeout=90)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = {(c["resource"], c["pages"]) for c in backfill.checkpoints()}

    second = backfill.start("--since", "12mo", "--page-size", "3")
    assert second.wait(120) == 0, backfill.log.read_text()[-3000:]
    output = backfill.log.read_text()
    assert "resuming the backfill" in output
    assert "stored for settlement" in output

    # Each committed page once: the killed run's open page was aborted, the resumed run
    # went on after its last checkpoint.
    checkpoints = backfill.checkpoints()
    pages = Counter((c["resource"], c["pages"]) for c in checkpoints)
    assert max(pages.values()) == 1, pages
    assert before <= set(pages)
    final = {c["resource"]: c for c in checkpoints if c["done"]}
    assert set(final) == {"products", "customers", "orders"}

    events = {
        name: [v for _, v in backfill.pipeline.read(name)]
        for name in (
            "commerce.orders.v1",
            "commerce.products.v1",
            "commerce.customers.v1",
            "commerce.inventory-levels.v1",
        )
    }
    every = [v for values in events.values() for v in values]
    ids = Counter(v["envelope"]["event_id"] for v in every)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert {v["envelope"]["source"] for v in every} == {"backfill"}
    assert all(v["envelope"]["caused_by"] == [] for v in every)
    placed = {v["order_id"] for v in events["commerce.orders.v1"] if v["kind"] != "refunded"}
    assert placed == {str(o["id"]) for o in orders[:26]}  # not the order from 500 days ago
    refunds = [v for v in events["commerce.orders.v1"] if v["kind"] == "refunded"]
    assert [r["refund"]["amount"]["amount_minor"] for r in refunds] == [500]
    # Variable products whole (their variations as variants), every managed stock level.
    whole = [v for v in events["commerce.products.v1"] if v["variants"] and len(v["variants"]) == 2]
    assert sorted(v["title"] for v in whole) == ["Variable 0", "Variable 1"]
    assert len(events["commerce.inventory-levels.v1"]) == 4 + 4
    assert len(events["commerce.customers.v1"]) == 5

    # The baseline: what the 25 orders not cancelled sold, less the refund.
    expected = sum(20 + n for n in range(26) if n != 3) * 100 - 500
    with psycopg.connect(backfill.dsn) as conn:
        row = conn.execute(
            "SELECT currency, revenue_minor, orders, unique_customers, repeat_customers,"
            " jsonb_array_length(months) FROM store_baselines WHERE store_id = 'acme-woo'"
        ).fetchone()
        stores = conn.execute(
            "SELECT baseline_monthly_revenue_minor, baseline_currency, baseline_source"
            " FROM stores WHERE store_id = 'acme-woo'"
        ).fetchone()
    assert row is not None and row[:3] == ("EUR", expected, 25)
    assert row[3] == 7 and row[4] == 7 and row[5] in (12, 13)
    assert stores is not None and stores[1:] == ("EUR", "backfill") and stores[0] > 0
    assert backfill.woo.calls.violations == 0
    assert SECRET not in output and KEY not in output

    # Run again: complete already, nothing read again, the baseline recomputed alike.
    calls = backfill.woo.calls.total
    third = backfill.start("--since", "12mo")
    assert third.wait(60) == 0
    assert backfill.woo.calls.total == calls
    assert "is complete" in backfill.log.read_text()
    assert len(backfill.pipeline.read("commerce.orders.v1")) == len(events["commerce.orders.v1"])


def test_backfill_names_what_is_missing(backfill: Backfill) -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "revloop", "backfill", "--store", "nope"],
        env=backfill.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no store 'nope'" in done.stderr
    done = subprocess.run(
        [sys.executable, "-P", "-m", "revloop", "backfill", "--store", "acme-woo", "--since", "x"],
        env=backfill.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "12mo" in done.stderr


def test_reconcile_publishes_only_what_the_pipeline_lacks(backfill: Backfill) -> None:
    woo = backfill.woo
    order = _template("order__created.json")
    placed = [
        woo.add_order(
            {
                **copy.deepcopy(order),
                "total": f"{10 + n}.00",
                "date_created_gmt": _gmt(NOW - timedelta(hours=n + 1)),
                "date_modified_gmt": _gmt(NOW - timedelta(hours=n + 1)),
            }
        )
        for n in range(6)
    ]
    product = woo.add_product(
        {
            **_template("product__updated.json"),
            "type": "simple",
            "variations": [],
            "manage_stock": True,
            "stock_quantity": 4,
            "date_modified_gmt": _gmt(NOW - timedelta(hours=2)),
        }
    )
    # The pipeline's view: it holds orders 0-3 at their versions; order 4 at an older version;
    # order 5 never arrived; it thinks the product has 9 in stock.
    with psycopg.connect(backfill.dsn, autocommit=True) as conn:
        for n, o in enumerate(placed[:5]):
            at = NOW - timedelta(hours=n + 1) - (timedelta(days=1) if n == 4 else timedelta(0))
            conn.execute(
                "INSERT INTO orders (store_id, order_id, currency, source_at, source_event_id)"
                " VALUES ('acme-woo', %s, 'EUR', %s, %s)",
                (str(o["id"]), at, f"e{n}"),
            )
        conn.execute(
            "INSERT INTO inventory_snapshots (store_id, inventory_item_id, location_id, quantity,"
            " source_at, source_event_id) VALUES ('acme-woo', %s, 'default', 9, %s, 'e9')",
            (str(product["id"]), NOW - timedelta(days=3)),
        )
    run = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "revloop",
            "reconcile",
            "--store",
            "acme-woo",
            "--lookback",
            "2d",
        ],
        env=backfill.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    orders = [v for _, v in backfill.pipeline.read("commerce.orders.v1")]
    assert sorted(v["order_id"] for v in orders) == sorted(str(o["id"]) for o in placed[4:])
    assert {v["envelope"]["source"] for v in orders} == {"reconcile"}
    levels = [v for _, v in backfill.pipeline.read("commerce.inventory-levels.v1")]
    assert [(v["inventory_item_id"], v["quantity"]) for v in levels] == [(str(product["id"]), 4)]
    assert "acme-woo: read 7 changed records" in run.stdout and ", 4 published;" in run.stdout
    assert len(backfill.pipeline.read("commerce.products.v1")) == 1  # the pipeline had none

    # The next run starts where this one ended: only what changed since is read.
    woo.update_order(placed[0]["id"], total="99.00")
    again = subprocess.run(
        [sys.executable, "-P", "-m", "revloop", "reconcile", "--store", "acme-woo"],
        env=backfill.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    orders = [v for _, v in backfill.pipeline.read("commerce.orders.v1")]
    assert sorted(v["order_id"] for v in orders) == sorted(
        [str(placed[0]["id"]), *(str(o["id"]) for o in placed[4:])]
    )
    assert backfill.woo.calls.violations == 0


def _metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_reconcile_on_a_schedule_goes_on_past_a_store_that_fails(
    backfill: Backfill, settings: Settings, tmp_path: Path
) -> None:
    woo = backfill.woo
    woo.add_order(
        {
            **_template("order__created.json"),
            "date_created_gmt": _gmt(NOW - timedelta(hours=1)),
            "date_modified_gmt": _gmt(NOW - timedelta(hours=1)),
        }
    )
    # A second store, first in the registry, whose credentials the platform refuses (401).
    keys = backfill.env["REVLOOP_MASTER_KEYS"]
    box = SecretBox.from_settings(settings.model_copy(update={"master_keys": SecretStr(keys)}))
    registry = StoreRegistry.load(tmp_path / "stores.json", box)
    revoked = json.dumps({"consumer_key": KEY, "consumer_secret": "cs_revoked"}).encode()
    broken = Store(
        "acme-broken",  # sorted before acme-woo: reconciled first
        "woocommerce",
        "https://broken.example/",
        (Secret(b"whsec"),),
        currency="EUR",
        connections=(Connection("woocommerce", "https://broken.example/", Secret(revoked)),),
    )
    StoreRegistry([broken, *registry]).save(tmp_path / "stores.json", box)
    [port] = free_ports(1)
    env = {**backfill.env, "REVLOOP_RECONCILE_METRICS_PORT": str(port)}
    running = subprocess.Popen(
        [sys.executable, "-P", "-m", "revloop", "reconcile", "--every", "1s", "--lookback", "2d"],
        env=env,
        stdout=backfill.log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    metrics = f"http://127.0.0.1:{port}/metrics"

    def scraped() -> str:
        try:
            return httpx.get(metrics, timeout=2).text
        except httpx.HTTPError:
            return ""

    try:
        wait_for(lambda: _metric(scraped(), "revloop_reconcile_rounds_total") >= 2, 90)
        text = scraped()
        assert _metric(text, "revloop_reconcile_runs_total", store="acme-broken", outcome="failed")
        assert _metric(text, "revloop_reconcile_runs_total", store="acme-woo", outcome="ok") >= 2
        assert not _metric(text, "revloop_reconcile_runs_total", store="acme-woo", outcome="failed")
        published = _metric(
            text, "revloop_reconcile_events_total", store="acme-woo", outcome="published"
        )
        assert published == 1  # the order, once: the next round finds it held
        assert _metric(text, "revloop_reconcile_last_success_timestamp_seconds", store="acme-woo")
        assert not _metric(
            text, "revloop_reconcile_last_success_timestamp_seconds", store="acme-broken"
        )
        running.send_signal(signal.SIGTERM)
        assert running.wait(30) == 0
    finally:
        if running.poll() is None:
            running.kill()
    orders = [v for _, v in backfill.pipeline.read("commerce.orders.v1")]
    assert len(orders) == 1 and orders[0]["envelope"]["store_id"] == "acme-woo"
    log = backfill.log.read_text()
    assert re.search(r"error: store acme-broken: .*HTTP 401.*; the next round resumes it", log)
    assert "cs_revoked" not in log
