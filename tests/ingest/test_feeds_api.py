"""The marketing feeds over HTTP, publishing to a real broker: a 200 means every record of the
batch is in Kafka; anything refused publishes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from ingest import feeds
from ingest.app import IngestService, create_app
from ingest.server import build_service
from revloop.crypto import SecretBox, new_master_key
from revloop.kafka import ensure_topics
from revloop.privacy import customer_key, customer_key_for_id
from revloop.settings import Settings
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from tests.ingest_support import (
    API_KEYS,
    CUSTOMER_SALT,
    bearer,
    make_feed_registry,
    make_registry,
    make_service,
    read_published,
    topic_watermarks,
)
from tests.stack_support import free_ports

SERDE = AvroSerde(CommittedCatalogue.load())
TOUCHPOINTS = feeds.TOUCHPOINT_TOPIC.name
LINKS = feeds.CAMPAIGN_LINK_TOPIC.name
SPEND = feeds.CAMPAIGN_SPEND_TOPIC.name
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(service: IngestService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http
    finally:
        service.publisher.close(timeout=5)


@pytest.fixture(scope="module")
def feed_topics(settings: Settings) -> None:
    ensure_topics(
        settings, [feeds.TOUCHPOINT_TOPIC, feeds.CAMPAIGN_LINK_TOPIC, feeds.CAMPAIGN_SPEND_TOPIC]
    )


@pytest.fixture
async def client(
    settings: Settings, feed_topics: None
) -> AsyncIterator[tuple[httpx.AsyncClient, IngestService]]:
    service = make_service(settings)
    async with serve(service) as http:
        yield http, service


def watermarks(settings: Settings) -> dict[str, dict[int, int]]:
    return {name: topic_watermarks(settings, name) for name in (TOUCHPOINTS, LINKS, SPEND)}


def now_iso(minutes_ago: int = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def a_batch(run: str, email: str) -> dict[str, Any]:
    return {
        "touchpoints": [
            {
                "touchpoint_id": f"{run}-click",
                "kind": "ad_click",
                "channel": "meta",
                "occurred_at": now_iso(30),
                "email": email,
                "campaign_id": "120210000000001",
                "ad_id": "120210000000777",
                "product_ids": ["8001", "8002"],
                "click_id": "fbclid.IwAR3x",
                "landing_url": "https://acme.example/products/tee?utm_source=meta",
                "cost": {"amount_minor": 137, "currency": "USD"},
            },
            {
                "touchpoint_id": f"{run}-view",
                "kind": "engaged_view",
                "channel": "tiktok",
                "occurred_at": now_iso(20),
                "customer_key": "ck_" + "ab" * 20,
            },
            {
                "touchpoint_id": f"{run}-post",
                "kind": "content_view",
                "channel": "blog",
                "occurred_at": now_iso(10),
                "customer_id": "7430012345678901234",  # beyond 2^53: a string, kept exact
                "content_id": "summer-lookbook",
            },
        ]
    }


def metric_line(text: str, name: str, **labels: str) -> float:
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{shown}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_touchpoints_are_acked_once_in_kafka_and_carry_no_email(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    run = uuid.uuid4().hex
    email = f"Ann.{run}@Example.COM"
    before = watermarks(settings)
    response = await http.post(
        "/events/touchpoints",
        content=json.dumps(a_batch(run, email)),
        headers=bearer("acme-shopify"),
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    expected_ids = [
        feeds.touchpoint_event_id("acme-shopify", f"{run}-{suffix}")
        for suffix in ("click", "view", "post")
    ]
    assert answer == {"accepted": 3, "event_ids": expected_ids}

    # The 200 came after the acks, so the records are readable now.
    published = read_published(settings, TOUCHPOINTS, before[TOUCHPOINTS], SERDE)
    mine = {p.decoded["envelope"]["event_id"]: p for p in published}
    click, view, post = (mine[i] for i in expected_ids)
    assert click.decoded["customer_key"] == customer_key(CUSTOMER_SALT, email)
    assert click.decoded["cost"] == {"amount_minor": 137, "currency": "USD"}
    assert click.decoded["product_ids"] == ["8001", "8002"]
    assert click.decoded["kind"] == "ad_click"
    assert view.decoded["customer_key"] == "ck_" + "ab" * 20
    assert post.decoded["customer_key"] == customer_key_for_id(
        CUSTOMER_SALT, "acme-shopify", "7430012345678901234"
    )
    for record in (click, view, post):
        envelope = record.decoded["envelope"]
        assert (envelope["store_id"], envelope["platform"], envelope["source"]) == (
            "acme-shopify",
            "shopify",
            "api",
        )
        assert envelope["caused_by"] == []
        assert record.key == f"acme-shopify/{record.decoded['customer_key']}".encode()
    # No form of the email reaches Kafka, in any message written meanwhile.
    for message in published:
        for form in (email, email.lower()):
            assert form.encode() not in message.key
            assert form.encode() not in message.value
    assert email not in response.text
    metrics = (await http.get("/metrics")).text
    assert (
        metric_line(
            metrics, "revloop_ingest_feed_records_total", feed="touchpoints", outcome="accepted"
        )
        == 3
    )


async def test_a_retried_batch_yields_the_same_event_ids(client: Any, settings: Settings) -> None:
    http, _ = client
    run = uuid.uuid4().hex
    content = json.dumps(a_batch(run, f"bob.{run}@example.com"))
    before = watermarks(settings)
    first = await http.post("/events/touchpoints", content=content, headers=bearer("acme-shopify"))
    second = await http.post("/events/touchpoints", content=content, headers=bearer("acme-shopify"))
    assert first.status_code == second.status_code == 200
    assert first.json()["event_ids"] == second.json()["event_ids"]
    published = read_published(settings, TOUCHPOINTS, before[TOUCHPOINTS], SERDE)
    ids = [p.decoded["envelope"]["event_id"] for p in published]
    for event_id in first.json()["event_ids"]:
        assert ids.count(event_id) == 2  # written twice, one id: downstream dedupes


async def test_campaign_links_are_published_per_campaign_and_product(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    campaign = f"cmp-{uuid.uuid4().hex[:12]}"
    links = {
        "links": [
            {
                "campaign_id": campaign,
                "product_id": "501",
                "channel": "google",
                "occurred_at": now_iso(5),
            },
            {
                "campaign_id": campaign,
                "product_id": "502",
                "channel": "google",
                "active": False,
                "occurred_at": now_iso(4),
            },
        ]
    }
    before = watermarks(settings)
    response = await http.post(
        "/events/campaigns", content=json.dumps(links), headers=bearer("shop-woo")
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    published = read_published(settings, LINKS, before[LINKS], SERDE)
    mine = {p.decoded["product_id"]: p for p in published if p.decoded["campaign_id"] == campaign}
    assert mine.keys() == {"501", "502"}
    assert (mine["501"].decoded["active"], mine["502"].decoded["active"]) == (True, False)
    assert mine["502"].key == f"shop-woo/{campaign}/502".encode()
    envelope = mine["501"].decoded["envelope"]
    assert (envelope["store_id"], envelope["platform"], envelope["source"]) == (
        "shop-woo",
        "woocommerce",
        "api",
    )
    assert [mine[p].decoded["envelope"]["event_id"] for p in ("501", "502")] == (
        response.json()["event_ids"]
    )
    assert watermarks(settings)[TOUCHPOINTS] == before[TOUCHPOINTS]


async def test_campaign_spend_is_published_per_campaign(client: Any, settings: Settings) -> None:
    http, _ = client
    campaign = f"cmp-{uuid.uuid4().hex[:12]}"
    today = now_iso(0)[:10]
    reports = {
        "spend": [
            {
                "channel": "google",
                "campaign_id": campaign,
                "day": today,
                "spend": {"amount_minor": 4_250, "currency": "USD"},
                "reported_at": now_iso(5),
            }
        ]
    }
    before = watermarks(settings)
    response = await http.post(
        "/events/spend", content=json.dumps(reports), headers=bearer("shop-woo")
    )
    assert response.status_code == 200, response.text
    published = read_published(settings, SPEND, before[SPEND], SERDE)
    (mine,) = [p for p in published if p.decoded["campaign_id"] == campaign]
    assert mine.key == f"shop-woo/google/{campaign}".encode()
    assert mine.decoded["day"].isoformat() == today
    assert mine.decoded["spend"] == {"amount_minor": 4_250, "currency": "USD"}
    assert mine.decoded["envelope"]["event_id"] == response.json()["event_ids"][0]
    negative = {
        "spend": [{**reports["spend"][0], "spend": {"amount_minor": -1, "currency": "USD"}}]
    }
    refused = await http.post(
        "/events/spend", content=json.dumps(negative), headers=bearer("shop-woo")
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "spend.amount_minor"


async def test_missing_wrong_and_other_stores_keys_get_401_and_publish_nothing(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    content = json.dumps(a_batch(uuid.uuid4().hex, "carol@example.com"))
    acme_key = API_KEYS["acme-shopify"]
    before = watermarks(settings)
    refused = {
        "missing_key": [{}, {"authorization": "Basic YTpi"}, {"authorization": "Bearer "}],
        "bad_key": [
            {"authorization": "Bearer rlk_nope"},
            {"authorization": f"Bearer {acme_key[:-2]}xx"},
            # This store's secret part under another store's name, and a store with no keys.
            {"authorization": f"Bearer {acme_key.replace('acme-shopify', 'shop-woo')}"},
            {"authorization": f"Bearer {acme_key.replace('acme-shopify', 'bc-store')}"},
        ],
    }
    for reason, variants in refused.items():
        for headers in variants:
            for route in ("/events/touchpoints", "/events/campaigns"):
                response = await http.post(
                    route, content=content, headers={"content-type": "application/json", **headers}
                )
                assert response.status_code == 401, (route, headers)
                assert response.json()["reason"] == reason
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert acme_key not in response.text
    # A revoked key (the registry no longer holds its hash) is refused too.
    revoked = make_service(settings, stores=make_registry())
    async with serve(revoked) as other:
        response = await other.post(
            "/events/touchpoints", content=content, headers=bearer("acme-shopify")
        )
        assert (response.status_code, response.json()["reason"]) == (401, "bad_key")
    assert watermarks(settings) == before
    metrics = (await http.get("/metrics")).text
    name = "revloop_ingest_feed_requests_total"
    assert metric_line(metrics, name, feed="touchpoints", outcome="rejected", reason="bad_key") == 4
    assert (
        metric_line(metrics, name, feed="campaigns", outcome="rejected", reason="missing_key") == 3
    )
    assert acme_key not in metrics


async def test_invalid_batches_get_422_with_every_item_error_and_publish_nothing(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    email = f"dave.{uuid.uuid4().hex}@example.com"
    good = {
        "touchpoint_id": "ok",
        "kind": "ad_view",
        "channel": "meta",
        "occurred_at": now_iso(),
        "email": email,
    }
    batch = {
        "touchpoints": [
            good,
            {**good, "touchpoint_id": "f", "cost": {"amount_minor": 12.5, "currency": "USD"}},
            {**good, "touchpoint_id": "n", "product_ids": [8001]},
            {**good, "touchpoint_id": "b", "customer_key": "ck_" + "0" * 40},
            {**good, "touchpoint_id": "k", "kind": "impression"},
            {**good, "touchpoint_id": 17},
        ]
    }
    before = watermarks(settings)
    response = await http.post(
        "/events/touchpoints", content=json.dumps(batch), headers=bearer("acme-shopify")
    )
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["reason"] == "invalid"
    assert {(e["index"], e["field"]) for e in answer["errors"]} == {
        (1, "cost.amount_minor"),
        (2, "product_ids[0]"),
        (3, "email/customer_key/customer_id"),
        (4, "kind"),
        (5, "touchpoint_id"),
    }
    assert all(e["message"] for e in answer["errors"])
    assert email not in response.text

    numeric = {
        "links": [
            {"campaign_id": 1, "product_id": "2", "channel": "meta", "occurred_at": now_iso()}
        ]
    }
    response = await http.post(
        "/events/campaigns", content=json.dumps(numeric), headers=bearer("shop-woo")
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"index": 0, "field": "campaign_id", "message": response.json()["errors"][0]["message"]}
    ]
    broken = await http.post(
        "/events/touchpoints", content=b'{"touchpoints": [', headers=bearer("acme-shopify")
    )
    assert (broken.status_code, broken.json()["reason"]) == (400, "bad_json")
    assert watermarks(settings) == before
    metrics = (await http.get("/metrics")).text
    name = "revloop_ingest_feed_requests_total"
    assert metric_line(metrics, name, feed="touchpoints", outcome="rejected", reason="invalid") == 1
    assert (
        metric_line(metrics, name, feed="touchpoints", outcome="rejected", reason="bad_json") == 1
    )


async def test_oversized_and_non_json_bodies_get_413_and_415(
    client: Any, settings: Settings
) -> None:
    http, _ = client
    before = watermarks(settings)
    big = json.dumps({"touchpoints": [], "pad": "x" * (64 * 1024)})
    response = await http.post("/events/touchpoints", content=big, headers=bearer("acme-shopify"))
    assert (response.status_code, response.json()["reason"]) == (413, "too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap applies while reading
        for _ in range(70):
            yield b"x" * 1024

    streamed = await http.post("/events/campaigns", content=chunked(), headers=bearer("shop-woo"))
    assert streamed.status_code == 413
    as_form = {**bearer("acme-shopify"), "content-type": "application/x-www-form-urlencoded"}
    response = await http.post("/events/touchpoints", content=b"touchpoints=1", headers=as_form)
    assert (response.status_code, response.json()["reason"]) == (415, "unsupported_media_type")
    with_charset = {**bearer("shop-woo"), "content-type": "Application/JSON; charset=utf-8"}
    response = await http.post("/events/campaigns", content=b"{}", headers=with_charset)
    assert response.status_code == 422  # the media type was accepted; the body was not
    assert watermarks(settings) == before


# --- Kafka cannot take the batch ------------------------------------------------------------


@pytest.fixture
def unreachable_kafka() -> Settings:
    """Settings naming a port where no broker listens: every publish times out."""
    [port] = free_ports(1)
    return Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")


async def test_no_ack_in_time_means_503_and_the_retry_stores_the_same_ids(
    unreachable_kafka: Settings, settings: Settings, feed_topics: None
) -> None:
    run = uuid.uuid4().hex
    content = json.dumps(a_batch(run, f"erin.{run}@example.com"))
    down = make_service(unreachable_kafka, ack_timeout=1.0)
    async with serve(down) as http:
        refused = await http.post(
            "/events/touchpoints", content=content, headers=bearer("acme-shopify")
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["reason"] == "kafka"
        metrics = (await http.get("/metrics")).text
        assert (
            metric_line(
                metrics,
                "revloop_ingest_feed_records_total",
                feed="touchpoints",
                outcome="unavailable",
            )
            == 3
        )

    before = watermarks(settings)
    async with serve(make_service(settings)) as http:  # the client retries the whole batch
        retried = await http.post(
            "/events/touchpoints", content=content, headers=bearer("acme-shopify")
        )
    assert retried.status_code == 200, retried.text
    expected = [
        feeds.touchpoint_event_id("acme-shopify", f"{run}-{s}") for s in ("click", "view", "post")
    ]
    assert retried.json()["event_ids"] == expected
    stored = [
        p.decoded["envelope"]["event_id"]
        for p in read_published(settings, TOUCHPOINTS, before[TOUCHPOINTS], SERDE)
    ]
    assert sorted(i for i in stored if i in expected) == sorted(expected)


# --- wiring -------------------------------------------------------------------------------


@pytest.fixture
def registry_file(tmp_path: Path) -> tuple[Path, SecretStr]:
    keys = SecretStr(new_master_key("k1"))
    path = tmp_path / "stores.json"
    make_feed_registry().save(path, SecretBox.from_settings(Settings(master_keys=keys)))
    return path, keys


def test_the_service_needs_the_customer_key_salt(
    registry_file: tuple[Path, SecretStr], settings: Settings
) -> None:
    path, keys = registry_file
    unsalted = settings.model_copy(update={"stores_file": path, "master_keys": keys})
    unsalted = unsalted.model_copy(update={"customer_key_salt": None})
    with pytest.raises(ValueError, match="REVLOOP_CUSTOMER_KEY_SALT"):
        build_service(unsalted)
    salted = unsalted.model_copy(update={"customer_key_salt": SecretStr("pepper")})
    service = build_service(salted)
    try:
        assert service.customer_salt == b"pepper"
        assert "pepper" not in repr(service)
        loaded = service.stores.get("acme-shopify")
        assert loaded is not None
        assert loaded.accepts_api_key(API_KEYS["acme-shopify"])
    finally:
        service.publisher.close(timeout=2)
