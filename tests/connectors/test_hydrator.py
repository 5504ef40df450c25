"""`revloop connect hydrate` against a real broker and the BigCommerce and WooCommerce
emulators: thin webhooks become complete canonical events, once each through a SIGKILL; a
resource gone is skipped, a store that cannot answer is dead-lettered and the rest flow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from emulators import BigCommerceEmulator, WooCommerceEmulator, serve
from platforms import bigcommerce, woocommerce
from platforms.events import Emit, NormalizeContext, RawDelivery
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import ensure_topics, producer_config
from revloop.settings import Settings
from revloop.stores import Connection, Store, StoreRegistry
from schemas.topics import topic_for_record
from tests.normalizer_support import SERDE, Pipeline, fixture_body, wait_for

BC_TOKEN, WOO_KEY, WOO_SECRET = "bc-test-token", "ck_hydrate", "cs_hydrate-secret"
HASH = "k2x9q7ab3c"
CONTEXT = NormalizeContext(
    customer_salt=b"hydrate-salt", store_currency={"acme-bc": "USD", "acme-woo": "EUR"}
)
REQUEST = "dev.revloop.events.HydrationRequest"


@dataclass
class Hydrate:
    settings: Settings
    env: dict[str, str]
    pipeline: Pipeline
    bc: BigCommerceEmulator
    woo: WooCommerceEmulator
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def publish(self, requests: list[Emit]) -> None:
        producer = Producer(producer_config(self.settings))
        for request in requests:
            catalogued = topic_for_record(REQUEST)
            producer.produce(
                self.pipeline.prefix + catalogued.name,
                key=catalogued.message_key(request.value),
                value=SERDE.encode(REQUEST, request.value),
            )
        assert producer.flush(10) == 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "revloop", "connect", "hydrate", "--instance-id", "h1"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def orders(self) -> list[dict[str, Any]]:
        return [v for _, v in self.pipeline.read("commerce.orders.v1")]


@pytest.fixture
def hydrate(settings: Settings, scratch_catalogue: Any, tmp_path: Path) -> Iterator[Hydrate]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    keys = new_master_key("k1")
    box = SecretBox.from_settings(settings.model_copy(update={"master_keys": SecretStr(keys)}))
    woo_credentials = json.dumps({"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET})
    stores = [
        Store(
            "acme-bc",
            "bigcommerce",
            f"stores/{HASH}",
            (Secret(b"app-secret"),),
            currency="USD",
            connections=(
                Connection("bigcommerce", HASH, Secret(json.dumps({"token": BC_TOKEN}).encode())),
            ),
        ),
        Store("lonely-bc", "bigcommerce", "stores/zz9", (Secret(b"app-secret"),)),
        Store(
            "acme-woo",
            "woocommerce",
            "https://woo.example/",
            (Secret(b"whsec"),),
            currency="EUR",
            connections=(
                Connection("woocommerce", "https://woo.example/", Secret(woo_credentials.encode())),
            ),
        ),
    ]
    StoreRegistry(stores).save(tmp_path / "stores.json", box)
    # 10 calls a second: three calls an order, so a run lasts long enough to be killed in.
    bc = BigCommerceEmulator(HASH, BC_TOKEN, requests_per_window=10, window_ms=1000)
    woo = WooCommerceEmulator(WOO_KEY, WOO_SECRET)
    with serve(bc.app) as b, serve(woo.app) as w:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "REVLOOP_TOPIC_PREFIX": topics[0].name.split(".", 1)[0] + ".",
            "REVLOOP_STATE_DIR": str(tmp_path),
            "REVLOOP_STORES_FILE": str(tmp_path / "stores.json"),
            "REVLOOP_MASTER_KEYS": keys,
            "REVLOOP_CUSTOMER_KEY_SALT": "hydrate-salt",
            "REVLOOP_HYDRATOR_GROUP_ID": f"hydrate-{uuid.uuid4().hex[:8]}",
            "REVLOOP_HYDRATOR_BATCH_SIZE": "4",
            "REVLOOP_BIGCOMMERCE_API_URL": b.base_url,
            "REVLOOP_WOOCOMMERCE_API_URL": w.base_url,
            "REVLOOP_WOOCOMMERCE_REQUESTS_PER_SECOND": "50",
            "REVLOOP_CONNECT_BACKOFF_CAP_SECONDS": "0.2",
        }
        running = Hydrate(
            settings, env, Pipeline(settings, topics), bc, woo, tmp_path / "hydrate.log"
        )
        yield running
        running.kill()


def thin(store: str, scope: str, data: dict[str, Any], n: int) -> list[Emit]:
    """What the normalizer makes of a BigCommerce webhook: its hydration request."""
    body = json.loads(fixture_body("bigcommerce", "store__order__created"))
    body.update(scope=scope, data=data, created_at=1_773_498_151 + n, hash=f"h{n}")
    now = datetime.now(UTC)
    raw = RawDelivery(
        f"raw-{store}-{n}", store, "bigcommerce", scope, now, now, {}, json.dumps(body).encode()
    )
    result = bigcommerce.normalize(raw, CONTEXT)
    assert isinstance(result, list)
    return result


def seed_order(bc: BigCommerceEmulator, order_id: int) -> None:
    bc.add_order(
        {
            "id": order_id,
            "customer_id": 7,
            "status_id": 11,
            "subtotal_ex_tax": "30.0000",
            "subtotal_inc_tax": "30.0000",
            "total_ex_tax": "30.0000",
            "total_inc_tax": "30.0000",
            "total_tax": "0.0000",
            "currency_code": "USD",
            "default_currency_code": "USD",
            "billing_address": {"email": f"buyer{order_id}@example.com"},
        },
        products=[
            {
                "product_id": 212,
                "variant_id": 461,
                "name": "Rain Jacket",
                "sku": "RJ-M",
                "quantity": 2,
                "price_ex_tax": "15.0000",
                "price_inc_tax": "15.0000",
                "total_ex_tax": "30.0000",
            }
        ],
    )


def test_thin_webhooks_become_whole_events_once_each_through_a_sigkill(hydrate: Hydrate) -> None:
    orders = list(range(1000, 1024))
    for order_id in orders:
        seed_order(hydrate.bc, order_id)
    hydrate.bc.add_product(
        {"id": 212, "name": "Rain Jacket", "variants": [{"id": 461, "inventory_level": 14}]}
    )
    requests = [
        r
        for n, order_id in enumerate(orders)
        for r in thin("acme-bc", "store/order/created", {"type": "order", "id": order_id}, n)
    ]
    hydrate.publish(requests)
    hydrate.start()
    wait_for(lambda: len(hydrate.orders()) >= 4, timeout=90)
    hydrate.kill(signal.SIGKILL)  # batches of 4, three calls an order: mid-run
    assert len(hydrate.orders()) < len(orders)

    extra = [
        *thin(
            "acme-bc",
            "store/sku/inventory/updated",
            {
                "type": "sku",
                "id": 9461,
                "inventory": {
                    "product_id": 212,
                    "method": "absolute",
                    "value": 3,
                    "variant_id": 461,
                },
            },
            100,
        ),
        *thin(  # relative: the level is read (14 at the emulator)
            "acme-bc",
            "store/product/inventory/updated",
            {"type": "product", "id": 212, "inventory": {"method": "relative", "value": -1}},
            103,
        ),
        *thin("acme-bc", "store/order/created", {"type": "order", "id": 4040}, 101),  # gone
        *thin("lonely-bc", "store/order/created", {"type": "order", "id": 1}, 102),
    ]
    product = json.loads(fixture_body("woocommerce", "product__updated"))
    stored = hydrate.woo.add_product(
        {**product, "id": 77, "type": "variable", "variations": []},
        variations=[
            {"id": 78, "sku": "T-S", "price": "9.50", "manage_stock": True, "stock_quantity": 2},
            {"id": 79, "sku": "T-M", "price": "9.50", "manage_stock": False},
        ],
    )
    now = datetime.now(UTC)
    woo_raw = RawDelivery(
        "raw-woo-1", "acme-woo", "woocommerce", "product.updated", now, now, {},
        json.dumps(stored).encode(),
    )  # fmt: skip
    woo_events = woocommerce.normalize(woo_raw, CONTEXT)
    assert isinstance(woo_events, list)
    extra += [e for e in woo_events if e.record == REQUEST]
    hydrate.publish(extra)
    hydrate.start()

    def all_done() -> bool:
        return (
            len({v["order_id"] for v in hydrate.orders()}) >= len(orders)
            and len(hydrate.pipeline.read("commerce.inventory-levels.v1")) >= 3
            and len(hydrate.pipeline.read("ops.dead-letters.v1")) >= 1
            and len(hydrate.pipeline.read("commerce.products.v1")) >= 1
        )

    wait_for(all_done, timeout=120)
    hydrate.kill(signal.SIGTERM)
    assert hydrate.process is not None and hydrate.process.returncode == 0

    # Exactly once through the kill: one event per order, complete, caused by its webhook.
    placed = hydrate.orders()
    assert Counter(v["order_id"] for v in placed) == {str(o): 1 for o in orders}
    assert len({v["envelope"]["event_id"] for v in placed}) == len(orders)
    first = next(v for v in placed if v["order_id"] == "1000")
    assert first["kind"] == "created" and first["total"]["amount_minor"] == 3000
    assert [(li["sku"], li["quantity"]) for li in first["line_items"]] == [("RJ-M", 2)]
    assert first["envelope"]["source"] == "hydration"
    assert first["envelope"]["caused_by"] == ["raw-acme-bc-0"]
    assert first["customer_key"] and "buyer1000" not in json.dumps(first, default=str)

    levels = sorted(
        (v["envelope"]["store_id"], v["inventory_item_id"], v["quantity"])
        for _, v in hydrate.pipeline.read("commerce.inventory-levels.v1")
    )
    # The SKU webhook's announced level; the relative change read as the level now.
    assert levels == [("acme-bc", "461", 3), ("acme-bc", "461", 14), ("acme-woo", "78", 2)]
    (whole,) = [v for _, v in hydrate.pipeline.read("commerce.products.v1")]
    assert [v["variant_id"] for v in whole["variants"]] == ["78", "79"]

    (dead,) = [v for _, v in hydrate.pipeline.read("ops.dead-letters.v1")]
    assert dead["stage"] == "connect.hydrate" and dead["error_type"] == "not_connected"
    assert dead["envelope"]["store_id"] == "lonely-bc"
    assert hydrate.bc.calls.violations == 0
    log = hydrate.log.read_text()
    assert BC_TOKEN not in log and WOO_SECRET not in log
