"""`revloop bench ingest`: how many signed webhooks ingest accepts per second, with every 200
backed by a record in Kafka; its latency at half that load; and, as the ceiling, a bare Starlette
endpoint under the same uvicorn settings. How it measures is in docs/benchmarks.md.

The servers run as uvicorn subprocesses and the load comes from a separate process: a raw
HTTP/1.1 keep-alive client on asyncio protocols (uvloop when installed) writing precomputed
request bytes, so the client costs a small fraction of what the server does per request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hmac
import http.client
import json
import math
import multiprocessing
import os
import platform as platform_module
import re
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from importlib.util import find_spec
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, cast

import typer
from confluent_kafka import Consumer, KafkaException
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.process import Child, wait_until_ok
from ingest.app import RAW_TOPIC
from ingest.metrics import PUBLISH_SECONDS, REQUEST_SECONDS
from platforms import shopify, woocommerce
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import (
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    read_ranges,
)
from revloop.settings import Settings, get_settings
from revloop.stores import Store, StoreRegistry
from schemas.topics import prefixed

bench_app = typer.Typer(
    help="Benchmarks against the local stack (docs/benchmarks.md).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DEFAULT_FIXTURES: Final = Path("tests/fixtures")
"""Where order bodies come from by default: the repository's test fixtures, from its root."""
POOL_SIZE: Final = 64
"""Distinct bodies per platform; every request also gets its own delivery id."""
HOST: Final = "127.0.0.1"
DRAIN_SECONDS: Final = 15.0
"""How long a phase waits for in-flight answers (ingest answers 503 after its 2 s ack timeout)."""
TARGET_ACCEPTED_PER_S: Final = 5000.0
TARGET_P99_MS: Final = 25.0
TARGET_RATIO: Final = 0.5


class PlatformChoice(StrEnum):
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"
    BIGCOMMERCE = "bigcommerce"
    MIX = "mix"


# --- the two servers, as uvicorn factories (an import string is what lets --workers fork) ----


def ingest_app() -> Any:
    """The ingest service exactly as `revloop ingest` builds it, from REVLOOP_* settings."""
    from ingest.app import create_app
    from ingest.server import build_service

    service = build_service(get_settings())
    return create_app(service, on_shutdown=service.publisher.close)


