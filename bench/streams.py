"""`revloop bench streams`: one worker's throughput against a bare consume-and-produce loop of
the same client on the same topics, and its latency from an inventory update to the pause or
resume it causes, readable with read_committed (docs/benchmarks.md): from the canonical topic
(the worker alone), and end to end, from a Shopify inventory webhook's HTTP request to ingest
through the normalizer and the worker.

Everything runs on topics of the run's own (the catalogue under a fresh prefix), deleted after.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import typer
from confluent_kafka import Consumer, Producer
from rich.console import Console

from bench.common import ceiling, child_process, git_commit, produce
from platforms.shopify import signed_headers
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import (
    admin_client,
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    read_ranges,
    serde_for,
)
from revloop.settings import Settings, get_settings
from revloop.stores import Store, StoreRegistry
from schemas.serde import AvroSerde
from schemas.topics import prefixed, topic, topic_for_record

E = "dev.revloop.events."
INPUTS = ("commerce.inventory-levels.v1", "commerce.orders.v1")
OUTPUTS = ("actions.circuit-breaker.v1", "analytics.attribution-scores.v1", "lifecycle.triggers.v1")
TARGET_RATE = 20_000
TARGET_RATIO = 0.3
TARGET_P99_MS = 500.0


@dataclass(frozen=True)
class StreamsReport:
    commit: str
    events: int
    ceiling_per_s: float
    worker_per_s: float
    ratio: float
    latency_rate: float
    canonical_sent: int
    """Inventory updates produced straight to the canonical topic (the worker alone)."""
    canonical_events: int
    canonical_p50_ms: float
    canonical_p99_ms: float
    e2e_sent: int
    """Inventory webhooks sent to ingest over HTTP (ingest, the normalizer and the worker)."""
    e2e_events: int
    e2e_p50_ms: float
    e2e_p99_ms: float
    e2e_p99_by_5s_ms: list[float]
    """The end-to-end p99 of the webhooks sent in each 5 seconds of the run: growth is backlog."""
    e2e_client_late_p99_ms: float
    """How late the client wrote a request against its schedule (p99): the rate it held."""
    normalizer_batch_size: int
    commit_interval_s: float


# -- inputs ------------------------------------------------------------------------------------


def _envelope(event_id: str, at: datetime, store: str = "bench") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "store_id": store,
        "platform": "woocommerce",
        "occurred_at": at,
        "received_at": at,
        "source": "webhook",
        "caused_by": [],
    }


def level(event_id: str, at: datetime, item: int, quantity: int) -> dict[str, Any]:
    return {
        "envelope": _envelope(event_id, at),
        "inventory_item_id": f"i{item}",
        "location_id": "default",
        "method": "absolute",
        "quantity": quantity,
        "product_id": f"p{item}",
        "variant_id": None,
        "sku": None,
    }


def order(event_id: str, at: datetime, n: str, customer: int, product: int) -> dict[str, Any]:
    money = {"amount_minor": 1000 + len(n) * 100, "currency": "USD"}
    return {
        "envelope": _envelope(event_id, at),
        "kind": "created",
        "order_id": n,
        "order_number": None,
        "customer_id": f"c{customer}",
        "customer_key": f"k{customer}",
        "currency": "USD",
        "total": money,
        "subtotal": None,
        "total_tax": None,
        "total_discounts": None,
        "total_shipping": None,
        "financial_status": None,
        "fulfillment_status": None,
        "placed_at": None,
        "cancelled_at": None,
        "line_items": [
            {
                "line_item_id": f"{n}-1",
                "product_id": f"p{product}",
                "variant_id": None,
                "sku": None,
                "title": None,
                "quantity": 1,
                "unit_price": money,
                "total": money,
            }
        ],
        "refund": None,
        "attribution_hints": {},
    }


def inputs(
    count: int, seed: int, start: datetime, tag: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``count`` canonical events: two inventory updates for each order, over 2,000 items and
    2,000 customers, a second apart in event time."""
    rng = random.Random(seed)  # noqa: S311  # a benchmark's inputs, not secrets
    for n in range(count):
        at = start + timedelta(seconds=n)
        if n % 3 == 2:
            customer, product = rng.randrange(2000), rng.randrange(2000)
            yield "OrderEvent", order(f"bench-o{tag}{n}", at, f"o{tag}{n}", customer, product)
        else:
            item, quantity = rng.randrange(2000), rng.choice((0, 1, 3, 7))
            yield "InventoryLevel", level(f"bench-l{tag}{n}", at, item, quantity)


