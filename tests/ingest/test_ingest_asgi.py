"""The webhook fast path in front of FastAPI, driven as raw ASGI. The publisher and the store
lookup are stand-ins for our own collaborators (no Kafka here: tests/ingest/test_ingest_app.py
covers the real broker)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.app import IngestService, create_app
from ingest.metrics import IngestMetrics
from ingest.publisher import PublishUnavailable
from platforms import shopify
from revloop.settings import Settings
from revloop.stores import Store
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from tests.ingest_support import SHOP_SECRET, make_registry, shopify_delivery

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


def service(
    stores: Any = None, body_timeout_seconds: float = 10.0
) -> tuple[IngestService, RecordingPublisher]:
    publisher = RecordingPublisher()
    return (
        IngestService(
            stores=stores or make_registry(),
            publisher=publisher,  # type: ignore[arg-type]
            serde=AvroSerde(CommittedCatalogue.load()),
            metrics=IngestMetrics(),
            settings=Settings(ingest_body_timeout_seconds=body_timeout_seconds),
        ),
        publisher,
    )


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
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


def call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], messages: list[Any]
) -> tuple[int | None, dict[str, Any] | None]:
    status, _, reply = call_with_headers(app, method, path, headers, messages)
    return status, reply


def call_with_headers(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], messages: list[Any]
) -> tuple[int | None, dict[bytes, bytes], dict[str, Any] | None]:
    """Drives ``app`` with ``messages`` as the request; once they run out, ``receive`` waits
    (a client that stalls)."""
    scope = http_scope(method, path, headers)
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    status = None if start is None else start["status"]
    response_headers = {} if start is None else dict(start["headers"])
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, response_headers, (json.loads(body) if body else None)


def outcome(svc: IngestService, outcome: str, reason: str, topic: str = "unverified") -> float:
    labels = {"platform": "shopify", "topic": topic, "outcome": outcome, "reason": reason}
    return svc.metrics.registry.get_sample_value("revloop_ingest_deliveries_total", labels) or 0


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
    assert outcome(svc, "abandoned", "client_disconnected") == 1


def test_an_unexpected_error_is_a_500_with_no_detail_counted_and_closing() -> None:
    svc, publisher = service(BrokenStores())
    status, headers, reply = call_with_headers(
        create_app(svc), "POST", "/webhooks/shopify", signed(), whole(BODY)
    )
    assert (status, reply) == (500, {"error": "internal error"})
    assert headers[b"connection"] == b"close"
    assert publisher.published == []
    assert outcome(svc, "error", "internal") == 1


def test_a_body_that_stalls_gets_408_at_the_deadline_and_the_task_is_not_left_cancelled() -> None:
    svc, publisher = service(body_timeout_seconds=0.2)
    app = create_app(svc)
    cancelling: list[int] = []

    async def then_carry_on(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        task = asyncio.current_task()
        assert task is not None
        cancelling.append(task.cancelling())
        await asyncio.sleep(0.01)  # a cancellation left pending would surface here

    partial = [{"type": "http.request", "body": BODY[:3], "more_body": True}]
    started = time.monotonic()
    status, headers, reply = call_with_headers(
        then_carry_on, "POST", "/webhooks/shopify", signed(), partial
    )
    elapsed = time.monotonic() - started
    assert status == 408 and reply is not None and reply["reason"] == "timeout"
    assert headers[b"connection"] == b"close"
    assert 0.2 <= elapsed < 1.0
    assert cancelling == [0]
    assert publisher.published == []
    assert outcome(svc, "rejected", "timeout") == 1


def test_a_body_that_never_starts_gets_408_too() -> None:
    svc, _ = service(body_timeout_seconds=0.1)
    status, headers, _ = call_with_headers(
        create_app(svc), "POST", "/webhooks/shopify", signed(), []
    )
    assert (status, headers[b"connection"]) == (408, b"close")


def test_each_read_gets_its_own_deadline_among_many_open_ones() -> None:
    """Stalled reads started 10 ms apart each get their 408 at their own deadline, while reads
    that finish in time among them are served, and nothing stays registered afterwards."""
    svc, publisher = service(body_timeout_seconds=0.2)
    app = create_app(svc)
    results: dict[int, tuple[int, float]] = {}

    async def one(i: int, stalls: bool) -> None:
        await asyncio.sleep(i * 0.01)
        started = time.monotonic()
        pending = [{"type": "http.request", "body": BODY[:3], "more_body": True}]
        if not stalls:
            pending.append({"type": "http.request", "body": BODY[3:], "more_body": False})

        async def receive() -> Any:
            if len(pending) == 1 and not stalls:
                await asyncio.sleep(0.05)  # slow, but well within the deadline
            if pending:
                return pending.pop(0)
            await asyncio.sleep(3600)

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                results[i] = (message["status"], time.monotonic() - started)

        await app(http_scope("POST", "/webhooks/shopify", signed()), receive, send)

    async def run() -> None:
        await asyncio.gather(*(one(i, stalls=i % 2 == 0) for i in range(40)))

    asyncio.run(run())
    for i, (status, elapsed) in sorted(results.items()):
        if i % 2 == 0:
            assert status == 408 and 0.19 <= elapsed < 0.35, (i, status, elapsed)
        else:
            assert status == 200 and elapsed < 0.19, (i, status, elapsed)
    assert len(results) == 40 and len(publisher.published) == 20
    assert outcome(svc, "rejected", "timeout") == 20
    deadlines = svc._body_deadlines
    assert not deadlines._reading and not deadlines._expired


def test_a_task_cancelled_by_someone_else_too_stays_cancelled() -> None:
    """The body deadline owns only its own cancellation: when the task is also cancelled from
    elsewhere (a server shutting down), it ends cancelled, with no 408."""
    svc, _ = service(body_timeout_seconds=0.05)
    sent: list[Any] = []

    async def receive() -> Any:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # the body deadline's cancellation...
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # ...and, at the same moment, someone else's
            raise

    async def send(message: Any) -> None:
        sent.append(message)

    async def run() -> None:
        scope = http_scope("POST", "/webhooks/shopify", signed())
        task = asyncio.create_task(create_app(svc)(scope, receive, send))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert sent == []
    assert outcome(svc, "rejected", "timeout") == 0


def test_the_settings_refuse_a_body_timeout_that_is_not_positive() -> None:
    for timeout in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ingest_body_timeout_seconds"):
            service(body_timeout_seconds=timeout)


def test_other_methods_and_paths_go_to_the_api_app() -> None:
    svc, _ = service()
    app = create_app(svc)
    status, headers, _ = call_with_headers(app, "GET", "/webhooks/shopify", [], [])
    assert status == 405
    assert headers[b"allow"] == b"POST" and headers[b"connection"] == b"close"
    assert outcome(svc, "rejected", "method_not_allowed") == 1
    assert call(app, "POST", "/webhooks/magento", signed(), whole(BODY))[0] == 404
    assert call(app, "GET", "/healthz", [], []) == (200, {"status": "ok"})


class UnavailablePublisher(RecordingPublisher):
    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        raise PublishUnavailable("no ack in time")


@pytest.mark.parametrize("seconds", [5, 17])
def test_a_503_asks_for_a_retry_after_the_configured_seconds(seconds: int) -> None:
    svc = IngestService(
        stores=make_registry(),
        publisher=UnavailablePublisher(),  # type: ignore[arg-type]
        serde=AvroSerde(CommittedCatalogue.load()),
        metrics=IngestMetrics(),
        settings=Settings(ingest_retry_after_seconds=seconds),
    )
    body = b'{"id": 1, "line_items": []}'

    async def read_body(_limit: int) -> bytes:
        return body

    reply = asyncio.run(svc.receive("shopify", shopify_delivery(body, "w-1"), read_body))
    assert reply.status == 503
    assert reply.headers["Retry-After"] == str(seconds)
