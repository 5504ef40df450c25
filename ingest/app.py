"""The ingest HTTP service: verified webhooks in, durable raw records out.

Order of checks: body size (413), content type (415), signature on the raw bytes (401), then the
raw record is published and acknowledged by Kafka before the 200. Normalization into canonical
events happens downstream of the raw topic, so the accept path stays short.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest import bigcommerce, shopify, woocommerce
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher, PublishUnavailable
from ingest.webhooks import Rejected, StoreLookup, raw_record
from schemas.serde import AvroSerde
from schemas.topics import topic

RAW_TOPIC = topic("raw.webhooks.v1")
(RAW_RECORD,) = RAW_TOPIC.values
PLATFORMS: Mapping[str, ModuleType] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
    "bigcommerce": bigcommerce,
}


class BodyTooLarge(Exception):
    pass


@dataclass
class IngestService:
    stores: StoreLookup
    publisher: DurablePublisher
    serde: AvroSerde
    metrics: IngestMetrics
    max_body_bytes: int = 1 << 20
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def receive(self, platform: str, request: Request) -> Response:
        module = PLATFORMS[platform]
        started = time.perf_counter()
        self.metrics.received.labels(platform).inc()
        self.metrics.in_flight.inc()
        try:
            return await self._receive(platform, module, request)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.request_seconds.labels(platform).observe(time.perf_counter() - started)

    async def _receive(self, platform: str, module: ModuleType, request: Request) -> Response:
        received_at = self.clock()
        try:
            body = await _read_capped(request, self.max_body_bytes)
        except BodyTooLarge:
            return self._refuse(
                platform, 413, "too_large", f"body over {self.max_body_bytes} bytes"
            )
        headers = request.headers
        if platform == "woocommerce" and woocommerce.is_ping(body, headers):
            self._count(platform, "ping", "ignored", "ping")
            return JSONResponse({"status": "ok"})
        content_type = headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return self._refuse(
                platform, 415, "unsupported_media_type", "expected application/json"
            )
        try:
            delivery = module.authenticate(body, headers, self.stores, received_at)
        except Rejected as rejected:
            return self._refuse(platform, rejected.status, rejected.reason, str(rejected))
        topic_label = delivery.topic if delivery.topic in module.TOPICS else "unknown"
        record = raw_record(delivery, body, content_type, received_at)
        publish_started = time.perf_counter()
        try:
            await self.publisher.publish(
                RAW_TOPIC.name, RAW_TOPIC.message_key(record), self.serde.encode(RAW_RECORD, record)
            )
        except PublishUnavailable:
            self._count(platform, topic_label, "unavailable", "kafka")
            return JSONResponse(
                {"error": "temporarily unavailable; retry"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        self.metrics.publish_seconds.observe(time.perf_counter() - publish_started)
        self._count(platform, topic_label, "accepted", "")
        return JSONResponse({"status": "accepted", "event_id": delivery.event_id})

    def _refuse(self, platform: str, status: int, reason: str, message: str) -> Response:
        # Unverified requests choose their own headers, so their topic is never a label value.
        self._count(platform, "unverified", "rejected", reason)
        return JSONResponse({"error": message, "reason": reason}, status_code=status)

    def _count(self, platform: str, topic_label: str, outcome: str, reason: str) -> None:
        self.metrics.outcomes.labels(platform, topic_label, outcome, reason).inc()


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _webhook_handler(service: IngestService, platform: str) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        return await service.receive(platform, request)

    handler.__name__ = f"receive_{platform}_webhook"
    return handler


def create_app(service: IngestService, on_shutdown: Callable[[], Any] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title="revloop ingest", lifespan=lifespan)

    for platform in PLATFORMS:
        app.add_api_route(
            f"/webhooks/{platform}",
            _webhook_handler(service, platform),
            methods=["POST"],
            name=f"webhook_{platform}",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if await service.publisher.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "kafka unreachable"}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(
            generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    return app
