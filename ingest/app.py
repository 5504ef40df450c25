"""The ingest HTTP service: verified webhooks in, durable raw records out.

Order of checks: method (405), body size (413) and body deadline (408), content type (415),
signature on the raw bytes (401), then the raw record is published and acknowledged by Kafka before
the 200. Normalization into canonical events happens downstream of the raw topic, so the accept
path stays short.

The marketing feeds (``POST /events/touchpoints``, ``/events/campaigns``, ``/events/spend``) check
the API key (401), content type (415), body size (413) and deadline (408), then validate the whole
batch (400/422, see ingest/feeds.py) and answer 200 once Kafka has acked every record of it (503
otherwise).

An answer given before the whole body was read (405, 408, 413, a feed's 401 and 415, a 500)
carries ``Connection: close``: uvicorn then closes the socket right after the answer instead of
reading and discarding the rest of the body (docs/ingest.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from ingest import feeds
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher, PublishUnavailable
from platforms import PLATFORMS, woocommerce
from platforms.webhooks import Delivery, Rejected, StoreLookup, raw_record
from revloop.settings import Settings
from revloop.stores import Store
from schemas.serde import AvroSerde
from schemas.topics import topic, topic_for_record

log = logging.getLogger(__name__)

RAW_TOPIC = topic("raw.webhooks.v1")
(RAW_RECORD,) = RAW_TOPIC.values


FEEDS: Mapping[str, str] = {
    "touchpoints": feeds.TOUCHPOINT,
    "campaigns": feeds.CAMPAIGN_LINK,
    "spend": feeds.CAMPAIGN_SPEND,
}
"""Feed name (the route's last segment and the metric label) → the record type it publishes."""
_CLOSE = {"Connection": "close"}
"""For answers given with the body (maybe) unread: uvicorn closes the connection after sending
them, where it would otherwise read the rest of the body and throw it away."""


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    """The client did not send its whole body before the body deadline."""


BodyReader = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True)
class Reply:
    """A webhook answer: status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: int, content: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> Reply:
        return cls(status, json.dumps(content).encode(), headers or {})

    @classmethod
    def accepted(cls, event_id: str) -> Reply:
        # Formatted by hand: json.dumps costs more than the rest of the reply. Event ids are
        # UUIDs (hex and hyphens), so nothing needs escaping.
        return cls(200, b'{"status": "accepted", "event_id": "%s"}' % event_id.encode())


class IngestStores(StoreLookup, feeds.FeedStores, Protocol):
    """Webhooks find stores by identity; the feeds find them by the id their API key names."""


@dataclass
class IngestService:
    stores: IngestStores
    publisher: DurablePublisher
    serde: AvroSerde
    metrics: IngestMetrics
    settings: Settings
    """Its knobs: ``ingest_max_body_bytes``, ``ingest_body_timeout_seconds`` (the whole body
    must arrive within it, or 408 and the connection is closed), ``stores_check_seconds``,
    ``ingest_retry_after_seconds`` and ``topic_prefix``."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    customer_salt: bytes = field(default=b"", repr=False)
    """Turns touchpoint emails and customer ids into customer keys (revloop/privacy.py)."""
    refresh_stores: Callable[[], bool] | None = None
    """Reads the stores file again if it changed (``LiveStoreRegistry.refresh``); the app calls
    it every ``stores_check_seconds``, off the event loop."""
    on_accepted: Callable[[Delivery], Awaitable[None]] | None = None
    """Called once a delivery is published (the composition root's: onboarding forgets an
    uninstalled store's token). Its failure is logged; the delivery stays accepted."""
    raw_topic: str = field(init=False)
    max_body_bytes: int = field(init=False)
    body_timeout_seconds: float = field(init=False)
    _retry_after: dict[str, str] = field(init=False, repr=False)
    _in_flight: int = field(default=0, init=False, repr=False)
    _body_deadlines: BodyDeadlines = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.max_body_bytes = self.settings.ingest_max_body_bytes
        self.body_timeout_seconds = self.settings.ingest_body_timeout_seconds
        self._retry_after = {"Retry-After": str(self.settings.ingest_retry_after_seconds)}
        self.raw_topic = self.settings.topic_name(RAW_TOPIC)
        self._body_deadlines = BodyDeadlines()
        # Read at scrape time: cheaper than a gauge update on every request.
        self.metrics.in_flight.set_function(lambda: self._in_flight)

    def body_reader(self, headers: Mapping[str, str], receive: Receive) -> BodyReader:
        """Reads the request body from ASGI ``receive`` (BodyTooLarge, BodyTimeout, ClientGone)."""
        return _body_reader(headers, receive, self._body_deadlines, self.body_timeout_seconds)

    async def receive(
        self, platform: str, headers: Mapping[str, str], read_body: BodyReader
    ) -> Reply:
        """One webhook delivery. ``headers`` have lower-case names; ``read_body(limit)`` returns
        the body or raises BodyTooLarge."""
        module = PLATFORMS[platform]
        started = time.perf_counter()
        self.metrics.labelled(self.metrics.received, platform).inc()
        self._in_flight += 1
        try:
            return await self._receive(platform, module, headers, read_body)
        finally:
            self._in_flight -= 1
            elapsed = time.perf_counter() - started
            self.metrics.labelled(self.metrics.request_seconds, platform).observe(elapsed)

    async def _receive(
        self,
        platform: str,
        module: ModuleType,
        headers: Mapping[str, str],
        read_body: BodyReader,
    ) -> Reply:
        received_at = self.clock()
        try:
            body = await read_body(self.max_body_bytes)
        except BodyTooLarge:
            return self._refuse(
                platform, 413, "too_large", f"body over {self.max_body_bytes} bytes", _CLOSE
            )
        except BodyTimeout:
            return self._refuse(platform, 408, "timeout", self._timeout_message(), _CLOSE)
        if platform == "woocommerce" and woocommerce.is_ping(body, headers):
            self._count(platform, "ping", "ignored", "ping")
            return Reply.json(200, {"status": "ok"})
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
                self.raw_topic, RAW_TOPIC.message_key(record), self.serde.encode(RAW_RECORD, record)
            )
        except PublishUnavailable:
            self._count(platform, topic_label, "unavailable", "kafka")
            return Reply.json(503, {"error": "temporarily unavailable; retry"}, self._retry_after)
        self.metrics.publish_seconds.observe(time.perf_counter() - publish_started)
        self._count(platform, topic_label, "accepted", "")
        if self.on_accepted is not None:
            try:
                await self.on_accepted(delivery)
            except Exception:  # the delivery is safe in Kafka whatever this does
                log.exception("after accepting %s of %s", delivery.topic, delivery.store.store_id)
        return Reply.accepted(delivery.event_id)

    async def watch_stores(self) -> None:
        """Runs for the app's lifetime: a store added or a key rotated is served within
        ``stores_check_seconds``, with no restart."""
        if self.refresh_stores is None:
            return
        while True:
            await asyncio.sleep(self.settings.stores_check_seconds)
            try:
                if not await asyncio.to_thread(self.refresh_stores):
                    continue
            except Exception as exc:  # a half-edited or foreign file must not stop ingest
                self.metrics.store_reloads.labels("failed").inc()
                log.error("stores file changed but did not load; previous stores kept: %s", exc)
                continue
            self.metrics.store_reloads.labels("loaded").inc()
            log.info("stores file changed; now serving what it holds")

    # Answers the app gives outside ``receive``; each counts, so every delivery received has
    # exactly one outcome.

    def method_not_allowed(self, platform: str) -> Reply:
        self.metrics.labelled(self.metrics.received, platform).inc()
        headers = {"Allow": "POST", **_CLOSE}
        return self._refuse(platform, 405, "method_not_allowed", "POST only", headers)

    def internal_error(self, platform: str) -> Reply:
        self._count(platform, "unverified", "error", "internal")
        return Reply.json(500, {"error": "internal error"}, _CLOSE)

    def client_gone(self, platform: str) -> None:
        """The client left before sending its whole body: no answer, but an outcome."""
        self._count(platform, "unverified", "abandoned", "client_disconnected")

    def _refuse(
        self,
        platform: str,
        status: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        # Unverified requests choose their own headers, so their topic is never a label value.
        self._count(platform, "unverified", "rejected", reason)
        return Reply.json(status, {"error": message, "reason": reason}, headers)

    def _timeout_message(self) -> str:
        return f"body not received within {self.body_timeout_seconds:g} s"

    def _count(self, platform: str, topic_label: str, outcome: str, reason: str) -> None:
        self.metrics.labelled(self.metrics.outcomes, platform, topic_label, outcome, reason).inc()

    # --- marketing feeds ------------------------------------------------------------------

    async def receive_feed(self, feed: str, request: Request) -> Response:
        record_name = FEEDS[feed]
        started = time.perf_counter()
        try:
            return await self._receive_feed(feed, record_name, request)
        finally:
            self.metrics.feed_request_seconds.labels(feed).observe(time.perf_counter() - started)

    async def _receive_feed(self, feed: str, record_name: str, request: Request) -> Response:
        received_at = self.clock()
        try:
            store = feeds.authenticate(request.headers.get("authorization"), self.stores)
        except Rejected as rejected:
            challenge = 'Bearer realm="revloop"'
            if rejected.reason == "bad_key":
                challenge += ', error="invalid_token"'
            return self._refuse_feed(
                feed,
                rejected.status,
                {"error": str(rejected), "reason": rejected.reason},
                headers={"WWW-Authenticate": challenge, **_CLOSE},
            )
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return self._refuse_feed(
                feed,
                415,
                {"error": "expected application/json", "reason": "unsupported_media_type"},
                headers=_CLOSE,
            )
        try:
            body = await self.body_reader(request.headers, request.receive)(self.max_body_bytes)
        except BodyTooLarge:
            return self._refuse_feed(
                feed,
                413,
                {"error": f"body over {self.max_body_bytes} bytes", "reason": "too_large"},
                headers=_CLOSE,
            )
        except BodyTimeout:
            return self._refuse_feed(
                feed, 408, {"error": self._timeout_message(), "reason": "timeout"}, headers=_CLOSE
            )
        except ClientGone:
            # Nobody will read this answer (uvicorn drops it); it is here to be counted.
            return self._refuse_feed(
                feed,
                400,
                {"error": "client disconnected", "reason": "client_disconnected"},
                outcome="abandoned",
            )
        try:
            records = self._feed_records(feed, store, body, received_at)
        except feeds.InvalidBatch as invalid:
            return self._refuse_feed(feed, invalid.status, invalid.as_json())
        topic_ = topic_for_record(record_name)
        topic_name = self.settings.topic_name(topic_)
        # Encode everything before publishing anything: a record that does not fit its schema
        # fails the request with nothing written.
        messages = [(topic_.message_key(r), self.serde.encode(record_name, r)) for r in records]
        results = await asyncio.gather(
            *(self.publisher.publish(topic_name, key, value) for key, value in messages),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, PublishUnavailable):
                raise failure
        if failures:
            # Some records may be in Kafka already; the client retries the whole batch and the
            # deterministic event ids let consumers drop the repeats.
            self.metrics.feed_records.labels(feed, "unavailable").inc(len(records))
            return self._refuse_feed(
                feed,
                503,
                {"error": "temporarily unavailable; retry the batch", "reason": "kafka"},
                headers=self._retry_after,
                outcome="unavailable",
            )
        self.metrics.feed_records.labels(feed, "accepted").inc(len(records))
        self.metrics.feed_requests.labels(feed, "accepted", "").inc()
        event_ids = [r["envelope"]["event_id"] for r in records]
        return JSONResponse({"accepted": len(records), "event_ids": event_ids})

    def _feed_records(
        self, feed: str, store: Store, body: bytes, received_at: datetime
    ) -> list[dict[str, Any]]:
        if feed == "touchpoints":
            if not self.customer_salt:
                raise RuntimeError("IngestService.customer_salt is not set")
            items = feeds.parse_touchpoints(body, received_at)
            return feeds.touchpoint_records(store, items, self.customer_salt, received_at)
        if feed == "spend":
            reports = feeds.parse_campaign_spend(body, received_at)
            return feeds.campaign_spend_records(store, reports, received_at)
        links = feeds.parse_campaign_links(body, received_at)
        return feeds.campaign_link_records(store, links, received_at)

    def _refuse_feed(
        self,
        feed: str,
        status: int,
        content: dict[str, Any],
        headers: Mapping[str, str] | None = None,
        outcome: str = "rejected",
    ) -> Response:
        self.metrics.feed_requests.labels(feed, outcome, str(content["reason"])).inc()
        return JSONResponse(content, status_code=status, headers=headers)


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


class BodyDeadlines:
    """Bounds the time to read a body with no timer per request: a dict entry is cheaper than
    a ``loop.call_at`` handle or an ``asyncio.timeout()`` on every delivery (docs/ingest.md).

    Reads in progress are registered here with their deadline. One timer, set for the earliest
    deadline and only while some read is in progress, cancels the task of every read whose
    deadline has passed; the reader turns that cancellation into BodyTimeout. Under steady
    traffic the timer fires about once per timeout, since the read it was set for finished long
    before. Serves one event loop at a time (uvicorn runs one per worker process)."""

    def __init__(self) -> None:
        self._reading: dict[asyncio.Task[Any], float] = {}
        """Task → deadline of each read in progress, in registration order. The timeout is
        fixed, so deadlines ascend and the timer stops at the first read not yet due: each
        expiry costs what it expires, however many slow reads are open. (Were the timeout
        lowered while reads are open, a newer read would expire no later than the older.)"""
        self._expired: set[asyncio.Task[Any]] = set()
        """Tasks cancelled here whose reader has not yet seen the cancellation."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout: float) -> asyncio.Task[Any]:
        """Registers the current task's read, which must end with :meth:`finish`."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a body is read from a task")
        deadline = self._reading[task] = loop.time() + timeout
        if deadline < self._timer_at or self._timer_loop is not loop:
            self._arm(loop, deadline)
        return task

    def finish(self, task: asyncio.Task[Any]) -> None:
        self._reading.pop(task, None)
        if self._expired:  # a cancellation the reader never saw (receive swallowed it)
            self._expired.discard(task)

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled because its read's deadline passed (asked once, when
        the reader catches the cancellation)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return True

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire, loop)
        self._timer_at = when
        self._timer_loop = loop

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        now = loop.time()
        due: list[asyncio.Task[Any]] = []
        for task, deadline in self._reading.items():
            if deadline > now:
                self._arm(loop, deadline)
                break
            due.append(task)
        for task in due:
            del self._reading[task]
            self._expired.add(task)
            task.cancel()


