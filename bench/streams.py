"""`revloop bench streams`: one worker's throughput against a bare consume-and-produce loop of
the same client on the same topics, and its latency from an inventory update to the pause or
resume it causes, readable with read_committed (docs/benchmarks.md).

Everything runs on topics of the run's own (the catalogue under a fresh prefix), deleted after.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from confluent_kafka import Consumer, Producer
from rich.console import Console

from revloop.kafka import (
    admin_client,
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    read_ranges,
)
from revloop.settings import Settings, get_settings
from schemas.registry import registry_for
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
    latency_sent: int
    latency_events: int
    latency_p50_ms: float
    latency_p99_ms: float
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


def produce(producer: Producer, name: str, key: bytes | None, value: bytes | None) -> None:
    """Produce, waiting for room when the client's queue is full."""
    while True:
        try:
            producer.produce(name, key=key, value=value)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


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


def ceiling(settings: Settings, events: int) -> float:
    """Consume the run's inputs from the start and produce each record again (to a topic of
    the run's), in batches: the same client library, no state, no transactions."""
    sink = f"{settings.topic_prefix}bench.ceiling"
    ensure_topics(settings, [replace(topic(INPUTS[0]), name=sink)])
    consumer = Consumer(consumer_config(settings, f"bench-ceiling-{uuid.uuid4().hex[:6]}"))
    producer = Producer(producer_config(settings))
    consumer.subscribe([settings.topic_prefix + name for name in INPUTS])
    seen, started = 0, 0.0
    try:
        while seen < events:
            batch = consumer.consume(500, 1.0)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            for message in batch:
                if message.error():
                    continue
                produce(producer, sink, message.key(), message.value())
                seen += 1
        producer.flush(60)
        consumer.commit(asynchronous=False)
        return seen / (time.perf_counter() - started)
    finally:
        consumer.close()


# -- the worker ----------------------------------------------------------------------------------


@contextmanager
def worker(
    settings: Settings, state_dir: Path, log_path: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "revloop", "worker", "--instance-id", "bench"],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "REVLOOP_TOPIC_PREFIX": settings.topic_prefix,
            "REVLOOP_STATE_DIR": str(state_dir),
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


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
    serde = AvroSerde(registry_for(settings.schema_registry_url))
    ensure_topics(settings, prefixed(settings.topic_prefix))
    reader = Consumer(consumer_config(settings, f"bench-marks-{uuid.uuid4().hex[:6]}"))
    log_path = settings.state_dir / "bench-streams-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    progress(f"the worker's log: {log_path}")
    try:
        with tempfile.TemporaryDirectory(prefix="revloop-bench-") as tmp:
            state_dir = Path(tmp)
            interval = str(commit_interval)
            with worker(
                settings, state_dir, log_path, REVLOOP_WORKER_COMMIT_INTERVAL_SECONDS=interval
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
            ceiling_rate = ceiling(settings, events + 30)
            progress(f"latency: {latency_rate:.0f} inventory updates/s for {latency_seconds:.0f} s")
            # Topics and a worker of their own: a fresh group would first read the throughput
            # run's events, and a dwell of 0 changes the topology, which quixstreams cannot
            # resume a group with.
            quiet = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}lat."})
            ensure_topics(quiet, prefixed(quiet.topic_prefix))
            with worker(
                quiet,
                state_dir / "latency",
                log_path,
                REVLOOP_BREAKER_DWELL_SECONDS="0",
                REVLOOP_WORKER_COMMIT_INTERVAL_SECONDS=interval,
            ):
                wait_started(quiet, reader, serde)
                samples, sent = latency(quiet, serde, latency_rate, latency_seconds)
    finally:
        reader.close()
        names = admin_client(settings).list_topics(timeout=10).topics
        delete_topics(settings, [n for n in names if tag in n])
    return StreamsReport(
        commit=_commit(),
        events=events,
        ceiling_per_s=round(ceiling_rate),
        worker_per_s=round(worker_rate),
        ratio=round(worker_rate / ceiling_rate, 3),
        latency_rate=latency_rate,
        latency_sent=sent,
        latency_events=len(samples),
        latency_p50_ms=round(percentile(samples, 0.50), 1),
        latency_p99_ms=round(percentile(samples, 0.99), 1),
        commit_interval_s=commit_interval,
    )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def streams_command(
    events: int = typer.Option(60_000, help="Canonical events for the throughput run.", min=1000),
    seed: int = typer.Option(7, help="Seed of the generated events."),
    latency_rate: float = typer.Option(1000.0, help="Inventory updates per second, paced.", min=1),
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
    """One worker's events/s against a bare consume-and-produce ceiling, and its latency from
    an inventory update to its action (read_committed)."""
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
        f"  inventory update -> action readable, at {report.latency_rate:.0f}/s: "
        f"p50 {report.latency_p50_ms} ms, p99 {report.latency_p99_ms} ms over "
        f"{report.latency_events} of {report.latency_sent} actions (target p99 <= "
        f"{TARGET_P99_MS:.0f} ms; commit interval {report.commit_interval_s} s)"
    )
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