class Publisher:
    def __init__(self, settings: Settings, serde: AvroSerde) -> None:
        self.settings, self.serde = settings, serde
        self.producer = Producer(producer_config(settings, **{"linger.ms": 5}))

    def publish(self, record: str, value: dict[str, Any]) -> None:
        catalogued = topic_for_record(E + record)
        produce(
            self.producer,
            self.settings.topic_name(catalogued),
            catalogued.message_key(value),
            self.serde.encode(E + record, value),
        )

    def flush(self) -> None:
        self.producer.flush(60)


# -- the ceiling: a bare consume-and-produce loop ------------------------------------------------


# -- the processes ------------------------------------------------------------------------------


def revloop_process(
    settings: Settings, args: list[str], state_dir: Path, log_path: Path, **env: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``revloop <args>`` on the run's broker and topics, its output appended to ``log_path``."""
    extra = {"SCHEMA_REGISTRY_URL": settings.schema_registry_url}
    return child_process(
        [sys.executable, "-P", "-m", "revloop", *args],
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "REVLOOP_TOPIC_PREFIX": settings.topic_prefix,
            "REVLOOP_STATE_DIR": str(state_dir),
            **{k: v for k, v in extra.items() if v},
            **env,
        },
        log_path,
    )


def output_marks(settings: Settings, reader: Consumer) -> int:
    """Records on every topic the worker writes (its outputs and its own topics), summed."""
    names = [
        n
        for n in reader.list_topics(timeout=10).topics
        if n.startswith(settings.topic_prefix) or settings.topic_prefix in n
    ]
    written = [n for n in names if any(n.endswith(o) for o in OUTPUTS) or "--" in n]
    return sum(sum(high_watermarks(reader, n).values()) for n in written)


def count_scores(settings: Settings, serde: AvroSerde) -> int:
    """Orders of the run with a score (read_committed)."""
    name = f"{settings.topic_prefix}analytics.attribution-scores.v1"
    reader = Consumer(consumer_config(settings, f"bench-count-{uuid.uuid4().hex[:6]}"))
    try:
        ranges = {(name, p): (0, end) for p, end in high_watermarks(reader, name).items()}
        scored = {
            serde.decode(m.value() or b"").value["order_id"] for m in read_ranges(reader, ranges)
        }
        return sum(1 for order_id in scored if not order_id.startswith("owarm-"))
    finally:
        reader.close()


def drain_time(settings: Settings, reader: Consumer, began: float, quiet: float = 3.0) -> float:
    """Seconds from ``began`` until the worker's writes last grew (it has been quiet for
    ``quiet`` seconds since)."""
    last, changed = output_marks(settings, reader), time.perf_counter()
    while time.perf_counter() - changed < quiet:
        time.sleep(0.2)
        now = output_marks(settings, reader)
        if now != last:
            last, changed = now, time.perf_counter()
    return changed - began


def wait_started(settings: Settings, reader: Consumer, serde: AvroSerde) -> None:
    """Until a fresh worker writes: one inventory update that pauses a product of its own."""
    publisher = Publisher(settings, serde)
    before = output_marks(settings, reader)
    publisher.publish("InventoryLevel", level("start-probe", datetime.now(UTC), 99_999, 0))
    publisher.flush()
    deadline = time.monotonic() + 120
    while output_marks(settings, reader) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)


