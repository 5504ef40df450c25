"""`revloop connect ads` against a real broker, a real Postgres and the ad platforms' emulators:
pauses and resumes reach Meta and Google Ads, a resume restores only what the pauses changed,
redeliveries change nothing, a SIGKILL loses and repeats nothing, and a failing platform sends
its action to dead letters while the others flow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse

from emulators import GoogleAdsEmulator, MetaEmulator, WooCommerceEmulator, serve
from platforms.webhooks import standard_webhook_headers
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import consumer_config, ensure_topics, producer_config
from revloop.settings import Settings
from revloop.stores import Connection, Store, StoreRegistry
from schemas.topics import Topic, topic_for_record
from tests.normalizer_support import SERDE, Pipeline, wait_for
from tests.sink_support import envelope, scratch_database

ACTION = "dev.revloop.events.CircuitBreakerAction"
META_TOKEN, GOOGLE_TOKEN, DEVELOPER_TOKEN = "EAAB-test-token", "ya29-test", "dev-test"


def action(
    event: str, minutes: float, product: str, kind: str, campaigns: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes, source="derived"),
        "action": kind,
        "product_id": product,
        "variant_id": None,
        "campaign_ids": [c for c, _ in campaigns],
        "campaigns": [{"campaign_id": c, "channel": ch} for c, ch in campaigns],
        "available": 0 if kind == "pause" else 5,
        "previous_available": None,
        "reason": "test",
    }


NOTIFY_SECRET = "whsec-notify-test"
WOO_KEY, WOO_SECRET = "ck_lock", "cs_lock-secret"


class Receiver:
    """The merchant's endpoint for notifications: keeps what arrives, answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        self.received.append((dict(request.headers), await request.body()))
        await JSONResponse({"ok": True})(scope, receive, send)

    def verified(self) -> list[dict[str, Any]]:
        """Each notification's body, once its signature checks out."""
        bodies = []
        for headers, body in self.received:
            expected = standard_webhook_headers(
                body,
                NOTIFY_SECRET.encode(),
                webhook_id=headers["webhook-id"],
                sent_at=datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC),
            )
            assert headers["webhook-signature"] == expected["webhook-signature"]
            value = json.loads(body)
            assert value["action_id"] == headers["webhook-id"]
            bodies.append(value)
        return bodies


@dataclass
class Executor:
    settings: Settings
    topics: tuple[Topic, ...]
    dsn: str
    env: dict[str, str]
    log: Path
    meta: MetaEmulator
    google: GoogleAdsEmulator
    receiver: Receiver
    woo: WooCommerceEmulator
    registry: tuple[Path, SecretBox, Store]
    process: subprocess.Popen[bytes] | None = None

    def calls(self) -> list[dict[str, Any]]:
        return [v for _, v in Pipeline(self.settings, self.topics).read("ops.connector-calls.v1")]

    def publish(self, *values: dict[str, Any]) -> None:
        prefix = self.topics[0].name.split(".", 1)[0] + "."
        catalogued = topic_for_record(ACTION)
        producer = Producer(producer_config(self.settings))
        for value in values:
            producer.produce(
                prefix + catalogued.name,
                key=catalogued.message_key(value),
                value=SERDE.encode(ACTION, value),
            )
        producer.flush(10)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "revloop", "connect", "ads"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def done(self) -> list[tuple[str, str]]:
        with psycopg.connect(self.dsn) as conn:
            return [
                (r[0], r[1])
                for r in conn.execute("SELECT action_id, outcome FROM ad_actions ORDER BY 1")
            ]

    def wait_done(self, count: int, timeout: float = 60) -> None:
        wait_for(lambda: len(self.done()) >= count, timeout=timeout)


