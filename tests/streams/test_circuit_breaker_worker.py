"""`revloop worker` against the real broker: inventory levels, variants and campaign links in,
pauses and resumes out, exactly once, read with read_committed."""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from revloop.crypto import Secret, SecretBox
from revloop.stores import SettingsVersion, Store, StoreRegistry
from streams.circuit_breaker.breaker import BreakerRules, BreakerState, observe
from tests.normalizer_support import wait_for
from tests.stack_support import free_ports
from tests.worker_support import T0, Worker, envelope


def level(
    event: str, minutes: float, item: str, quantity: int, product: str | None
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes),
        "inventory_item_id": item,
        "location_id": "default",
        "method": "absolute",
        "quantity": quantity,
        "product_id": product,
        "variant_id": None,
        "sku": None,
    }


def test_a_product_that_sells_out_pauses_its_campaigns_and_resumes_on_restock(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    (metrics_port,) = free_ports(1)
    monkeypatch.setenv("REVLOOP_WORKER_METRICS_PORT", str(metrics_port))
    worker.publish(
        "CampaignProductLink",
        {
            "envelope": envelope("link-1", 0),
            "campaign_id": "c1",
            "product_id": "p1",
            "channel": "meta",
            "active": True,
        },
    )
    worker.publish(
        "ProductUpsert",
        {
            "envelope": envelope("prod-1", 0),
            "product_id": "p1",
            "title": "Merino Beanie",
            "handle": None,
            "status": "active",
            "vendor": None,
            "product_type": None,
            "tags": [],
            "variants": [
                {
                    "variant_id": "v2",
                    "sku": None,
                    "title": "Grey",
                    "price": {"amount_minor": 2500, "currency": "USD"},
                    "inventory_item_id": "i2",
                    "inventory_quantity": None,
                },
                {
                    "variant_id": "v4",
                    "sku": None,
                    "title": "Navy",
                    "price": {"amount_minor": 2500, "currency": "USD"},
                    "inventory_item_id": "i4",
                    "inventory_quantity": None,
                },
            ],
        },
    )
    worker.start()
    wait_for(
        lambda: (
            worker.committed_past("marketing.campaign-product-links.v1")
            and worker.committed_past("commerce.products.v1")
        ),
        timeout=90,
    )
    # p1's items are known through p1's variants; p2's item i1 names its product itself.
    worker.publish("InventoryLevel", level("lv-0", 1, "i4", 3, None))
    worker.publish("InventoryLevel", level("lv-1", 1, "i2", 2, None))
    worker.publish("InventoryLevel", level("lv-2", 3, "i2", 0, None))  # sold out: pause
    worker.publish("InventoryLevel", level("lv-2", 3, "i2", 0, None))  # a redelivery
    worker.publish("InventoryLevel", level("lv-3", 4, "i2", 9, None))  # back inside the dwell
    worker.publish("InventoryLevel", level("lv-4", 20, "i2", 4, None))  # after it: resume
    worker.publish("InventoryLevel", level("lv-5", 2, "i1", 0, "p2"))
    # p3 sells out and is restocked inside the dwell, then nothing more comes for p3: other
    # products' updates carry stream time past the dwell, and p3's timer resumes it.
    worker.publish("InventoryLevel", level("lv-6", 10, "i3", 0, "p3"))
    worker.publish("InventoryLevel", level("lv-7", 12, "i3", 5, "p3"))
    wait_for(lambda: len(worker.actions()) >= 4, timeout=90)
    for n in range(60):
        worker.publish_quietly("InventoryLevel", level(f"other-{n}", 30, f"o{n}", 7, f"o{n}"))
    worker.producer.flush(10)
    wait_for(lambda: len(worker.actions()) >= 5, timeout=90)
    time.sleep(2)  # anything more would arrive now
    actions = worker.actions()
    summary = sorted(
        (
            a["envelope"]["occurred_at"] - T0,
            a["product_id"],
            a["variant_id"] or "",
            a["action"],
            a["available"],
            a["previous_available"],
            a["campaign_ids"],
        )
        for a in actions
    )
    minute = timedelta(minutes=1)
    assert summary == [
        (2 * minute, "p2", "", "pause", 0, None, []),
        # Its variant v2 sold out; p1 as a whole did not (v4 has 3).
        (3 * minute, "p1", "v2", "pause", 0, 2, ["c1"]),
        # The restock came inside the 5-minute dwell: the resume takes effect when it ends.
        (8 * minute, "p1", "v2", "resume", 9, None, ["c1"]),
        (10 * minute, "p3", "", "pause", 0, None, []),
        (15 * minute, "p3", "", "resume", 5, None, []),
    ]
    pause = next(a for a in actions if a["product_id"] == "p1")
    assert pause["campaigns"] == [{"campaign_id": "c1", "channel": "meta"}]  # for the executors
    assert pause["envelope"]["caused_by"] == ["lv-2"]
    assert pause["envelope"]["source"] == "derived"
    assert len({a["envelope"]["event_id"] for a in actions}) == len(actions)

    # Its /metrics: each input record counted once (the redelivery too), each action emitted.
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    levels = f"{worker.prefix}commerce.inventory-levels.v1"
    assert f'revloop_worker_records_total{{topic="{levels}"}} 69.0' in text
    assert 'revloop_circuit_breaker_actions_total{action="pause"} 3.0' in text
    assert 'revloop_circuit_breaker_actions_total{action="resume"} 2.0' in text


def test_each_store_pauses_at_its_own_threshold_and_a_change_applies_while_running(
    worker: Worker,
) -> None:
    """acme pauses at 3 or below from minute 10 (the file says so before the worker starts);
    beta keeps the default, 0, until a version written while the worker runs: from minute 20
    it pauses at 3 and warns below 5."""
    path, box = worker.state_dir / "stores.json", SecretBox({"k1": os.urandom(32)}, "k1")
    threshold = {"breaker_out_of_stock_at": 3, "breaker_restock_at": 6}

    def store(store_id: str, *versions: SettingsVersion) -> Store:
        secret = (Secret(b"secret"),)
        return Store(store_id, "shopify", f"{store_id}.myshopify.com", secret, settings=versions)

    acme = store("acme", SettingsVersion(T0 + timedelta(minutes=10), threshold))
    StoreRegistry([acme, store("beta")]).save(path, box)
    worker.start()
    for shop in ("acme", "beta"):
        for n, (minute, quantity) in enumerate([(1, 9), (2, 3), (5, 9), (11, 3)]):
            worker.publish(
                "InventoryLevel",
                {
                    **level(f"{shop}-{n}", minute, "i1", quantity, "p1"),
                    "envelope": envelope(f"{shop}-{n}", minute, store=shop),
                },
            )
    wait_for(lambda: worker.actions(), timeout=90)
    low = {**threshold, "breaker_low_stock_below": 5}
    later = store("beta", SettingsVersion(T0 + timedelta(minutes=20), low))
    StoreRegistry([acme, later]).save(path, box)
    time.sleep(3)  # the worker reads the file again within stores_check_seconds (1 s)
    for n, (minute, quantity) in enumerate([(21, 9), (22, 4), (23, 2)]):
        worker.publish(
            "InventoryLevel",
            {
                **level(f"beta-late-{n}", minute, "i1", quantity, "p1"),
                "envelope": envelope(f"beta-late-{n}", minute, store="beta"),
            },
        )
    wait_for(lambda: len(worker.actions()) >= 2, timeout=90)
    time.sleep(2)  # anything more would arrive now
    found = [
        (a["envelope"]["store_id"], a["action"], a["envelope"]["occurred_at"] - T0, a["available"])
        for a in worker.actions()
    ]
    # acme's 3 at minute 2 came before its change; beta's 3 at minute 11 before beta's.
    assert found == [
        ("acme", "pause", timedelta(minutes=11), 3),
        ("beta", "pause", timedelta(minutes=23), 2),
    ]
    (warning,) = worker.read("alerts.low-stock.v1")
    assert warning["envelope"]["occurred_at"] == T0 + timedelta(minutes=22)
    assert (warning["envelope"]["store_id"], warning["product_id"]) == ("beta", "p1")
    assert (warning["available"], warning["previous_available"], warning["threshold"]) == (4, 9, 5)
    assert warning["envelope"]["caused_by"] == ["beta-late-1"]


def expected_actions(updates: list[tuple[str, int, int]]) -> list[tuple[str, str, str, int]]:
    """What an uninterrupted run derives, from the pure breaker: (product, action, at, available)
    per pause and resume. One item per product, so a product's totals are its item's levels."""
    rules = BreakerRules(
        out_of_stock_at=0, restock_at=1, low_stock_below=None, dwell=timedelta(minutes=5)
    )
    states: dict[str, BreakerState] = {}
    found = []
    for product, minute, quantity in updates:
        state, decisions = observe(
            states.get(product, BreakerState()), quantity, T0 + timedelta(minutes=minute), rules
        )
        states[product] = state
        found += [(product, d.transition.value, d.at.isoformat(), d.available) for d in decisions]
    return sorted(found)


def as_found(actions: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    return sorted(
        (a["product_id"], a["action"], a["envelope"]["occurred_at"].isoformat(), a["available"])
        for a in actions
    )


@pytest.mark.slow
def test_a_worker_killed_mid_stream_ends_with_exactly_the_uninterrupted_actions(
    worker: Worker,
) -> None:
    rng = random.Random(7)
    products = [f"p{n}" for n in range(40)]
    updates = []
    for step in range(60):  # 2,400 updates; a product's updates are 3 minutes apart
        for product in products:
            updates.append((product, step * 3, rng.choice([0, 0, 1, 2, 5, 9])))
    expected = expected_actions(updates)
    assert len(expected) > 300

    worker.start()
    fed = 0

    def feed(until: int) -> None:
        nonlocal fed
        for product, minute, quantity in updates[fed:until]:
            worker.publish_quietly(
                "InventoryLevel",
                level(f"{product}-{minute}", minute, f"i-{product}", quantity, product),
            )
        worker.producer.flush(30)
        fed = until

    # A first start creates quixstreams' internal topics (about 20 s here); kills come after it.
    feed(60)
    wait_for(lambda: worker.committed_total("commerce.inventory-levels.v1") > 0, timeout=90)

    restarts = []
    for until in (600, 1200, 1800):
        feed(until)
        time.sleep(rng.uniform(1.0, 3.0))  # somewhere inside the batch
        assert worker.process is not None
        worker.process.kill()  # SIGKILL: no goodbye, a transaction left open
        worker.process.wait()
        before = worker.committed_total("commerce.inventory-levels.v1")
        worker.start()
        started = time.monotonic()
        feed(until + 60)
        # Working again: the restarted instance has committed input past where the dead one was.
        wait_for(
            lambda b=before: worker.committed_total("commerce.inventory-levels.v1") > b,  # type: ignore[misc]
            timeout=60,
        )
        restarts.append(time.monotonic() - started)
    feed(len(updates))
    wait_for(lambda: len(worker.actions()) >= len(expected), timeout=120)
    time.sleep(3)  # anything extra (a duplicate) would be readable by now
    actions = worker.actions()
    assert as_found(actions) == expected
    assert len({a["envelope"]["event_id"] for a in actions}) == len(actions)
    # Static membership, a stable transactional id fenced at start, short fetch waits and polls:
    # back at work within the 10 s the issue asks, not the 44-75 s of a rejoin that waits out
    # the dead member (docs/streams.md says where the 7 s go).
    assert max(restarts) < 10, restarts
    print(f"restarts took {', '.join(f'{s:.1f}' for s in restarts)} s")