def latency(
    settings: Settings, serde: AvroSerde, rate: float, seconds: float
) -> tuple[list[float], int]:
    """Inventory updates at ``rate`` per second, each flipping its product in or out of stock
    (the worker runs with no dwell), and the time until each one's action is readable."""
    actions = f"{settings.topic_prefix}actions.circuit-breaker.v1"
    reader = Consumer(
        consumer_config(
            settings, f"bench-latency-{uuid.uuid4().hex[:6]}", **{"auto.offset.reset": "latest"}
        )
    )
    reader.subscribe([actions])
    assigned = threading.Event()
    sent: dict[str, float] = {}
    seen: list[float] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            message = reader.poll(0.1)
            if message is None or message.error():
                continue
            assigned.set()
            value = serde.decode(message.value() or b"").value
            for cause in value["envelope"]["caused_by"]:
                if cause in sent:
                    seen.append((time.perf_counter() - sent[cause]) * 1000)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(3)  # the reader's assignment (latest: from now on)
    publisher = Publisher(settings, serde)
    items = 200
    stock = [1] * items
    start = datetime.now(UTC) - timedelta(hours=1)
    count = int(rate * seconds)
    began = time.perf_counter()
    for n in range(count):
        due = began + n / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        item = n % items
        stock[item] = 0 if stock[item] else 5
        event_id = f"lat-{uuid.uuid4().hex[:12]}"
        sent[event_id] = time.perf_counter()
        publisher.publish(
            "InventoryLevel",
            level(event_id, start + timedelta(milliseconds=n), 10_000 + item, stock[item]),
        )
    publisher.flush()
    deadline = time.perf_counter() + 30
    while len(seen) < count and time.perf_counter() < deadline:
        time.sleep(0.2)
    stop.set()
    thread.join(5)
    reader.close()
    return sorted(seen), count


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


# -- end to end: a Shopify inventory webhook's HTTP request → its action ---------------------------

HOST = "127.0.0.1"
E2E_STORE = "bench-e2e"
SHOP_DOMAIN = "bench-e2e.myshopify.com"
E2E_PRODUCTS = 200
"""Products of one variant each, every one with its own inventory item."""
SEND_CONNECTIONS = 32
"""Keep-alive connections the client keeps open to ingest, each with one request at a time."""
_PRODUCT_ID = 8_800_000_000_000
_VARIANT_ID = 9_007_199_254_740_993  # above 2**53, as Shopify's are
_ITEM_ID = 9_100_000_000_000_000
_LOCATION_ID = 71_234_567_890


@dataclass(frozen=True)
class Webhook:
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class E2EStore:
    """The run's one Shopify store, in a registry of its own."""

    secret: bytes
    env: dict[str, str]
    """What ingest and the normalizer need to serve it."""

    def webhook(self, topic_name: str, document: dict[str, Any], at: datetime) -> Webhook:
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = signed_headers(
            body,
            self.secret,
            shop_domain=SHOP_DOMAIN,
            topic=topic_name,
            webhook_id=str(uuid.uuid4()),
            triggered_at=at,
        )
        return Webhook(headers, body)


def e2e_store(directory: Path, port: int) -> E2EStore:
    """A master key, a customer-key salt and a ``stores.json`` holding one Shopify store (USD)
    in ``directory``."""
    master_key = new_master_key("bench")
    key_id, _, encoded = master_key.partition(":")
    box = SecretBox({key_id: base64.b64decode(encoded)}, key_id)
    secret = secrets.token_bytes(32)
    stores_file = directory / "stores.json"
    store = Store(E2E_STORE, "shopify", SHOP_DOMAIN, (Secret(secret),), currency="USD")
    StoreRegistry([store]).save(stores_file, box)
    return E2EStore(
        secret,
        {
            "REVLOOP_STORES_FILE": str(stores_file),
            "REVLOOP_MASTER_KEYS": master_key,
            "REVLOOP_CUSTOMER_KEY_SALT": secrets.token_urlsafe(32),
            "REVLOOP_INGEST_HOST": HOST,
            "REVLOOP_INGEST_PORT": str(port),
        },
    )


def _shop_time(at: datetime) -> str:
    return at.isoformat(timespec="seconds")  # as Shopify writes them: whole seconds, an offset


