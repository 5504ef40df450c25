"""A store registry for ingest tests: one store per platform, with known secrets (and API keys
for the marketing feeds), and reading back what ingest published."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import uvicorn
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ingest.app import IngestApp, IngestService
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher
from platforms import shopify
from revloop.crypto import Secret
from revloop.kafka import consumer_config
from revloop.settings import Settings
from revloop.stores import Store, StoreRegistry, api_key_digest
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from tests.stack_support import free_ports

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SHOP_SECRET = b"shopify-app-secret"
WOO_SECRET = b"woocommerce-webhook-secret"
BC_SECRET = b"bigcommerce-client-secret"


def make_registry(
    *,
    previous_shop_secret: bytes | None = None,
    window_ends: datetime | None = None,
    bc_hash: str = "abc123",
) -> StoreRegistry:
    shop_secrets = (Secret(SHOP_SECRET),) + (
        (Secret(previous_shop_secret),) if previous_shop_secret else ()
    )
    return StoreRegistry(
        [
            Store("acme-shopify", "shopify", "acme.myshopify.com", shop_secrets, window_ends),
            Store("shop-woo", "woocommerce", "https://shop.example.com", (Secret(WOO_SECRET),)),
            Store("bc-store", "bigcommerce", bc_hash, (Secret(BC_SECRET),)),
        ]
    )


# --- marketing feeds ----------------------------------------------------------------------

CUSTOMER_SALT = b"test-customer-key-salt"
API_KEYS = {
    "acme-shopify": "rlk_acme-shopify_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0_-x",
    "shop-woo": "rlk_shop-woo_" + "z9Y8x7W6v5U4t3S2r1Q0p9O8n7M6l5K4j3I2h1G0-_y",
}
"""Fixed feed API keys (shaped like `revloop stores api-key` output) of two of the test stores."""


def make_feed_registry(**kwargs: Any) -> StoreRegistry:
    """:func:`make_registry` with the :data:`API_KEYS` registered (the BigCommerce store has
    none)."""
    return StoreRegistry(
        replace(store, api_key_hashes=(api_key_digest(API_KEYS[store.store_id]),))
        if store.store_id in API_KEYS
        else store
        for store in make_registry(**kwargs)
    )


SERDE = AvroSerde(CommittedCatalogue.load())
TEST_BODY_CAP = 64 * 1024


def make_service(
    settings: Settings,
    *,
    stores: Any = None,
    ack_timeout: float = 2.0,
    body_timeout: float = 10.0,
    topic_prefix: str = "",
) -> IngestService:
    """An ingest service on the test stores (with feed keys) writing to ``settings``' broker."""
    return IngestService(
        stores=stores if stores is not None else make_feed_registry(),
        publisher=DurablePublisher(settings, ack_timeout=ack_timeout),
        serde=SERDE,
        metrics=IngestMetrics(),
        settings=settings.model_copy(
            update={
                "ingest_max_body_bytes": TEST_BODY_CAP,
                "ingest_body_timeout_seconds": body_timeout,
                "topic_prefix": topic_prefix,
            }
        ),
        customer_salt=CUSTOMER_SALT,
    )


@contextmanager
def serving(app: IngestApp, http: str = "auto", keep_alive: int = 5) -> Iterator[int]:
    """``app`` under uvicorn on a free loopback port, in a thread; yields the port."""
    [port] = free_ports(1)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=http,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn exited at start"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def shopify_delivery(
    body: bytes,
    webhook_id: str | None = None,
    topic: str = "orders/create",
    *,
    shop: str = "acme.myshopify.com",
    secret: bytes = SHOP_SECRET,
) -> dict[str, str]:
    """Headers Shopify would send with ``body`` for the test store (or ``shop``)."""
    return shopify.signed_headers(
        body,
        secret,
        shop_domain=shop,
        topic=topic,
        webhook_id=webhook_id or str(uuid.uuid4()),
        triggered_at=datetime.now(UTC),
    )


def bearer(store_id: str) -> dict[str, str]:
    return {"authorization": f"Bearer {API_KEYS[store_id]}", "content-type": "application/json"}


@dataclass(frozen=True)
class Published:
    """One message read back from a topic: the raw key and value bytes, and the decoded value."""

    key: bytes
    value: bytes
    decoded: dict[str, Any]


def topic_watermarks(settings: Settings, topic_name: str) -> dict[int, int]:
    """The high watermark of each partition of ``topic_name``."""
    consumer = Consumer(consumer_config(settings, group_id="unused"))
    try:
        for attempt in range(50):  # a broker that just restarted is still electing leaders
            try:
                metadata = consumer.list_topics(topic_name, timeout=10).topics[topic_name]
                return {
                    p: consumer.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)[1]
                    for p in metadata.partitions
                }
            except KafkaException:
                if attempt == 49:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")
    finally:
        consumer.close()


def read_published(
    settings: Settings, topic_name: str, since: dict[int, int], serde: AvroSerde
) -> list[Published]:
    """Every message written to ``topic_name`` after the ``since`` high watermarks."""
    ends = topic_watermarks(settings, topic_name)
    wanted = {p: (since.get(p, 0), end) for p, end in ends.items() if end > since.get(p, 0)}
    consumer = Consumer(consumer_config(settings, group_id="unused"))
    try:
        consumer.assign([TopicPartition(topic_name, p, start) for p, (start, _) in wanted.items()])
        out: list[Published] = []
        remaining = sum(end - start for start, end in wanted.values())
        for _ in range(300):
            if remaining <= 0:
                break
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            remaining -= 1
            key, value = msg.key() or b"", msg.value() or b""
            out.append(Published(key, value, serde.decode(value).value))
        assert remaining <= 0, f"{remaining} message(s) of {topic_name} were not read back"
        return out
    finally:
        consumer.close()
