"""The webhook fast path in front of FastAPI, driven as raw ASGI. The publisher and the store
lookup are stand-ins for our own collaborators (no Kafka here: tests/test_ingest_app.py covers
the real broker)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from ingest import shopify
from ingest.app import IngestService, create_app
from ingest.metrics import IngestMetrics
from ingest.stores import Store
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from tests.ingest_support import SHOP_SECRET, make_registry

BODY = b'{"id": 1}'


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, bytes]] = []

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        self.published.append((topic, key, value))

    async def ready(self) -> bool:
        return True


class BrokenStores:
    def lookup(self, platform: str, identity: str) -> Store | None:
        raise RuntimeError("registry exploded")

    def verification_keys(self, platform: str, now: datetime) -> frozenset[bytes]:
        return frozenset()

    def get(self, store_id: str) -> Store | None:
        return None


def service(stores: Any = None) -> tuple[IngestService, RecordingPublisher]:
    publisher = RecordingPublisher()
    return (
        IngestService(
            stores=stores or make_registry(),
            publisher=publisher,  # type: ignore[arg-type]
            serde=AvroSerde(CommittedCatalogue.load()),
            metrics=IngestMetrics(),
        ),
        publisher,
    )


def call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], messages: list[Any]
) -> tuple[int | None, dict[str, Any] | None]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("ingest", 80),
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, (json.loads(body) if body else None)


def signed(body: bytes = BODY) -> list[tuple[bytes, bytes]]:
    headers = shopify.signed_headers(
        body,
        SHOP_SECRET,
        shop_domain="acme.myshopify.com",
        topic="orders/create",
        webhook_id="w-1",
        triggered_at=datetime.now(UTC),
    )
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def whole(body: bytes) -> list[Any]:
    return [{"type": "http.request", "body": body, "more_body": False}]


def test_a_signed_delivery_is_published_once_and_answered_with_its_event_id() -> None:
    svc, publisher = service()
    status, reply = call(create_app(svc), "POST", "/webhooks/shopify", signed(), whole(BODY))
    assert status == 200 and reply is not None and reply["status"] == "accepted"
    assert len(publisher.published) == 1


def test_a_body_sent_in_chunks_is_reassembled_before_verification() -> None:
    svc, publisher = service()
    chunks = [
        {"type": "http.request", "body": BODY[:3], "more_body": True},
        {"type": "http.request", "body": BODY[3:], "more_body": False},
    ]
    assert call(create_app(svc), "POST", "/webhooks/shopify", signed(), chunks)[0] == 200
    assert len(publisher.published) == 1


def test_the_first_of_repeated_headers_is_the_one_verified() -> None:
    svc, _ = service()
    headers = signed()
    forged = [(k, b"AAAA") for k, v in headers if k == b"x-shopify-hmac-sha256"]
    assert (
        call(create_app(svc), "POST", "/webhooks/shopify", headers + forged, whole(BODY))[0] == 200
    )
    assert (
        call(create_app(svc), "POST", "/webhooks/shopify", forged + headers, whole(BODY))[0] == 401
    )


def test_a_client_that_leaves_mid_body_gets_no_answer_and_nothing_is_published() -> None:
    svc, publisher = service()
    messages = [
        {"type": "http.request", "body": BODY[:3], "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert call(create_app(svc), "POST", "/webhooks/shopify", signed(), messages) == (None, None)
    assert publisher.published == []


def test_an_unexpected_error_is_a_500_with_no_detail() -> None:
    svc, publisher = service(BrokenStores())
    status, reply = call(create_app(svc), "POST", "/webhooks/shopify", signed(), whole(BODY))
    assert (status, reply) == (500, {"error": "internal error"})
    assert publisher.published == []


def test_other_methods_and_paths_go_to_the_api_app() -> None:
    svc, _ = service()
    app = create_app(svc)
    assert call(app, "GET", "/webhooks/shopify", [], [])[0] == 405
    assert call(app, "POST", "/webhooks/magento", signed(), whole(BODY))[0] == 404
    assert call(app, "GET", "/healthz", [], []) == (200, {"status": "ok"})