def product_created(k: int, at: datetime) -> dict[str, Any]:
    """A products/create body: product k, one variant, stocked by inventory item k."""
    product_id, variant_id, item_id = _PRODUCT_ID + k, _VARIANT_ID + k, _ITEM_ID + k
    when = _shop_time(at)
    return {
        "id": product_id,
        "admin_graphql_api_id": f"gid://shopify/Product/{product_id}",
        "title": f"Bench product {k}",
        "handle": f"bench-product-{k}",
        "body_html": "",
        "vendor": "Bench",
        "product_type": "",
        "status": "active",
        "tags": "",
        "created_at": when,
        "updated_at": when,
        "published_at": when,
        "variants": [
            {
                "id": variant_id,
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{variant_id}",
                "product_id": product_id,
                "title": "Default Title",
                "price": "19.00",
                "sku": f"BENCH-{k}",
                "position": 1,
                "inventory_policy": "deny",
                "inventory_item_id": item_id,
                "inventory_quantity": 0,
                "created_at": when,
                "updated_at": when,
            }
        ],
    }


def level_updated(k: int, available: int, at: datetime) -> dict[str, Any]:
    """An inventory_levels/update body: item k at the one location."""
    item_id = _ITEM_ID + k
    return {
        "inventory_item_id": item_id,
        "location_id": _LOCATION_ID,
        "available": available,
        "updated_at": _shop_time(at),
        "admin_graphql_api_id": (
            f"gid://shopify/InventoryLevel/{_LOCATION_ID}?inventory_item_id={item_id}"
        ),
    }


def action_key(k: int, at: datetime) -> tuple[str, datetime]:
    """What identifies the action an update of item k at ``at`` causes: the product's id and
    the action's ``occurred_at``, which is the update's ``updated_at`` (the normalizer's
    ``occurred_at``; with no dwell the breaker decides as of it). The update's own event id,
    in ``caused_by``, is derived from the delivery inside the normalizer."""
    return str(_PRODUCT_ID + k), at


