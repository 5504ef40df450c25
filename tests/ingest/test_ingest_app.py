"""The ingest service over HTTP, publishing to a real broker: only durable deliveries get a 200."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import SecretStr

from infra.stack import Stack
from ingest.app import RAW_TOPIC, IngestService, create_app
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher, PublishUnavailable
from ingest.server import build_service
from platforms import woocommerce
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import consumer_config, ensure_topics
from revloop.settings import Settings
from revloop.stores import Store, StoreRegistry
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from schemas.topics import TOPICS
from tests import FIXTURES
from tests.ingest_support import (
    WOO_SECRET,
    make_registry,
    read_published,
    shopify_delivery,
)
from tests.stack_support import free_ports, isolated_settings, scratch_state_dir

SERDE = AvroSerde(CommittedCatalogue.load())
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_service(
    settings: Settings, ack_timeout: float = 2.0, topic_prefix: str = ""
) -> IngestService:
    return IngestService(
        stores=make_registry(),
        publisher=DurablePublisher(settings, ack_timeout=ack_timeout),
        serde=SERDE,
        metrics=IngestMetrics(),
        settings=settings.model_copy(
            update={"ingest_max_body_bytes": 64 * 1024, "topic_prefix": topic_prefix}
        ),
        clock=lambda: datetime.now(UTC),
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, IngestService]]:
    ensure_topics(settings, [RAW_TOPIC])
    service = make_service(settings)
    app = create_app(service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
        yield http, service
    service.publisher.close()


def raw_records(settings: Settings, since: dict[int, int]) -> list[dict[str, Any]]:
    """Every RawWebhook written after the ``since`` high watermarks."""
    return [p.decoded for p in read_published(settings, RAW_TOPIC.name, since, SERDE)]


def _watermarks(consumer: Consumer) -> tuple[dict[int, int], dict[int, int]]:
    partitions = consumer.list_topics(RAW_TOPIC.name, timeout=10).topics[RAW_TOPIC.name].partitions
    lows, highs = {}, {}
    for p in partitions:
        lows[p], highs[p] = consumer.get_watermark_offsets(
            TopicPartition(RAW_TOPIC.name, p), timeout=10
        )
    return lows, highs


def high_watermarks(settings: Settings) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, group_id="unused"))
    try:
        for _ in range(50):  # a broker that just restarted is still electing leaders
            try:
                return _watermarks(consumer)[1]
            except KafkaException:
                time.sleep(0.2)
        return _watermarks(consumer)[1]
    finally:
        consumer.close()


async def test_a_genuine_delivery_is_acked_only_once_it_is_in_kafka(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    before = high_watermarks(settings)
    body = (FIXTURES / "shopify" / "orders__create.json").read_bytes()
    headers = shopify_delivery(body)
    response = await http.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    [record] = [r for r in raw_records(settings, before) if r["envelope"]["event_id"] == event_id]
    assert record["body"] == body  # the exact signed bytes
    assert record["envelope"]["store_id"] == "acme-shopify"
    assert record["topic"] == "orders/create"
    assert record["headers"]["x-shopify-webhook-id"] == headers["x-shopify-webhook-id"]


async def test_forged_oversized_and_mistyped_requests_publish_nothing(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    before = high_watermarks(settings)
    body = b'{"id": 1}'
    forged = {**shopify_delivery(body), "x-shopify-hmac-sha256": "Zm9yZ2Vk"}
    assert (await http.post("/webhooks/shopify", content=body, headers=forged)).status_code == 401
    big = b'{"pad": "' + b"x" * (64 * 1024) + b'"}'
    assert (
        await http.post("/webhooks/shopify", content=big, headers=shopify_delivery(big))
    ).status_code == 413

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap applies while reading
        for _ in range(70):
            yield b"x" * 1024

    streamed = await http.post(
        "/webhooks/shopify", content=chunked(), headers=shopify_delivery(b"")
    )
    assert streamed.status_code == 413
    as_text = {**shopify_delivery(body), "content-type": "text/plain"}
    assert (await http.post("/webhooks/shopify", content=body, headers=as_text)).status_code == 415
    ping = await http.post(
        "/webhooks/woocommerce",
        content=b"webhook_id=42",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert ping.status_code == 200
    assert high_watermarks(settings) == before
    metrics = (await http.get("/metrics")).text
    forged_line = (
        'revloop_ingest_deliveries_total{outcome="rejected",platform="shopify",'
        'reason="bad_signature",topic="unverified"} 1.0'
    )
    assert forged_line in metrics
    assert 'reason="too_large"' in metrics
    assert 'reason="unsupported_media_type"' in metrics
    assert 'outcome="ignored",platform="woocommerce",reason="ping"' in metrics


async def test_unknown_topics_and_bad_json_on_verified_deliveries_are_still_stored(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    before = high_watermarks(settings)
    odd = b'{"id": 7}'
    unknown = await http.post(
        "/webhooks/shopify", content=odd, headers=shopify_delivery(odd, topic="themes/publish")
    )
    broken = b'{"id": 8, "line_items": ['
    bad_json = await http.post(
        "/webhooks/woocommerce",
        content=broken,
        headers=woocommerce.signed_headers(
            broken,
            WOO_SECRET,
            source="https://shop.example.com",
            topic="order.updated",
            webhook_id="3",
            delivery_id="d-9",
        ),
    )
    nested = b"[" * 20_000 + b"]" * 20_000  # valid JSON, too deep for either parser
    too_deep = await http.post(
        "/webhooks/woocommerce",
        content=nested,
        headers=woocommerce.signed_headers(
            nested,
            WOO_SECRET,
            source="https://shop.example.com",
            topic="order.updated",
            webhook_id="3",
            delivery_id="d-10",
        ),
    )
    assert unknown.status_code == 200
    assert bad_json.status_code == 200
    assert too_deep.status_code == 200
    stored = {r["envelope"]["event_id"]: r for r in raw_records(settings, before)}
    assert stored[unknown.json()["event_id"]]["topic"] == "themes/publish"
    assert stored[bad_json.json()["event_id"]]["body"] == broken
    assert stored[too_deep.json()["event_id"]]["body"] == nested
    assert 'topic="unknown"' in (await http.get("/metrics")).text


async def test_a_topic_prefix_keeps_an_environment_on_its_own_topics(
    settings: Settings, scratch_catalogue: Any
) -> None:
    topics = scratch_catalogue()
    prefix = topics[0].name.removesuffix(TOPICS[0].name)
    ensure_topics(settings, topics)
    shared_before = high_watermarks(settings)
    service = make_service(settings, topic_prefix=prefix)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(service)), base_url="http://ingest"
    ) as http:
        body = b'{"id": 11}'
        response = await http.post(
            "/webhooks/shopify", content=body, headers=shopify_delivery(body)
        )
    service.publisher.close()
    assert response.status_code == 200, response.text
    (stored,) = read_published(settings, prefix + RAW_TOPIC.name, {}, SERDE)
    assert stored.decoded["envelope"]["event_id"] == response.json()["event_id"]
    assert high_watermarks(settings) == shared_before


async def test_a_body_just_under_the_default_cap_is_stored(settings: Settings) -> None:
    ensure_topics(settings, [RAW_TOPIC])
    service = make_service(settings)
    service.max_body_bytes = 1 << 20
    body = b'{"pad": "' + b"x" * ((1 << 20) - 64) + b'"}'
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(service)), base_url="http://ingest"
        ) as http:
            response = await http.post(
                "/webhooks/shopify", content=body, headers=shopify_delivery(body)
            )
        assert response.status_code == 200, response.text
    finally:
        service.publisher.close()


async def test_health_and_readiness(client: Any) -> None:
    http, _ = client
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200


# --- Kafka goes away mid-traffic ---


@pytest.fixture(scope="module")
def private_stack() -> Iterator[tuple[Settings, Stack]]:
    with scratch_state_dir() as state_dir:
        settings = isolated_settings(state_dir)
        stack = Stack(settings)
        stack.up()
        try:
            ensure_topics(settings, [RAW_TOPIC])
            yield settings, stack
        finally:
            stack.down()


@pytest.mark.slow
async def test_kafka_down_means_503_and_retries_after_recovery_store_each_delivery_once(
    private_stack: tuple[Settings, Stack],
) -> None:
    settings, stack = private_stack
    service = make_service(settings, ack_timeout=1.5)
    transport = httpx.ASGITransport(app=create_app(service))
    bodies = [(FIXTURES / "shopify" / "orders__create.json").read_bytes()] * 3
    ids = [str(uuid.uuid4()) for _ in bodies]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            before = high_watermarks(settings)
            stack.kafka.stop(30)
            assert (await http.get("/readyz")).status_code == 503
            for body, webhook_id in zip(bodies, ids, strict=True):
                refused = await http.post(
                    "/webhooks/shopify", content=body, headers=shopify_delivery(body, webhook_id)
                )
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "5"

            stack.up()
            accepted, refused_after_recovery = [], Counter[str]()
            for body, webhook_id in zip(bodies, ids, strict=True):
                # The platform retries until it gets a 200. Right after the broker returns, the
                # producer may still be reconnecting, and a record that timed out then may have
                # been written anyway (librdkafka's "possibly persisted").
                deadline = time.monotonic() + 30
                while True:
                    retried = await http.post(
                        "/webhooks/shopify",
                        content=body,
                        headers=shopify_delivery(body, webhook_id),
                    )
                    if retried.status_code == 200 or time.monotonic() > deadline:
                        break
                    refused_after_recovery[webhook_id] += 1
                assert retried.status_code == 200, retried.text
                accepted.append(retried.json()["event_id"])
            stored = Counter(r["envelope"]["event_id"] for r in raw_records(settings, before))
            assert sorted(stored) == sorted(accepted)  # nothing refused while Kafka was down
            for event_id, webhook_id in zip(accepted, ids, strict=True):
                assert 1 <= stored[event_id] <= 1 + refused_after_recovery[webhook_id]
            assert 'outcome="unavailable"' in (await http.get("/metrics")).text
    finally:
        service.publisher.close(timeout=2)


async def test_unacked_records_fail_at_the_ack_timeout_even_with_one_cancelled() -> None:
    [port] = free_ports(1)  # nothing listens there
    publisher = DurablePublisher(Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}"), 0.5)
    try:
        started = time.monotonic()
        waiting = [
            asyncio.create_task(publisher.publish(RAW_TOPIC.name, b"k", b"v")) for _ in range(20)
        ]
        await asyncio.sleep(0.1)
        waiting[0].cancel()  # the client went away; the rest must still be answered
        results = await asyncio.gather(*waiting, return_exceptions=True)
        elapsed = time.monotonic() - started
        assert isinstance(results[0], asyncio.CancelledError)
        assert all(isinstance(r, PublishUnavailable) for r in results[1:]), results
        assert 0.5 <= elapsed < 1.5
        with pytest.raises(PublishUnavailable):  # and the next one times out the same way
            await publisher.publish(RAW_TOPIC.name, b"k", b"v")
    finally:
        publisher.close(timeout=0)


async def test_closing_the_publisher_answers_every_record_still_waiting() -> None:
    [port] = free_ports(1)  # nothing listens there
    publisher = DurablePublisher(Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}"), 30.0)
    waiting = asyncio.create_task(publisher.publish(RAW_TOPIC.name, b"k", b"v"))
    await asyncio.sleep(0.05)
    assert publisher.close(timeout=0) == 1
    with pytest.raises(PublishUnavailable, match="closed before the ack"):
        await asyncio.wait_for(waiting, 2)


async def test_a_store_added_while_ingest_runs_is_served_without_a_restart(
    settings: Settings, tmp_path: Path
) -> None:
    keys = SecretStr(new_master_key("k1"))
    path = tmp_path / "stores.json"
    box = SecretBox.from_settings(Settings(master_keys=keys))
    make_registry().save(path, box)
    live = settings.model_copy(
        update={
            "stores_file": path,
            "master_keys": keys,
            "customer_key_salt": SecretStr("pepper"),
            "stores_check_seconds": 0.05,
        }
    )
    ensure_topics(settings, [RAW_TOPIC])
    service = build_service(live)
    app = create_app(service, on_shutdown=service.publisher.close)
    body = (FIXTURES / "shopify" / "orders__create.json").read_bytes()
    new_secret = b"new-shop-secret"

    def new_shop_delivery() -> dict[str, str]:
        return shopify_delivery(body, shop="newshop.myshopify.com", secret=new_secret)

    async def status_within(seconds: float, wanted: int) -> int:
        deadline = time.monotonic() + seconds
        while True:
            headers = new_shop_delivery()
            response = await http.post("/webhooks/shopify", content=body, headers=headers)
            if response.status_code == wanted or time.monotonic() > deadline:
                return response.status_code
            await asyncio.sleep(0.05)

    def reloads(outcome: str) -> float:
        value = service.metrics.registry.get_sample_value(
            "revloop_ingest_store_reloads_total", {"outcome": outcome}
        )
        return value or 0.0

    async with app.api.router.lifespan_context(app.api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            assert (await status_within(0, 200)) == 401
            StoreRegistry.update(
                path,
                box,
                lambda r: r.with_store(
                    Store("newshop", "shopify", "newshop.myshopify.com", (Secret(new_secret),))
                ),
            )
            assert (await status_within(5, 200)) == 200
            assert reloads("loaded") == 1
            # A file that does not load (here, truncated mid-write by some other tool) leaves
            # the stores that were loaded in service.
            path.write_text('{"stores": [')
            deadline = time.monotonic() + 5
            while reloads("failed") == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert reloads("failed") == 1
            assert (await status_within(0, 200)) == 200
            assert reloads("loaded") == 1