def _body_reader(
    headers: Mapping[str, str], receive: Receive, deadlines: BodyDeadlines, timeout: float
) -> BodyReader:
    """Reads an ASGI request body, refusing it (BodyTooLarge) as soon as it is over the cap,
    whether the size is declared or only found while streaming, and (BodyTimeout) if all of it
    has not arrived within ``timeout`` seconds of starting to read."""

    async def read(limit: int) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        task = deadlines.start(timeout)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        except asyncio.CancelledError:
            # A timeout only if nobody else cancelled the task too (as asyncio.timeout decides).
            if deadlines.timed_out(task) and task.uncancel() == 0:
                raise BodyTimeout from None
            raise
        finally:
            deadlines.finish(task)

    return read


class IngestApp:
    """The ingest ASGI app. Webhook POSTs take a short path straight to the service: they are
    nearly all of the traffic, and Starlette's request objects and middleware layers cost more
    per request than verifying the signature (docs/benchmarks.md). Everything else (feeds,
    health, metrics, lifespan) goes to the FastAPI app."""

    def __init__(self, service: IngestService, api: FastAPI) -> None:
        self.service = service
        self.api = api
        self._paths = {f"/webhooks/{platform}": platform for platform in PLATFORMS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        platform = self._paths.get(scope.get("path", "")) if scope["type"] == "http" else None
        if platform is None:
            await self.api(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send_reply(send, self.service.method_not_allowed(platform))
            return
        # ASGI header names are lower case; a repeated header keeps its first value.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        try:
            reply = await self.service.receive(
                platform, headers, self.service.body_reader(headers, receive)
            )
        except ClientGone:
            self.service.client_gone(platform)
            return
        except Exception:
            log.exception("webhook %s failed", platform)
            reply = self.service.internal_error(platform)
        await _send_reply(send, reply)


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(reply.body)),
        *((k.lower().encode(), v.encode()) for k, v in reply.headers.items()),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _feed_handler(service: IngestService, feed: str) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        return await service.receive_feed(feed, request)

    handler.__name__ = f"receive_{feed}_feed"
    return handler


def create_app(
    service: IngestService,
    on_shutdown: Callable[[], Any] | None = None,
    routes: Sequence[BaseRoute] = (),
) -> IngestApp:
    """The ingest app; ``routes`` are served beside its own (onboarding's, from the CLI)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far lives as long as the process. Frozen, the cyclic collector
        # stops re-scanning it, so a full collection no longer stalls requests for tens of ms.
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(service.watch_stores())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if on_shutdown is not None:
                on_shutdown()

    # FastAPI's native OpenTelemetry is off: ingest exports Prometheus metrics, and the
    # per-request check for configured providers alone cost ~35 µs of a ~400 µs delivery.
    app = FastAPI(
        title="revloop ingest",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    # Plain Starlette routes: the handlers read raw bytes themselves, and FastAPI's request
    # parsing and dependency machinery buy them nothing. (Webhooks never reach this app:
    # IngestApp answers them on a shorter path.)
    for feed in FEEDS:
        app.add_route(
            f"/events/{feed}",
            _feed_handler(service, feed),
            methods=["POST"],
            name=f"feed_{feed}",
        )

    app.router.routes.extend(routes)

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

    return IngestApp(service, app)