@pytest.fixture
def executor(settings: Settings, scratch_catalogue: Any, tmp_path: Path) -> Iterator[Executor]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    keys = new_master_key("k1")
    box = SecretBox.from_settings(settings.model_copy(update={"master_keys": SecretStr(keys)}))
    store = Store(
        "acme",
        "shopify",
        "acme.myshopify.com",
        (Secret(b"whsec"),),
        connections=(
            Connection("meta", "act_1", Secret(json.dumps({"token": META_TOKEN}).encode())),
            Connection(
                "google",
                "1234567890",
                Secret(
                    json.dumps({"token": GOOGLE_TOKEN, "developer_token": DEVELOPER_TOKEN}).encode()
                ),
            ),
        ),
    )
    meta = MetaEmulator(META_TOKEN, capacity=60, window_seconds=1.0)
    google = GoogleAdsEmulator(GOOGLE_TOKEN, DEVELOPER_TOKEN, requests_per_window=20)
    receiver = Receiver()
    woo = WooCommerceEmulator(WOO_KEY, WOO_SECRET, site_url="https://woo.example/")
    with (
        scratch_database(settings) as dsn,
        serve(meta.app) as m,
        serve(google.app) as g,
        serve(receiver) as r,
        serve(woo.app) as w,
    ):
        notify = Connection(
            "notify",
            f"{r.base_url}/hooks/revloop",
            Secret(b'{"secret": "' + NOTIFY_SECRET.encode() + b'"}'),
        )
        store = replace(store, connections=(*store.connections, notify))
        StoreRegistry([store]).save(tmp_path / "stores.json", box)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "DATABASE_URL": dsn,
            "REVLOOP_TOPIC_PREFIX": topics[0].name.split(".", 1)[0] + ".",
            "REVLOOP_STATE_DIR": str(tmp_path),
            "REVLOOP_STORES_FILE": str(tmp_path / "stores.json"),
            "REVLOOP_MASTER_KEYS": keys,
            "REVLOOP_ADS_GROUP_ID": f"ads-{uuid.uuid4().hex[:8]}",
            "REVLOOP_META_API_URL": m.base_url,
            "REVLOOP_META_USAGE_WINDOW_SECONDS": "1",
            "REVLOOP_GOOGLE_ADS_API_URL": g.base_url,
            "REVLOOP_GOOGLE_ADS_REQUESTS_PER_SECOND": "10",
            "REVLOOP_CONNECT_BACKOFF_CAP_SECONDS": "0.2",
            "REVLOOP_NOTIFY_ALLOW_LOOPBACK": "true",
            "REVLOOP_WOOCOMMERCE_API_URL": w.base_url,
            "REVLOOP_WOOCOMMERCE_REQUESTS_PER_SECOND": "50",
        }
        running = Executor(
            settings,
            topics,
            dsn,
            env,
            tmp_path / "ads.log",
            meta,
            google,
            receiver,
            woo,
            (tmp_path / "stores.json", box, store),
        )
        yield running
        running.stop(signal.SIGKILL)