@dataclass(frozen=True)
class Sent:
    due: list[float]
    """perf_counter times the requests were due at."""
    written: list[float]
    """When each request's headers began to be written (NaN: never)."""
    answers: dict[str, int]
    """Status code (or the client's exception) → count."""

    @property
    def refused(self) -> int:
        return sum(n for answer, n in self.answers.items() if not answer.startswith("2"))


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection to ingest, one request at a time."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _CONTENT_LENGTH.search(self.buffer, 0, end)
            total = end + 4 + (int(length[1]) if length else 0)
            if len(self.buffer) < total:
                return
            status = self.buffer[9:12].decode()
            del self.buffer[:total]
            self.sender.answered(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sender.lost(self)


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*(\d+)")


class _Sender:
    """Writes prepared requests over a few keep-alive connections, each when it is due (open
    loop: a request waits only when every connection has one in flight)."""

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        self.host, self.port, self.requests = host, port, requests
        self.written = [float("nan")] * len(requests)
        self.answers: dict[str, int] = {}
        self.idle: deque[_Connection] = deque()
        self.waiting: deque[int] = deque()
        self.remaining = len(requests)
        self.done = asyncio.get_running_loop().create_future()
        self.connections: set[_Connection] = set()
        self.closing = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(self), self.host, self.port
        )
        self.connections.add(connection)
        self.free(connection)

    def submit(self, n: int) -> None:
        if self.idle:
            self.write(self.idle.popleft(), n)
        else:
            self.waiting.append(n)

    def write(self, connection: _Connection, n: int) -> None:
        assert connection.transport is not None
        connection.current = n
        self.written[n] = time.perf_counter()
        connection.transport.write(self.requests[n])

    def free(self, connection: _Connection) -> None:
        if self.waiting:
            self.write(connection, self.waiting.popleft())
        else:
            self.idle.append(connection)

    def answered(self, connection: _Connection, answer: str) -> None:
        connection.current = None
        self.count(answer)
        self.free(connection)

    def lost(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if self.closing:
            return
        if connection.current is not None:
            self.count("no answer")
        self._reconnect = asyncio.get_running_loop().create_task(self.connect())

    def close(self) -> None:
        self.closing = True
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


async def send_paced(
    host: str, port: int, webhooks: list[Webhook], rate: float, timeout: float = 60.0
) -> Sent:
    """Webhook n is due at start + n/rate whatever the answers so far, over up to
    :data:`SEND_CONNECTIONS` HTTP/1.1 keep-alive connections; ``written`` is when its bytes
    were handed to the socket."""
    requests = [
        b"".join(
            (
                f"POST /webhooks/shopify HTTP/1.1\r\nhost: {host}:{port}\r\n".encode(),
                *(f"{k}: {v}\r\n".encode() for k, v in hook.headers.items()),
                f"content-length: {len(hook.body)}\r\n\r\n".encode(),
                hook.body,
            )
        )
        for hook in webhooks
    ]
    sender = _Sender(host, port, requests)
    await asyncio.gather(*(sender.connect() for _ in range(SEND_CONNECTIONS)))
    try:
        began = time.perf_counter() + 0.05
        due = [began + n / rate for n in range(len(requests))]
        for n in range(len(requests)):
            pause = due[n] - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            sender.submit(n)
        try:
            await asyncio.wait_for(asyncio.shield(sender.done), timeout)
        except TimeoutError:
            sender.answers["no answer"] = sender.answers.get("no answer", 0) + sender.remaining
    finally:
        sender.close()
    return Sent(due, sender.written, sender.answers)


class ActionReader:
    """A thread reading the run's circuit-breaker actions with read_committed, from the end
    of the topic when it was assigned, noting when each one became readable."""

    def __init__(self, settings: Settings, serde: AvroSerde) -> None:
        self.serde = serde
        self.read: dict[tuple[str, datetime], float] = {}
        self.assigned = threading.Event()
        self._stop = threading.Event()
        self._consumer = Consumer(
            consumer_config(
                settings, f"bench-e2e-{uuid.uuid4().hex[:6]}", **{"auto.offset.reset": "latest"}
            )
        )
        self._consumer.subscribe(
            [f"{settings.topic_prefix}actions.circuit-breaker.v1"],
            on_assign=lambda _consumer, _partitions: self.assigned.set(),
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is None or message.error():
                continue
            now = time.perf_counter()
            value = self.serde.decode(message.value() or b"").value
            self.read.setdefault((value["product_id"], value["envelope"]["occurred_at"]), now)

    def wait_for(self, keys: list[tuple[str, datetime]], seconds: float) -> int:
        """Until every one of ``keys`` has been read or ``seconds`` pass; how many were."""
        deadline = time.perf_counter() + seconds
        while True:
            found = sum(1 for key in keys if key in self.read)
            if found == len(keys) or time.perf_counter() > deadline:
                return found
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_running(processes: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            raise RuntimeError(
                f"`revloop {name}` exited with {process.returncode} (see {logs[name]})"
            )


def wait_ready(
    base_url: str,
    processes: dict[str, subprocess.Popen[bytes]],
    logs: dict[str, Path],
    seconds: float = 60.0,
) -> None:
    """Until ingest answers 200 on /readyz (its producer reaches Kafka)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_running(processes, logs)
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"ingest was not ready on {base_url} in {seconds:.0f} s (see {logs['ingest']})"
    )


@dataclass(frozen=True)
class E2EResult:
    samples: list[float]
    """Milliseconds from each webhook's request to its action being readable, sorted."""
    sent: int
    p99_by_5s: list[float]
    client_late_p99_ms: float


def e2e_latency(
    settings: Settings,
    serde: AvroSerde,
    rate: float,
    seconds: float,
    commit_interval: str,
    state_dir: Path,
    logs: dict[str, Path],
    progress: Callable[[str], None],
) -> E2EResult:
    """Shopify inventory webhooks at ``rate`` per second to a real ``revloop ingest``, through
    ``revloop normalize`` and ``revloop worker`` (no dwell, so each update flips its product in
    or out of stock), on topics of their own: the time from each request to its action being
    readable with read_committed."""
    e2e = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}e2e."})
    ensure_topics(e2e, prefixed(e2e.topic_prefix))
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    store = e2e_store(state_dir, port)
    env = {
        **store.env,
        "REVLOOP_BREAKER_DWELL_SECONDS": "0",
        "REVLOOP_WORKER_COMMIT_INTERVAL_SECONDS": commit_interval,
    }
    base_url = f"http://{HOST}:{port}"
    commands = {
        "worker": ["worker", "--instance-id", "bench-e2e"],
        "normalize": ["normalize", "--instance-id", "bench-e2e"],
        "ingest": ["ingest"],
    }
    reader = ActionReader(e2e, serde)
    with ExitStack() as stack:
        stack.callback(reader.close)
        processes = {  # stopped in reverse: ingest first
            name: stack.enter_context(revloop_process(e2e, command, state_dir, logs[name], **env))
            for name, command in commands.items()
        }
        wait_ready(base_url, processes, logs)
        if not reader.assigned.wait(60):
            raise RuntimeError("the actions reader got no partitions in 60 s")
        time.sleep(1)  # its position: the end, as of now

        count = int(rate * seconds)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=count + 3600)
        progress(
            f"end to end: {E2E_PRODUCTS} products/create, then a sell-out of each; waiting for "
            "their pauses (a first start creates the worker's topics)"
        )
        warm = [
            store.webhook("products/create", product_created(k, start), start)
            for k in range(E2E_PRODUCTS)
        ]
        sold_out = start + timedelta(seconds=1)
        warm += [
            store.webhook("inventory_levels/update", level_updated(k, 0, sold_out), sold_out)
            for k in range(E2E_PRODUCTS)
        ]
        sent = asyncio.run(send_paced(HOST, port, warm, 200.0))
        if sent.refused:
            raise RuntimeError(
                f"ingest refused {sent.refused} of {len(warm)} warm-up webhooks "
                f"({sent.answers}; see {logs['ingest']})"
            )
        warm_keys = [action_key(k, sold_out) for k in range(E2E_PRODUCTS)]
        if reader.wait_for(warm_keys, 120) < len(warm_keys):
            check_running(processes, logs)
            raise RuntimeError(
                f"the worker paused {sum(1 for k in warm_keys if k in reader.read)} of "
                f"{len(warm_keys)} sold-out products in 120 s (see {logs['worker']})"
            )
        time.sleep(2)

        progress(
            f"end to end: {rate:.0f} inventory webhooks/s to ingest for {seconds:.0f} s, "
            "each flipping its item between 0 and 5"
        )
        stock = [0] * E2E_PRODUCTS
        hooks, keys = [], []
        for n in range(count):
            k = n % E2E_PRODUCTS
            stock[k] = 0 if stock[k] else 5
            at = start + timedelta(seconds=2 + n)  # distinct: it identifies the action
            hooks.append(
                store.webhook("inventory_levels/update", level_updated(k, stock[k], at), at)
            )
            keys.append(action_key(k, at))
        sent = asyncio.run(send_paced(HOST, port, hooks, rate))
        check_running(processes, logs)
        if sent.refused:
            raise RuntimeError(
                f"ingest did not answer 2xx to {sent.refused} of {count} webhooks "
                f"({sent.answers}): not a latency (see {logs['ingest']})"
            )
        reader.wait_for(keys, 30)
    latencies: list[float] = []
    windows: dict[int, list[float]] = {}
    for n, key in enumerate(keys):
        read, written = reader.read.get(key), sent.written[n]
        if read is None or math.isnan(written):
            continue
        ms = (read - written) * 1000
        latencies.append(ms)
        windows.setdefault(int((sent.due[n] - sent.due[0]) // 5), []).append(ms)
    late = sorted(
        (w - d) * 1000 for w, d in zip(sent.written, sent.due, strict=True) if not math.isnan(w)
    )
    return E2EResult(
        samples=sorted(latencies),
        sent=count,
        p99_by_5s=[round(percentile(sorted(windows[w]), 0.99), 1) for w in sorted(windows)],
        client_late_p99_ms=round(percentile(late, 0.99), 1),
    )


def run_bench(
    settings: Settings,
    commit_interval: float,
    events: int,
    seed: int,
    latency_rate: float,
    latency_seconds: float,
    progress: Callable[[str], None],
) -> StreamsReport:
    tag = f"bench-streams-{uuid.uuid4().hex[:6]}."
    settings = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{tag}"})
    serde = serde_for(settings)
    ensure_topics(settings, prefixed(settings.topic_prefix))
    reader = Consumer(consumer_config(settings, f"bench-marks-{uuid.uuid4().hex[:6]}"))
    logs = {
        name: settings.state_dir / f"bench-streams-{name}.log"
        for name in ("worker", "normalize", "ingest")
    }
    log_path = logs["worker"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for path in logs.values():
        path.write_bytes(b"")
    progress(f"the logs: {', '.join(str(path) for path in logs.values())}")
    try:
        with tempfile.TemporaryDirectory(prefix="revloop-bench-") as tmp:
            state_dir = Path(tmp)
            interval = str(commit_interval)
            with revloop_process(
                settings,
                ["worker", "--instance-id", "bench"],
                state_dir,
                log_path,
                REVLOOP_WORKER_COMMIT_INTERVAL_SECONDS=interval,
            ):
                progress("worker starting (a first start creates its topics)")
                publisher = Publisher(settings, serde)
                warm = datetime.now(UTC) - timedelta(days=30)
                for record, value in inputs(30, seed + 1, warm, tag="warm-"):
                    publisher.publish(record, value)
                publisher.flush()
                deadline = time.monotonic() + 120
                while output_marks(settings, reader) == 0 and time.monotonic() < deadline:
                    time.sleep(0.5)
                drain_time(settings, reader, time.perf_counter())
                progress(f"publishing {events:,} events; the worker consumes them as they come")
                began = time.perf_counter()
                for record, value in inputs(events, seed, warm + timedelta(days=1)):
                    publisher.publish(record, value)
                publisher.flush()
                took = drain_time(settings, reader, began)
                worker_rate = events / took
                scored = count_scores(settings, serde)
                orders = sum(
                    1 for record, _ in inputs(events, seed, warm) if record == "OrderEvent"
                )
                if scored < orders:
                    raise RuntimeError(
                        f"the worker went quiet with {scored} of {orders} orders scored: "
                        f"not a throughput (see {log_path})"
                    )
            progress("the ceiling: a bare consume-and-produce loop over the same topics")
            ceiling_rate = ceiling(settings, [topic(n) for n in INPUTS], events + 30)
            progress(
                f"latency from the canonical topic: {latency_rate:.0f} inventory updates/s "
                f"for {latency_seconds:.0f} s"
            )
            # Topics and a worker of their own: a fresh group would first read the throughput
            # run's events, and a dwell of 0 changes the topology, which quixstreams cannot
            # resume a group with.
            quiet = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}lat."})
            ensure_topics(quiet, prefixed(quiet.topic_prefix))
            with revloop_process(
                quiet,
                ["worker", "--instance-id", "bench"],
                state_dir / "latency",
                log_path,
                REVLOOP_BREAKER_DWELL_SECONDS="0",
                REVLOOP_WORKER_COMMIT_INTERVAL_SECONDS=interval,
            ):
                wait_started(quiet, reader, serde)
                samples, sent = latency(quiet, serde, latency_rate, latency_seconds)
            # Ingest, the normalizer and a worker, on topics of their own again.
            e2e = e2e_latency(
                settings,
                serde,
                latency_rate,
                latency_seconds,
                interval,
                state_dir / "e2e",
                logs,
                progress,
            )
    finally:
        reader.close()
        names = admin_client(settings).list_topics(timeout=10).topics
        delete_topics(settings, [n for n in names if tag in n])
    return StreamsReport(
        commit=git_commit(),
        events=events,
        ceiling_per_s=round(ceiling_rate),
        worker_per_s=round(worker_rate),
        ratio=round(worker_rate / ceiling_rate, 3),
        latency_rate=latency_rate,
        canonical_sent=sent,
        canonical_events=len(samples),
        canonical_p50_ms=round(percentile(samples, 0.50), 1),
        canonical_p99_ms=round(percentile(samples, 0.99), 1),
        e2e_sent=e2e.sent,
        e2e_events=len(e2e.samples),
        e2e_p50_ms=round(percentile(e2e.samples, 0.50), 1),
        e2e_p99_ms=round(percentile(e2e.samples, 0.99), 1),
        e2e_p99_by_5s_ms=e2e.p99_by_5s,
        e2e_client_late_p99_ms=e2e.client_late_p99_ms,
        normalizer_batch_size=settings.normalizer_batch_size,
        commit_interval_s=commit_interval,
    )


def streams_command(
    events: int = typer.Option(60_000, help="Canonical events for the throughput run.", min=1000),
    seed: int = typer.Option(7, help="Seed of the generated events."),
    latency_rate: float = typer.Option(
        1000.0, help="Inventory updates (and webhooks) per second, paced.", min=1
    ),
    latency_seconds: float = typer.Option(20.0, help="Seconds of paced updates.", min=1),
    commit_interval: float = typer.Option(
        0.25,
        help="The workers' commit interval (REVLOOP_WORKER_COMMIT_INTERVAL_SECONDS).",
        min=0.01,
    ),
    json_path: Path | None = typer.Option(  # noqa: B008
        None, "--json", help="Also write the figures as JSON to this file."
    ),
) -> None:
    """One worker's events/s against a bare consume-and-produce ceiling, and the latency from
    an inventory update to its action (read_committed): from the canonical topic, and end to end
    from a Shopify webhook's HTTP request to ingest."""
    console = Console()
    report = run_bench(
        get_settings(),
        commit_interval,
        events,
        seed,
        latency_rate,
        latency_seconds,
        lambda m: console.print(f"  {m}"),
    )
    rate_ok = report.worker_per_s >= TARGET_RATE and report.ratio >= TARGET_RATIO
    console.print()
    console.print(f"[bold]revloop bench streams[/] at {report.commit}: {report.events:,} events")
    console.print(f"  ceiling (bare consume-and-produce): {report.ceiling_per_s:,.0f} events/s")
    console.print(
        f"  worker (exactly-once, three processors): {report.worker_per_s:,.0f} events/s, "
        f"ratio {report.ratio:.3f} of the ceiling "
        f"({'meets' if rate_ok else 'misses'} the targets {TARGET_RATE:,}/s and {TARGET_RATIO})"
    )
    console.print(
        f"  inventory update from the canonical topic -> action readable, at "
        f"{report.latency_rate:.0f}/s: p50 {report.canonical_p50_ms} ms, p99 "
        f"{report.canonical_p99_ms} ms over {report.canonical_events} of {report.canonical_sent} "
        f"actions (the worker alone; commit interval {report.commit_interval_s} s)"
    )
    e2e_ok = report.e2e_events == report.e2e_sent and report.e2e_p99_ms <= TARGET_P99_MS
    console.print(
        f"  inventory webhook (HTTP request to ingest) -> action readable, end to end, at "
        f"{report.latency_rate:.0f}/s: p50 {report.e2e_p50_ms} ms, p99 {report.e2e_p99_ms} ms "
        f"over {report.e2e_events} of {report.e2e_sent} actions "
        f"({'meets' if e2e_ok else 'misses'} the target p99 <= {TARGET_P99_MS:.0f} ms)"
    )
    console.print(
        f"    p99 per 5 s of the run: {', '.join(f'{v:.0f}' for v in report.e2e_p99_by_5s_ms)} ms;"
        f" the client wrote its requests {report.e2e_client_late_p99_ms} ms late (p99);"
        f" normalizer batch size {report.normalizer_batch_size}, worker commit interval "
        f"{report.commit_interval_s} s"
    )
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