def bare_app() -> Starlette:
    """The ceiling: reads the body and answers 200 JSON; no verification, no Kafka."""

    async def receive(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted", "event_id": _BARE_EVENT_ID})

    async def ready(_: Request) -> Response:
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/webhooks/{platform}", receive, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )


_BARE_EVENT_ID: Final = "00000000-0000-5000-8000-000000000000"  # same response size as ingest's


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestTemplate:
    """One signed request, split around its per-request delivery id header value."""

    head: bytes
    """Request line and headers, ending with the delivery id header's ``name: ``."""
    tail: bytes
    """Content-Length, the blank line and the body."""
    body: bytes
    sign_key: bytes | None = None
    """Standard Webhooks (BigCommerce) sign id + timestamp + body, so those sign per request."""

    def render(self, ident: bytes) -> bytes:
        if self.sign_key is None:
            return self.head + ident + self.tail
        stamp = b"%d" % int(time.time())
        content = b"".join((ident, b".", stamp, b".", self.body))
        signature = base64.b64encode(hmac.digest(self.sign_key, content, "sha256"))
        return b"".join(
            (
                self.head,
                ident,
                b"\r\nwebhook-timestamp: ",
                stamp,
                b"\r\nwebhook-signature: v1,",
                signature,
                self.tail,
            )
        )


@dataclass(frozen=True)
class BenchStore:
    store_id: str
    platform: str
    identity: str
    secret: bytes


def bench_stores(tag: str, choice: PlatformChoice, per_platform: int = 1) -> list[BenchStore]:
    """Throwaway stores named after the run, so their records in Kafka are this run's only.
    Several stores per platform spread the load over the raw topic's partitions, as real
    traffic from many merchants does."""
    platforms = (
        ["shopify", "woocommerce", "bigcommerce"] if choice is PlatformChoice.MIX else [choice]
    )
    stores = []
    for n in range(per_platform):
        name = tag if per_platform == 1 else f"{tag}s{n}"
        identities = {
            "shopify": f"{name}.myshopify.com",
            "woocommerce": f"https://{name}.example.com",
            "bigcommerce": name,
        }
        stores += [
            BenchStore(f"{name}-{p}", p, identities[p], secrets.token_bytes(32)) for p in platforms
        ]
    return stores


def registry_of(stores: Sequence[BenchStore]) -> StoreRegistry:
    return StoreRegistry(
        Store(s.store_id, s.platform, s.identity, (Secret(s.secret),)) for s in stores
    )


def request_templates(
    stores: Sequence[BenchStore], fixtures: Path | None = None
) -> list[RequestTemplate]:
    """POOL_SIZE signed requests per store, interleaved so a mix rotates through platforms.
    Bodies are the order fixtures in ``fixtures`` when it has them, synthetic orders otherwise."""
    per_store = [[_template(store, n, fixtures) for n in range(POOL_SIZE)] for store in stores]
    return [t for group in zip(*per_store, strict=True) for t in group]


def _template(store: BenchStore, n: int, fixtures: Path | None) -> RequestTemplate:
    now = datetime.now(UTC)
    body = _body(store, n, fixtures)
    sign_key: bytes | None = None
    if store.platform == "shopify":
        headers = shopify.signed_headers(
            body,
            store.secret,
            shop_domain=store.identity,
            topic="orders/create",
            webhook_id="-",
            triggered_at=now,
        )
        id_header = "x-shopify-webhook-id"
    elif store.platform == "woocommerce":
        headers = woocommerce.signed_headers(
            body,
            store.secret,
            source=store.identity,
            topic="order.created",
            webhook_id="1",
            delivery_id="-",
        )
        id_header = "x-wc-webhook-delivery-id"
    else:
        headers = {"content-type": "application/json"}
        id_header = "webhook-id"
        sign_key = store.secret
    headers.pop(id_header, None)
    lines = [f"POST /webhooks/{store.platform} HTTP/1.1", f"host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + f"\r\n{id_header}: ").encode()
    tail = f"\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    return RequestTemplate(head, tail, body, sign_key)


def _body(store: BenchStore, n: int, fixtures: Path | None) -> bytes:
    """A realistic order body (from ``fixtures`` when present), compact as platforms send it."""
    name = {
        "shopify": "shopify/orders__create.json",
        "woocommerce": "woocommerce/order__created.json",
        "bigcommerce": "bigcommerce/store__order__created.json",
    }[store.platform]
    path = fixtures / name if fixtures is not None else None
    order: dict[str, Any] = (
        json.loads(path.read_bytes())
        if path is not None and path.exists()
        else {
            "id": 0,
            "line_items": [{"id": i, "title": "Item", "price": "9.99"} for i in range(20)],
        }
    )
    order_id = 9_000_000 + n
    if store.platform == "shopify":
        order.update(id=order_id, name=f"#B{n}", order_number=order_id)
    elif store.platform == "woocommerce":
        order.update(id=order_id, date_modified_gmt=f"2026-03-14T15:{n // 60:02d}:{n % 60:02d}")
    else:
        # No `hash`, so the event id comes from the per-request webhook-id.
        order.pop("hash", None)
        order.update(producer=f"stores/{store.identity}", data={"type": "order", "id": order_id})
    return json.dumps(order, separators=(",", ":")).encode()


# --- the load generator (runs in its own process) ----------------------------------------------


@dataclass(frozen=True)
class Phase:
    port: int
    connections: int
    seconds: float
    rate: float | None = None
    """None: closed loop (each connection sends again on each answer). Else open loop at this
    many requests per second, latency measured from each request's intended send time."""


@dataclass
class PhaseResult:
    seconds: float
    sent: int = 0
    completed: int = 0
    """Answers inside the window (closed loop: answered in it; open loop: scheduled in it)."""
    ok: int = 0
    """200s inside the window."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Every non-200 answer and error of the phase, including the drain after the window."""
    latencies: list[float] = field(default_factory=list)
    accepted_seqs: list[int] = field(default_factory=list)
    """Sequence numbers of every 200 in the phase, for the durability check."""
    max_pending: int = 0
    max_lag: float = 0.0
    """Open loop: the largest delay between a request's intended and actual send time."""
    loadgen_cpu: float = 0.0


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.seq = -1
        self.started = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                length = 0
            else:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                break
            status = int(buffer[9:12])
            buffer = buffer[total:]
            self.run.on_response(self, status)
            if b"\r\nconnection: close" in head and self.transport is not None:
                self.transport.close()
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.run.on_lost(self)


class _Run:
    """One phase against one server."""

    def __init__(self, generator: _Generator, phase: Phase) -> None:
        self.generator = generator
        self.phase = phase
        self.loop = asyncio.get_running_loop()
        self.result = PhaseResult(seconds=phase.seconds)
        self.outcomes: Counter[str] = Counter()
        self.window_start = 0.0
        self.window_end = math.inf
        self.in_flight = 0
        self.scheduling = True
        self.active = True
        self.idle: deque[_Connection] = deque()
        self.conns: set[_Connection] = set()
        self.pending: deque[tuple[int, float]] = deque()
        self.drained: asyncio.Future[None] = self.loop.create_future()

    async def connect(self) -> _Connection:
        _, protocol = await self.loop.create_connection(
            lambda: _Connection(self), HOST, self.phase.port
        )
        self.conns.add(protocol)
        return protocol

    def send(self, conn: _Connection, seq: int, started: float) -> None:
        if conn.transport is None:
            self.outcomes["connection lost"] += 1
            return
        conn.seq, conn.started, conn.busy = seq, started, True
        self.in_flight += 1
        self.result.sent += 1
        conn.transport.write(self.generator.render(seq))

    def on_response(self, conn: _Connection, status: int) -> None:
        now = time.perf_counter()
        conn.busy = False
        self.in_flight -= 1
        result = self.result
        if status == 200:
            result.accepted_seqs.append(conn.seq)
        else:
            self.outcomes[f"HTTP {status}"] += 1
        if self.phase.rate is None:
            counted = now <= self.window_end
        else:
            counted = self.window_start <= conn.started < self.window_end
        if counted:
            result.completed += 1
            if status == 200:
                result.ok += 1
                result.latencies.append(now - conn.started)
        self.next_for(conn, now)

    def next_for(self, conn: _Connection, now: float) -> None:
        if not self.active or conn.transport is None:
            return
        if self.phase.rate is None:
            if now < self.window_end:
                self.send(conn, self.generator.next_seq(), now)
                return
        elif self.pending:
            seq, intended = self.pending.popleft()
            self.send(conn, seq, intended)
            return
        else:
            self.idle.append(conn)
        self.check_drained()

    def on_lost(self, conn: _Connection) -> None:
        if conn.busy:
            conn.busy = False
            self.in_flight -= 1
            self.outcomes["connection lost"] += 1
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.active:
            # The server may close idle keep-alive connections; replace them.
            self.loop.create_task(self.replace())
        self.check_drained()

    async def replace(self) -> None:
        try:
            conn = await self.connect()
        except OSError:
            self.outcomes["connect failed"] += 1
            return
        self.next_for(conn, time.perf_counter())

    def check_drained(self) -> None:
        if self.scheduling or self.in_flight or self.pending or self.drained.done():
            return
        if self.phase.rate is None and time.perf_counter() < self.window_end:
            return
        self.drained.set_result(None)

    async def run(self) -> PhaseResult:
        # One at a time, with a pause: with several uvicorn workers sharing the listening socket,
        # a burst of connects tends to land on whichever worker wakes first.
        conns = []
        for _ in range(self.phase.connections):
            conns.append(await self.connect())
            await asyncio.sleep(0.002)
        cpu_before = time.process_time()
        if self.phase.rate is None:
            await self._closed_loop(conns)
        else:
            await self._open_loop(conns, self.phase.rate)
        try:
            await asyncio.wait_for(asyncio.shield(self.drained), DRAIN_SECONDS)
        except TimeoutError:
            self.outcomes["no answer"] += self.in_flight + len(self.pending)
        self.result.loadgen_cpu = time.process_time() - cpu_before
        self.active = False
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        self.result.outcomes = dict(self.outcomes)
        return self.result

    async def _closed_loop(self, conns: Sequence[_Connection]) -> None:
        self.window_start = now = time.perf_counter()
        self.window_end = now + self.phase.seconds
        for conn in conns:
            self.send(conn, self.generator.next_seq(), now)
        self.scheduling = False
        await asyncio.sleep(self.phase.seconds)
        self.check_drained()

    async def _open_loop(self, conns: Sequence[_Connection], rate: float) -> None:
        # Requests are due at fixed times whatever the server does (wrk2-style), so a slow
        # answer delays the requests queued behind it and that delay is measured.
        self.idle.extend(conns)
        interval = 1.0 / rate
        total = max(1, int(self.phase.seconds * rate))
        start = time.perf_counter() + 0.005
        self.window_start, self.window_end = start, start + self.phase.seconds
        result = self.result
        n = 0
        while n < total:
            now = time.perf_counter()
            due = start + n * interval
            while n < total and due <= now:
                result.max_lag = max(result.max_lag, now - due)
                seq = self.generator.next_seq()
                if self.idle:
                    self.send(self.idle.popleft(), seq, due)
                else:
                    self.pending.append((seq, due))
                    result.max_pending = max(result.max_pending, len(self.pending))
                n += 1
                due = start + n * interval
            if n < total:
                # uvloop timers have millisecond resolution; sleeping less would spin.
                await asyncio.sleep(max(due - now, 0.001))
        self.scheduling = False
        self.check_drained()


class _Generator:
    def __init__(self, templates: Sequence[RequestTemplate], tag: str) -> None:
        self.templates = list(templates)
        self.tag = tag.encode()
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def render(self, seq: int) -> bytes:
        template = self.templates[seq % len(self.templates)]
        return template.render(b"%s-%010d" % (self.tag, seq))


async def _run_phase(generator: _Generator, phase: Phase) -> PhaseResult:
    return await _Run(generator, phase).run()


def _loadgen_main(conn: Connection) -> None:
    """The load generator process: receives (templates, tag), then phases until None."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    templates, tag = conn.recv()
    generator = _Generator(templates, tag)
    gc.freeze()
    gc.disable()  # a collection pause would show up as server latency
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        while (phase := conn.recv()) is not None:
            try:
                conn.send(runner.run(_run_phase(generator, phase)))
            except Exception as exc:
                conn.send(exc)


class LoadGenerator:
    """The parent's handle on the load generator process."""

    def __init__(self, templates: Sequence[RequestTemplate], tag: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_loadgen_main, args=(child,), name="revloop-bench-loadgen", daemon=True
        )
        self.process.start()
        child.close()
        self._conn.send((list(templates), tag))

    def run(self, phase: Phase) -> PhaseResult:
        self._conn.send(phase)
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return cast(PhaseResult, answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    workers: int
    loop: str
    http: str

    def command(self, app: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-P",  # the working directory stays off sys.path, so nothing there shadows a package
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(self.workers),
            "--loop",
            self.loop,
            "--http",
            self.http,
            "--no-access-log",
            "--log-level",
            "warning",
        ]


class Server:
    """A uvicorn subprocess, up once /readyz answers 200."""

    def __init__(
        self, app: str, config: ServerConfig, env: dict[str, str], log_path: Path, port: int
    ) -> None:
        self.port = port
        self.command = config.command(app, self.port)
        self.child = Child(self.command, env=env, log_path=log_path)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def exited() -> None:
            if self.child.how_it_ended() is not None:
                raise RuntimeError(f"{self.command[3]} exited at start:\n{self.log_tail()}")

        if not wait_until_ok(f"http://{HOST}:{self.port}/readyz", timeout, check=exited):
            raise RuntimeError(f"{self.command[3]} not ready after {timeout}s:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        return [self.child.pid, *_descendants(self.child.pid)]

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down gracefully, so ingest flushes its producer."""
        self.child.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self.child.tail(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- CPU accounting from /proc (Linux; zeros elsewhere) ----------------------------------------


_TICK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _process_cpu(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _system_cpu() -> tuple[float, float]:
    """Seconds of CPU machine-wide since boot: (busy, stolen by the hypervisor).

    Steal is time this virtual machine's CPUs were ready to run but the host ran something
    else; it is kept apart because no process here spent it."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(v) for v in line.split()[1:9]
        )
        return (user + nice + system + irq + softirq) / _TICK, steal / _TICK
    return 0.0, 0.0


def busy_cores(seconds: float) -> tuple[float, float]:
    """Cores busy and cores stolen machine-wide over ``seconds``: the noise a run will meet."""
    (busy, steal), began = _system_cpu(), time.monotonic()
    time.sleep(seconds)
    (busy_after, steal_after), wall = _system_cpu(), time.monotonic() - began
    return round((busy_after - busy) / wall, 2), round((steal_after - steal) / wall, 2)


@dataclass
class CpuShare:
    """Cores in use during a phase: the server, the load generator, everything else (the Kafka
    broker, mostly), and the cores the hypervisor took away (steal)."""

    server: float
    loadgen: float
    other: float
    steal: float = 0.0


def mean_share(shares: Sequence[tuple[CpuShare, float]]) -> CpuShare:
    """The time-weighted mean of (share, seconds) pairs."""
    total = sum(seconds for _, seconds in shares) or 1.0

    def mean(name: str) -> float:
        return round(sum(float(getattr(share, name)) * s for share, s in shares) / total, 2)

    return CpuShare(*(mean(f.name) for f in fields(CpuShare)))


class _CpuMeter:
    def __init__(self, server: Server, loadgen: LoadGenerator) -> None:
        self.server_pids = server.pids()
        self.loadgen_pids = [loadgen.process.pid or 0]

    def _sample(self) -> tuple[float, float, float, float, float]:
        return (
            time.monotonic(),
            _process_cpu(self.server_pids),
            _process_cpu(self.loadgen_pids),
            *_system_cpu(),
        )

    def __enter__(self) -> _CpuMeter:
        self.start = self._sample()
        return self

    def __exit__(self, *_: object) -> None:
        wall, server, loadgen, busy, steal = (
            b - a for a, b in zip(self.start, self._sample(), strict=True)
        )
        wall = max(wall, 1e-9)
        self.share = CpuShare(
            server=round(server / wall, 2),
            loadgen=round(loadgen / wall, 2),
            other=round(max(busy - server - loadgen, 0.0) / wall, 2),
            steal=round(steal / wall, 2),
        )


# --- Kafka: what the bench stores wrote ---------------------------------------------------------


def end_offsets(settings: Settings) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, group_id="revloop-bench"))
    try:
        return high_watermarks(consumer, settings.topic_name(RAW_TOPIC))
    finally:
        consumer.close()


@dataclass
class Durability:
    accepted: int
    """200s the bench stores got, over every ingest phase (warm-up and drain included)."""
    records: int
    """Raw records in Kafka from the bench stores."""
    accepted_without_record: int
    """Must be 0: a 200 whose delivery is not in Kafka is an ack that was not durable."""
    ok: bool


def count_records(
    settings: Settings,
    since: dict[int, int],
    stores: Sequence[BenchStore],
    tag: str,
    accepted: set[int],
    timeout: float = 300.0,
) -> Durability:
    """Read the raw topic from ``since`` to its current end and match the bench stores' records
    (by message key, the store id) to the 200s (by delivery id)."""
    until = end_offsets(settings)
    raw_topic = settings.topic_name(RAW_TOPIC)
    ranges = {(raw_topic, p): (since.get(p, 0), end) for p, end in until.items()}
    keys = {store.store_id.encode() for store in stores}
    # The delivery id sits near the start of the Avro record; bench ids are unique to the run.
    delivery = re.compile(re.escape(tag.encode()) + rb"-(\d{10})")
    consumer = Consumer(
        consumer_config(
            settings, group_id=f"revloop-bench-{tag}", **{"max.partition.fetch.bytes": 8 << 20}
        )
    )
    records, stored = 0, set()
    try:
        for msg in read_ranges(consumer, ranges, timeout=timeout):
            if msg.key() in keys:
                records += 1
                found = delivery.search(msg.value() or b"", 0, 2048)
                if found:
                    stored.add(int(found.group(1)))
    finally:
        consumer.close()
    missing = len(accepted - stored)
    return Durability(
        accepted=len(accepted),
        records=records,
        accepted_without_record=missing,
        ok=missing == 0 and records >= len(accepted),
    )


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    duration: float = 10.0
    latency_duration: float = 10.0
    warmup: float = 5.0
    rounds: int = 3
    connections: int = 64
    platform: PlatformChoice = PlatformChoice.SHOPIFY
    stores: int = 1
    ingest_workers: int = 1
    loop: str = "auto"
    http: str = "auto"
    keep_topic: bool = False
    fixtures: Path | None = None
    ingest_app: str = "bench.ingest:ingest_app"
    bare_app: str = "bench.ingest:bare_app"


@dataclass
class Percentiles:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class ThroughputFigures:
    connections: int
    seconds: float
    answered_per_s: float
    accepted_per_s: float
    """The median over rounds."""
    round_accepted_per_s: list[float]
    accepted: int
    non_200: dict[str, int]
    closed_loop_latency: Percentiles
    cpu: CpuShare
    server_cpu_per_request_us: float
    """Server CPU (all its processes and threads) per answer: less sensitive to other load
    on the machine than the rate."""
    loadgen_cpu_per_request_us: float


@dataclass
class LatencyFigures:
    rate: float
    seconds: float
    sent: int
    accepted: int
    non_200: dict[str, int]
    latency: Percentiles
    max_send_lag_ms: float
    max_queued: int
    cpu: CpuShare


@dataclass
class ServerView:
    """The paced phase as ingest's own histograms saw it (scraped from /metrics around it):
    whether the tail is in the server and Kafka's acks, or before the request reached them."""

    requests: int
    requests_over_10ms_pct: float
    requests_over_25ms_pct: float
    acks_over_10ms_pct: float
    acks_over_25ms_pct: float


@dataclass
class BenchReport:
    machine: dict[str, str]
    options: dict[str, Any]
    ingest: ThroughputFigures
    ingest_latency: LatencyFigures
    bare: ThroughputFigures
    bare_latency: LatencyFigures
    ratio: float
    """The median over rounds of ingest's rate over the bare server's in the same round."""
    round_ratios: list[float]
    durability: Durability
    targets: list[dict[str, Any]]
    ingest_server_view: ServerView | None = None
    """None with several workers: a scrape reaches one worker only."""


def percentiles(samples: Sequence[float]) -> Percentiles:
    """Nearest-rank percentiles, in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return Percentiles(0.0, 0.0, 0.0, 0.0)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 2)

    return Percentiles(rank(50), rank(90), rank(99), round(ordered[-1] * 1000, 2))


def _non_200(*results: PhaseResult) -> dict[str, int]:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result.outcomes)
    return dict(total)


def resolve_impls(loop: str, http_impl: str) -> tuple[str, str]:
    """uvicorn's 'auto' choices, resolved the way uvicorn does, so the report names them."""
    if loop == "auto":
        loop = "uvloop" if find_spec("uvloop") else "asyncio"
    if http_impl == "auto":
        http_impl = "httptools" if find_spec("httptools") else "h11"
    return loop, http_impl


def machine_facts(config: ServerConfig) -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    import confluent_kafka

    return {
        "cpus": str(os.cpu_count()),
        "cpus usable": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0),
        "cpu model": model,
        "os": platform_module.platform(),
        "python": platform_module.python_version(),
        "uvicorn": f"{version('uvicorn')}, {config.workers} worker(s)",
        "loop": f"{config.loop} {version(config.loop) if config.loop == 'uvloop' else ''}".strip(),
        "http": f"{config.http} {version(config.http)}",
        "librdkafka": confluent_kafka.libversion()[0],
    }