def test_pauses_and_resumes_reach_the_platforms_and_restore_only_what_they_changed(
    executor: Executor,
) -> None:
    meta, google = executor.meta, executor.google
    # c1 runs three ad sets, one of them paused by the merchant; c2 (Google) promotes p1 only.
    meta.add_campaign("c1", [("as1", "ACTIVE"), ("as2", "PAUSED"), ("as3", "ACTIVE")])
    google.campaigns.update({"777": "ENABLED"})
    both = [("c1", "meta"), ("777", "google")]
    executor.publish(
        action("a1", 1, "p1", "pause", both),
        action("a1", 1, "p1", "pause", both),  # a redelivery
        action("a2", 2, "p2", "pause", [("c1", "meta")]),  # p2 shares c1
        action("a4", 4, "p9", "pause", [("c5", "tiktok")]),  # nothing connected there
    )
    executor.start()
    executor.wait_done(3)
    # p1's resume after p2's pause (they are on different partitions: published after it).
    executor.publish(action("a3", 3, "p1", "resume", both))
    executor.wait_done(4)
    # p1 resumed, but p2 still holds c1: its ad sets stay paused; Google's campaign runs again.
    assert [meta.status(a) for a in ("as1", "as2", "as3")] == ["PAUSED", "PAUSED", "PAUSED"]
    assert google.campaigns["777"] == "ENABLED"
    assert google.calls.writes == [("777", "PAUSED"), ("777", "ENABLED")]
    outcomes = dict(executor.done())
    assert outcomes["a1"] == outcomes["a2"] == outcomes["a3"] == "applied"
    with psycopg.connect(executor.dsn) as conn:
        changes = dict(conn.execute("SELECT action_id, changes FROM ad_actions").fetchall())
    # p1 and p2 are on different partitions: whichever came first paused c1's running ad sets,
    # once; the merchant's paused one was never touched.
    assert sorted(c for c in changes["a1"] + changes["a2"] if c.startswith("meta")) == [
        "meta:as1 paused",
        "meta:as3 paused",
    ]
    assert "google:777 paused" in changes["a1"]
    assert changes["a3"] == ["google:777 resumed"]  # p2 still holds c1
    assert outcomes["a4"] == "applied; no account connected for tiktok:c5"

    executor.publish(action("a5", 5, "p2", "resume", [("c1", "meta")]))
    executor.wait_done(5)
    # The last holder resumed: what ran before runs again, the merchant's pause stays.
    assert [meta.status(a) for a in ("as1", "as2", "as3")] == ["ACTIVE", "PAUSED", "ACTIVE"]
    assert [w for w in meta.calls.writes if w[0] == "as2"] == []
    assert meta.calls.violations == google.calls.violations == 0
    with psycopg.connect(executor.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM ad_holds").fetchone() == (0,)
    executor.stop()
    assert executor.process is not None and executor.process.returncode == 0
    assert META_TOKEN not in executor.log.read_text()

    # The merchant heard of each action once (the redelivered a1 was done already), signed.
    heard = executor.receiver.verified()
    assert sorted(n["action_id"] for n in heard) == ["a1", "a2", "a3", "a4", "a5"]
    a3 = next(n for n in heard if n["action_id"] == "a3")
    assert a3["type"] == "ads.resumed" and a3["changes"] == ["google:777 resumed"]
    # Every call made, and its answer, is on the record: each the emulators and the merchant
    # got, no more.
    calls = executor.calls()
    by_channel = Counter(c["channel"] for c in calls)
    assert by_channel == {
        "meta": meta.calls.total,
        "google": google.calls.total,
        "notify": len(executor.receiver.received),
    }
    assert {(c["outcome"], c["status"]) for c in calls} == {("ok", 200)}
    assert all(c["envelope"]["caused_by"] == [c["action_id"]] for c in calls)
    assert NOTIFY_SECRET not in json.dumps(calls, default=str)


def test_a_killed_executor_repeats_nothing_and_a_failing_platform_does_not_stop_the_rest(
    executor: Executor,
) -> None:
    meta, google = executor.meta, executor.google
    meta.add_campaign("c1", [(f"as{n}", "ACTIVE") for n in range(30)])
    google.campaigns.update({str(n): "ENABLED" for n in range(100, 110)})
    actions = []
    for n in range(10):
        campaigns = [("c1", "meta"), (str(100 + n), "google")]
        actions.append(action(f"p{n}-pause", n, f"p{n}", "pause", campaigns))
    for n in range(10):
        campaigns = [("c1", "meta"), (str(100 + n), "google")]
        actions.append(action(f"p{n}-resume", 20 + n, f"p{n}", "resume", campaigns))
    executor.publish(*actions)
    executor.start()
    wait_for(lambda: len(executor.done()) >= 3, timeout=60)
    executor.stop(signal.SIGKILL)  # somewhere in the middle
    executor.start()
    executor.wait_done(20, timeout=90)
    assert all(outcome == "applied" for _, outcome in executor.done())
    # Every product paused and resumed: everything runs again, each Google campaign was set
    # paused and enabled (a repeat after the kill sets what is set, never the other way).
    assert {meta.status(f"as{n}") for n in range(30)} == {"ACTIVE"}
    assert set(google.campaigns.values()) == {"ENABLED"}
    for n in range(100, 110):
        writes = [status for campaign, status in google.calls.writes if campaign == str(n)]
        assert writes[0] == "PAUSED" and writes[-1] == "ENABLED"
        assert "ENABLED" not in writes[: writes.index("PAUSED") + 1]

    # Google fails every call now: the action goes to dead letters; the Meta-only one flows.
    google.campaigns["200"] = "ENABLED"
    google.fail_next(1000, 500)
    executor.publish(
        action("g-pause", 40, "g1", "pause", [("200", "google")]),
        action("m-pause", 41, "m1", "pause", [("c1", "meta")]),
    )
    executor.wait_done(22, timeout=90)
    outcomes = dict(executor.done())
    assert outcomes["g-pause"].startswith("failed: store acme: google-ads googleAds:search")
    assert outcomes["m-pause"] == "applied"
    assert meta.status("as0") == "PAUSED" and google.campaigns["200"] == "ENABLED"
    letters = dead_letters(executor)
    assert [d["original_offset"] is not None and d["stage"] for d in letters] == ["connect.ads"]
    assert GOOGLE_TOKEN not in letters[0]["error_message"]


def dead_letters(executor: Executor) -> list[dict[str, Any]]:
    name = executor.topics[0].name.split(".", 1)[0] + ".ops.dead-letters.v1"
    reader = Consumer(consumer_config(executor.settings, f"read-{uuid.uuid4().hex[:6]}"))
    found: list[dict[str, Any]] = []
    try:
        meta = reader.list_topics(name, timeout=10).topics[name]
        reader.assign([TopicPartition(name, p, 0) for p in meta.partitions])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None:
                if found:
                    break
                continue
            if not message.error():
                found.append(SERDE.decode(message.value() or b"").value)
    finally:
        reader.close()
    return found


def test_a_sold_out_product_is_locked_on_the_stores_other_channel_and_put_back(
    executor: Executor,
) -> None:
    path, box, store = executor.registry
    credentials = json.dumps({"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET}).encode()
    other = Connection("woocommerce", "https://woo.example/", Secret(credentials))
    StoreRegistry([replace(store, connections=(*store.connections, other))]).save(path, box)
    jacket = executor.woo.add_product(
        {"name": "Jacket", "sku": "JACKET-M", "manage_stock": True, "stock_quantity": 7}
    )
    executor.woo.add_product(
        {"name": "Cap", "sku": "CAP", "manage_stock": True, "stock_quantity": 4}
    )
    # What the pipeline knows of the store's catalogue (the sink's variants): p1's v1 is the SKU.
    with psycopg.connect(executor.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO variants (store_id, variant_id, product_id, sku, price_minor, currency,"
            " source_at, source_event_id) VALUES ('acme', 'v1', 'p1', 'JACKET-M', 100, 'USD',"
            " now(), 'e1')"
        )
    pause = action("l1", 1, "p1", "pause", [])
    pause["variant_id"] = "v1"
    executor.publish(pause)
    executor.start()
    executor.wait_done(1)
    assert executor.woo.stock(jacket["id"]) == 0
    with psycopg.connect(executor.dsn) as conn:
        (changes,) = conn.execute(
            "SELECT changes FROM ad_actions WHERE action_id = 'l1'"
        ).fetchone()
    assert changes == [f"woocommerce:JACKET-M {jacket['id']}@- 7→0"]
    resume = action("l2", 2, "p1", "resume", [])
    resume["variant_id"] = "v1"
    executor.publish(resume)
    executor.wait_done(2)
    assert executor.woo.stock(jacket["id"]) == 7
    assert executor.woo.stock(jacket["id"] + 1) == 4  # another SKU, untouched
    with psycopg.connect(executor.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM inventory_locks").fetchone() == (0,)
    # Every push and read is on the record, as calls to the woocommerce channel.
    woo_calls = [c for c in executor.calls() if c["channel"] == "woocommerce"]
    assert len(woo_calls) == executor.woo.calls.total and woo_calls
    assert executor.woo.calls.violations == 0