def _server_env(
    settings: Settings, stores_file: Path, master_key: str, port: int
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REVLOOP_STORES_FILE=str(stores_file),
        REVLOOP_MASTER_KEYS=master_key,
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        REVLOOP_KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        REVLOOP_INGEST_HOST=HOST,
        REVLOOP_INGEST_PORT=str(port),
        REVLOOP_TOPIC_PREFIX=settings.topic_prefix,
    )
    if settings.schema_registry_url:
        env["SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    # Ingest refuses to start without it; the bench sends no feeds, so any value will do.
    salt = settings.customer_key_salt
    env["REVLOOP_CUSTOMER_KEY_SALT"] = (
        salt.get_secret_value() if salt and salt.get_secret_value() else secrets.token_hex(32)
    )
    return env


@contextlib.contextmanager
def _serving(
    app: str, config: ServerConfig, settings: Settings, workdir: Path, master_key: str
) -> Iterator[Server]:
    stores_file = workdir / "stores.json"
    log = workdir / f"{app.rsplit(':', 1)[-1]}.log"
    port = _free_port()
    env = _server_env(settings, stores_file, master_key, port)
    server = Server(app, config, env, log, port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


Histograms = dict[str, dict[float, float]]
"""Histogram name → upper bound → cumulative count, summed over label sets."""

SERVER_HISTOGRAMS = (REQUEST_SECONDS, PUBLISH_SECONDS)


def scrape_histograms(port: int) -> Histograms:
    client = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        client.request("GET", "/metrics")
        text = client.getresponse().read().decode()
    finally:
        client.close()
    found: Histograms = {name: {} for name in SERVER_HISTOGRAMS}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        buckets = found[family.name]
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return found


def add_histograms(total: Histograms, before: Histograms, after: Histograms) -> Histograms:
    """``total`` plus what the histograms counted between two scrapes."""
    summed: Histograms = {}
    for name, buckets in after.items():
        summed[name] = {
            bound: total.get(name, {}).get(bound, 0.0) + count - before[name].get(bound, 0.0)
            for bound, count in buckets.items()
        }
    return summed


def server_view(counted: Histograms) -> ServerView:
    def share_over(name: str, seconds: float) -> tuple[int, float]:
        total, within = counted[name][math.inf], counted[name][seconds]
        return int(total), round(100 * (total - within) / total, 3) if total else 0.0

    requests, requests_10 = share_over(SERVER_HISTOGRAMS[0], 0.01)
    _, requests_25 = share_over(SERVER_HISTOGRAMS[0], 0.025)
    _, acks_10 = share_over(SERVER_HISTOGRAMS[1], 0.01)
    _, acks_25 = share_over(SERVER_HISTOGRAMS[1], 0.025)
    return ServerView(requests, requests_10, requests_25, acks_10, acks_25)


REWARM_SECONDS: Final = 1.0
"""Unmeasured load before each window after a server's first: the other server ran meanwhile."""


@dataclass
class _Window:
    result: PhaseResult
    cpu: CpuShare


@dataclass
class _ServerRun:
    """One server under test and every window measured on it, over all rounds."""

    label: str
    server: Server
    connections: int
    scrape: bool = False
    """Scrape ingest's histograms around its paced windows (one worker only: a scrape reaches
    one worker)."""
    warmups: list[PhaseResult] = field(default_factory=list)
    saturated: list[_Window] = field(default_factory=list)
    paced: list[_Window] = field(default_factory=list)
    paced_rate: float = 0.0
    paced_histograms: Histograms | None = None
    """What ingest's histograms counted during the paced windows, summed."""

    def measure(
        self, loadgen: LoadGenerator, seconds: float, rate: float | None, warmup: float
    ) -> None:
        """Warm up, then measure one window: closed loop when ``rate`` is None, else paced."""
        phase = Phase(self.server.port, self.connections, seconds, rate)
        if warmup > 0:
            self.warmups.append(loadgen.run(replace(phase, seconds=warmup)))
        before = scrape_histograms(self.server.port) if self.scrape and rate else None
        with _CpuMeter(self.server, loadgen) as meter:
            result = loadgen.run(phase)
        if before is not None:
            after = scrape_histograms(self.server.port)
            self.paced_histograms = add_histograms(self.paced_histograms or {}, before, after)
        (self.saturated if rate is None else self.paced).append(_Window(result, meter.share))
        if rate is not None:
            self.paced_rate = rate

    def round_rates(self) -> list[float]:
        return [round(w.result.ok / w.result.seconds, 1) for w in self.saturated]

    def accepted_seqs(self) -> set[int]:
        results = [*self.warmups, *(w.result for w in (*self.saturated, *self.paced))]
        return {s for r in results for s in r.accepted_seqs}

    def throughput(self) -> ThroughputFigures:
        results = [w.result for w in self.saturated]
        seconds = sum(r.seconds for r in results)
        completed = sum(r.completed for r in results)
        cpu = mean_share([(w.cpu, w.result.seconds) for w in self.saturated])
        rates = self.round_rates()
        return ThroughputFigures(
            connections=self.connections,
            seconds=seconds,
            answered_per_s=round(statistics.median(r.completed / r.seconds for r in results), 1),
            accepted_per_s=round(statistics.median(rates), 1),
            round_accepted_per_s=rates,
            accepted=sum(r.ok for r in results),
            non_200=_non_200(*results, *self.warmups),
            closed_loop_latency=percentiles([x for r in results for x in r.latencies]),
            cpu=cpu,
            server_cpu_per_request_us=round(cpu.server * seconds / max(completed, 1) * 1e6, 1),
            loadgen_cpu_per_request_us=round(
                sum(r.loadgen_cpu for r in results) / max(sum(r.sent for r in results), 1) * 1e6,
                1,
            ),
        )

    def latency(self) -> LatencyFigures:
        results = [w.result for w in self.paced]
        return LatencyFigures(
            rate=round(self.paced_rate, 1),
            seconds=sum(r.seconds for r in results),
            sent=sum(r.sent for r in results),
            accepted=sum(r.ok for r in results),
            non_200=_non_200(*results),
            latency=percentiles([x for r in results for x in r.latencies]),
            max_send_lag_ms=round(max(r.max_lag for r in results) * 1000, 2),
            max_queued=max(r.max_pending for r in results),
            cpu=mean_share([(w.cpu, w.result.seconds) for w in self.paced]),
        )


def _measure_rounds(
    loadgen: LoadGenerator,
    ingest: _ServerRun,
    bare: _ServerRun,
    options: BenchOptions,
    log: Callable[[str], None],
) -> None:
    """Closed-loop windows for both servers, interleaved round by round, then paced windows at
    half ingest's median rate, interleaved the same way. Each round swaps which server goes
    first, so drift in the machine's other load falls on both alike."""

    def in_turn(r: int) -> tuple[_ServerRun, _ServerRun]:
        return (ingest, bare) if r % 2 == 0 else (bare, ingest)

    def warmup(windows: list[_Window], first: float) -> float:
        return min(options.warmup, REWARM_SECONDS) if windows else first

    for r in range(options.rounds):
        for run in in_turn(r):
            log(
                f"round {r + 1}/{options.rounds}, {run.label}: closed loop, "
                f"{options.connections} connections, {options.duration:g}s"
            )
            run.measure(loadgen, options.duration, None, warmup(run.saturated, options.warmup))
    rate = max(statistics.median(ingest.round_rates()) / 2, 1.0)
    for r in range(options.rounds):
        for run in in_turn(r):
            log(
                f"round {r + 1}/{options.rounds}, {run.label}: open loop at {rate:.0f}/s, "
                f"{options.latency_duration:g}s"
            )
            first = min(options.warmup, 2.0)
            run.measure(loadgen, options.latency_duration, rate, warmup(run.paced, first))


def run_bench(
    options: BenchOptions, settings: Settings, log: Callable[[str], None] = lambda _: None
) -> BenchReport:
    loop, http_impl = resolve_impls(options.loop, options.http)
    config = ServerConfig(options.ingest_workers, loop, http_impl)
    tag = f"bench{secrets.token_hex(4)}"
    stores = bench_stores(tag, options.platform, options.stores)
    # The run's own raw topic (the catalogue's, under a prefix): its records are the run's only,
    # and deleting it afterwards keeps a few GB per run out of the local broker.
    settings = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{tag}."})
    ensure_topics(settings, prefixed(settings.topic_prefix, [RAW_TOPIC]))
    try:
        ingest, ceiling, durability, (busy, steal) = _run_servers(
            options, settings, config, tag, stores, log
        )
    finally:
        if not options.keep_topic:
            delete_topics(settings, [settings.topic_name(RAW_TOPIC)])
    throughput, ceiling_throughput = ingest.throughput(), ceiling.throughput()
    latency = ingest.latency()
    round_ratios = [
        round(i / max(b, 1e-9), 3)
        for i, b in zip(ingest.round_rates(), ceiling.round_rates(), strict=True)
    ]
    ratio = round(statistics.median(round_ratios), 3)
    targets = [
        _target(
            "accepted deliveries/s",
            f">= {TARGET_ACCEPTED_PER_S:,.0f}",
            f"{throughput.accepted_per_s:,.0f}",
            throughput.accepted_per_s >= TARGET_ACCEPTED_PER_S,
        ),
        _target(
            "every 200 durable in Kafka",
            "0 missing",
            f"{durability.accepted_without_record} missing",
            durability.ok,
        ),
        _target(
            "p99 at half load",
            f"<= {TARGET_P99_MS:g} ms",
            f"{latency.latency.p99_ms:g} ms",
            latency.latency.p99_ms <= TARGET_P99_MS and latency.accepted > 0,
        ),
        _target("ingest / bare", f">= {TARGET_RATIO:g}", f"{ratio:.2f}", ratio >= TARGET_RATIO),
    ]
    return BenchReport(
        machine={
            **machine_facts(config),
            "cores busy before the run": f"{busy:.2f}",
            "cores stolen before the run": f"{steal:.2f}",
        },
        options={
            **asdict(options),
            "platform": str(options.platform),
            "tag": tag,
            "topic": settings.topic_name(RAW_TOPIC),
        },
        ingest=throughput,
        ingest_latency=latency,
        bare=ceiling_throughput,
        bare_latency=ceiling.latency(),
        ratio=ratio,
        round_ratios=round_ratios,
        durability=durability,
        targets=targets,
        ingest_server_view=(
            server_view(ingest.paced_histograms) if ingest.paced_histograms else None
        ),
    )


def _run_servers(
    options: BenchOptions,
    settings: Settings,
    config: ServerConfig,
    tag: str,
    stores: Sequence[BenchStore],
    log: Callable[[str], None],
) -> tuple[_ServerRun, _ServerRun, Durability, tuple[float, float]]:
    before = end_offsets(settings)
    background = busy_cores(2.0)
    log(f"cores busy before the run: {background[0]:.2f}, stolen: {background[1]:.2f}")
    master_key = new_master_key("bench")
    key_id, _, encoded = master_key.partition(":")
    box = SecretBox({key_id: base64.b64decode(encoded)}, key_id)
    with tempfile.TemporaryDirectory(prefix="revloop-bench-") as tmp:
        workdir = Path(tmp)
        registry_of(stores).save(workdir / "stores.json", box)
        loadgen = LoadGenerator(request_templates(stores, options.fixtures), tag)
        try:
            log(
                f"uvicorn --workers {config.workers} --loop {config.loop} --http {config.http}; "
                f"stores {tag}*"
            )
            # Both servers stay up for the whole run, so their windows can alternate; the idle
            # one costs next to nothing (it is counted under "other").
            with (
                _serving(options.ingest_app, config, settings, workdir, master_key) as server,
                _serving(options.bare_app, config, settings, workdir, master_key) as bare_server,
            ):
                ingest = _ServerRun("ingest", server, options.connections, config.workers == 1)
                bare = _ServerRun("bare", bare_server, options.connections)
                _measure_rounds(loadgen, ingest, bare, options, log)
        finally:
            loadgen.close()
    # Counted after ingest's graceful stop, which flushed its producer.
    log(f"durability: reading the bench stores' records back from {settings.topic_name(RAW_TOPIC)}")
    durability = count_records(settings, before, stores, tag, ingest.accepted_seqs())
    return ingest, bare, durability, background


def _target(name: str, goal: str, measured: str, met: bool) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": met}


# --- output -----------------------------------------------------------------------------------


def print_report(report: BenchReport, console: Console) -> None:
    facts = Table(title="machine", show_header=False)
    for key, value in report.machine.items():
        facts.add_row(key, value)
    console.print(facts)

    table = Table(title=f"revloop bench ingest ({report.options['platform']})")
    columns = (
        "phase",
        "200/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "non-200",
        "cores s/g/o/st",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("phase", "non-200") else "right")

    def cores(cpu: CpuShare) -> str:
        return f"{cpu.server:.2f}/{cpu.loadgen:.2f}/{cpu.other:.2f}/{cpu.steal:.2f}"

    def errors(outcomes: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in outcomes.items()) or "0"

    def latency_cells(lat: Percentiles) -> list[str]:
        return [f"{lat.p50_ms:g}", f"{lat.p90_ms:g}", f"{lat.p99_ms:g}", f"{lat.max_ms:g}"]

    for name, t in (("ingest", report.ingest), ("bare", report.bare)):
        table.add_row(
            f"{name} closed loop, {t.connections} conns",
            f"{t.accepted_per_s:,.0f}",
            *latency_cells(t.closed_loop_latency),
            errors(t.non_200),
            cores(t.cpu),
        )
    for name, p in (("ingest", report.ingest_latency), ("bare", report.bare_latency)):
        table.add_row(
            f"{name} paced at {p.rate:,.0f}/s",
            f"{p.accepted / p.seconds:,.0f}",
            *latency_cells(p.latency),
            errors(p.non_200),
            cores(p.cpu),
        )
    console.print(table)
    rounds = report.ingest.round_accepted_per_s
    console.print(
        f"{len(rounds)} rounds, closed loop 200/s (medians above): ingest "
        f"{', '.join(f'{r:,.0f}' for r in rounds)}; bare "
        f"{', '.join(f'{r:,.0f}' for r in report.bare.round_accepted_per_s)}; ratio "
        f"{', '.join(f'{r:.2f}' for r in report.round_ratios)}. Paced rows pool every round.\n"
        "cores s/g/o/st: cores busy in the server, the load generator and the rest (the broker, "
        "the idle server), and cores stolen by the hypervisor.\n"
        f"Server CPU per answer: ingest {report.ingest.server_cpu_per_request_us:g} µs, bare "
        f"{report.bare.server_cpu_per_request_us:g} µs. Load generator: "
        f"{report.ingest.loadgen_cpu_per_request_us:g} µs per request; "
        f"paced sends at most {report.ingest_latency.max_send_lag_ms:g} ms late, "
        f"{report.ingest_latency.max_queued} waiting for a free connection at most."
    )
    view = report.ingest_server_view
    if view is not None:
        console.print(
            f"ingest's own histograms for its paced phase: {view.requests_over_10ms_pct:g}% of "
            f"{view.requests:,} requests took over 10 ms in the server "
            f"({view.requests_over_25ms_pct:g}% over 25 ms); Kafka acked "
            f"{view.acks_over_10ms_pct:g}% of records after 10 ms "
            f"({view.acks_over_25ms_pct:g}% after 25 ms)."
        )
    d = report.durability
    style = "green" if d.ok else "bold red"
    console.print(
        f"durability: {d.accepted:,} answered 200, {d.records:,} records in "
        f"{report.options['topic']} from the bench stores, "
        f"{d.accepted_without_record} 200s without a record",
        style=style,
    )
    non_200 = _non_200_total(report)
    if non_200:
        console.print(f"NON-200 ANSWERS OR ERRORS: {non_200}", style="bold red")

    targets = Table(title="targets (2 cores)")
    for column in ("target", "goal", "measured", ""):
        targets.add_column(column)
    for target in report.targets:
        targets.add_row(
            target["target"],
            target["goal"],
            target["measured"],
            "[green]met[/green]" if target["met"] else "[red]missed[/red]",
        )
    console.print(targets)


def _non_200_total(report: BenchReport) -> dict[str, int]:
    total: Counter[str] = Counter()
    for outcomes in (
        report.ingest.non_200,
        report.ingest_latency.non_200,
        report.bare.non_200,
        report.bare_latency.non_200,
    ):
        total.update(outcomes)
    return dict(total)


def report_json(report: BenchReport) -> str:
    return json.dumps(asdict(report), indent=2, default=str)


@bench_app.command("ingest")
def ingest_command(
    duration: float = typer.Option(
        10.0, help="Seconds of closed-loop load per server and round.", min=0.5
    ),
    latency_duration: float = typer.Option(
        10.0, help="Seconds of paced load at half the median rate, per server and round.", min=0.5
    ),
    warmup: float = typer.Option(
        5.0, help="Seconds of unmeasured load before a server's first window.", min=0
    ),
    rounds: int = typer.Option(
        3, help="Rounds; each measures both servers, alternating which goes first.", min=1
    ),
    connections: int = typer.Option(64, help="Keep-alive connections.", min=1),
    platform: PlatformChoice = typer.Option(  # noqa: B008
        PlatformChoice.SHOPIFY, help="Which webhooks to send; mix rotates all three."
    ),
    stores: int = typer.Option(
        1, help="Stores per platform; more spread the load over the raw topic's partitions.", min=1
    ),
    ingest_workers: int = typer.Option(
        1, help="uvicorn workers (the ceiling uses as many).", min=1
    ),
    loop: str = typer.Option("auto", help="uvicorn --loop for both servers."),
    http: str = typer.Option("auto", help="uvicorn --http for both servers."),
    json_path: Path | None = typer.Option(  # noqa: B008
        None, "--json", help="Also write the figures as JSON to this file ('-': stdout)."
    ),
    keep_topic: bool = typer.Option(
        False, help="Keep the run's own raw topic (<tag>.raw.webhooks.v1) instead of deleting it."
    ),
    fixtures: Path = typer.Option(  # noqa: B008
        DEFAULT_FIXTURES, help="Folder of order fixtures to send (synthetic orders when absent)."
    ),
    ingest_app_ref: str = typer.Option(
        "bench.ingest:ingest_app", "--ingest-app", hidden=True, help="uvicorn factory to measure."
    ),
    bare_app_ref: str = typer.Option(
        "bench.ingest:bare_app", "--bare-app", hidden=True, help="uvicorn factory for the ceiling."
    ),
) -> None:
    """Measure ingest: accepted deliveries/s, p50/p99 at half that load, and the bare ceiling."""
    console = Console(stderr=json_path == Path("-"))
    console.width = max(console.width, 112)
    options = BenchOptions(
        duration=duration,
        latency_duration=latency_duration,
        warmup=warmup,
        rounds=rounds,
        connections=connections,
        platform=platform,
        stores=stores,
        ingest_workers=ingest_workers,
        loop=loop,
        http=http,
        keep_topic=keep_topic,
        fixtures=fixtures,
        ingest_app=ingest_app_ref,
        bare_app=bare_app_ref,
    )
    try:
        report = run_bench(options, get_settings(), log=lambda m: console.print(m, style="dim"))
    except (ConnectionError, RuntimeError, TimeoutError, KafkaException) as exc:
        console.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from exc
    print_report(report, console)
    if json_path == Path("-"):
        sys.stdout.write(report_json(report) + "\n")
    elif json_path is not None:
        json_path.write_text(report_json(report) + "\n")
    if not report.durability.ok:
        raise typer.Exit(2)
