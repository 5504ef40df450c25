"""`revloop bench accept-path`: the CPU each step of accepting one webhook costs, per platform,
without HTTP. It makes the per-step figures in docs/benchmarks.md reproducible, and it is the
tool for judging a change to the accept path: the HTTP bench's rate drifts with everything else
on the machine, while CPU per call drifts less.

Steps, each timed in rounds that interleave steps and platforms:

- ``hmac``: one HMAC-SHA256 of the body with ``hmac.digest``. The floor any verification pays,
  and the reference every other step is quoted against, so ratios survive machine drift.
- ``authenticate``: the platform module's ``authenticate``: headers, store lookup, signature,
  event id (docs/ingest.md).
- ``encode``: the raw record built and Avro-encoded, as ingest publishes it.
- ``publish``: ``DurablePublisher.publish`` of those encoded records, 64 in flight, until Kafka
  acks each one.
- ``receive``: ``IngestService.receive`` end to end with a real producer against the broker,
  64 deliveries in flight, until Kafka acks each one. librdkafka's threads (compression,
  sockets) count too. What ``receive`` costs beyond ``authenticate``, ``encode`` and ``publish``
  is the service's own bookkeeping (metrics, headers kept, the reply).
``publish`` and ``receive`` write to a raw topic of their own, deleted afterwards, and are
skipped with ``--no-kafka``.

Each figure is the median over rounds of µs of the process's CPU per call, next to the calling
(event loop) thread's share; ``per hmac`` is the median of the per-round ratios to ``hmac`` on
the same body.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import itertools
import json
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, cast

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from bench.ingest import (
    DEFAULT_FIXTURES,
    BenchStore,
    PlatformChoice,
    bench_stores,
    end_offsets,
    registry_of,
    request_templates,
)
from ingest.app import RAW_RECORD, RAW_TOPIC, IngestService
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher, PublishUnavailable
from platforms import PLATFORMS
from platforms.webhooks import Delivery, raw_record
from revloop.kafka import delete_topics, ensure_topics, serde_for
from revloop.settings import Settings, get_settings
from revloop.stores import StoreRegistry
from schemas.serde import AvroSerde
from schemas.topics import prefixed

STEPS: Final = ("hmac", "authenticate", "encode", "publish", "receive")
KAFKA_STEPS: Final = ("publish", "receive")
IN_FLIGHT: Final = 64
"""Concurrent deliveries in the ``receive`` step, as the HTTP bench's 64 connections."""


@dataclass(frozen=True)
class Request:
    """One signed webhook as ingest's ASGI layer hands it over: lower-case headers, raw body."""

    platform: str
    headers: Mapping[str, str]
    body: bytes
    secret: bytes


def signed_requests(stores: Sequence[BenchStore], fixtures: Path | None = None) -> list[Request]:
    """The HTTP bench's requests (same bodies and signatures), parsed back into headers and
    body, each with its own delivery id."""
    templates = request_templates(stores, fixtures)  # rotates through the stores in order
    requests = []
    for n, (template, store) in enumerate(zip(templates, itertools.cycle(stores))):
        head, body = template.render(b"request-%010d" % n).split(b"\r\n\r\n", 1)
        _request_line, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        requests.append(Request(store.platform, headers, body, store.secret))
    return requests


@dataclass
class StepFigures:
    platform: str
    step: str
    calls_per_round: int
    us_per_call: list[float] = field(default_factory=list)
    """The process's CPU, one figure per measured round: librdkafka's threads count too."""
    thread_us_per_call: list[float] = field(default_factory=list)
    """The calling thread's CPU: what the event loop itself spends."""
    times_hmac: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.us_per_call)

    @property
    def min_us(self) -> float:
        return min(self.us_per_call)

    @property
    def median_thread_us(self) -> float:
        return statistics.median(self.thread_us_per_call)

    @property
    def median_times_hmac(self) -> float:
        return statistics.median(self.times_hmac)


@dataclass(frozen=True)
class MicroReport:
    rounds: int
    python: str
    kafka: str | None
    """The broker the ``receive`` step wrote to, or None when it was skipped."""
    figures: list[StepFigures]
    acked: int
    """Records Kafka acked to the ``publish`` and ``receive`` steps (each 200 is one), warm-up
    included."""
    records: int
    """Records in the steps' own raw topic once they were done: must equal ``acked``."""


def _cpu_us_per_call(calls: int, run: Callable[[int], None]) -> tuple[float, float]:
    """µs per call of the whole process's CPU and of the calling thread's."""
    process, thread = time.process_time_ns(), time.thread_time_ns()
    run(calls)
    process, thread = time.process_time_ns() - process, time.thread_time_ns() - thread
    return process / 1000 / calls, thread / 1000 / calls


class AcceptPath:
    """The steps for one platform, over that platform's share of the signed requests.
    ``service`` is needed only by ``receive``."""

    def __init__(
        self,
        requests: Sequence[Request],
        stores: StoreRegistry,
        serde: AvroSerde,
        service: IngestService | None,
    ) -> None:
        self.requests = list(requests)
        self.platform = self.requests[0].platform
        self.module = PLATFORMS[self.platform]
        self.stores = stores
        self.serde = serde
        self.service = service
        self.now = datetime.now(UTC)
        self.acked = 0

    def hmac(self, calls: int) -> None:
        next_request = itertools.cycle(self.requests).__next__
        for _ in range(calls):
            request = next_request()
            hmac.digest(request.secret, request.body, "sha256")

    def authenticate(self, calls: int) -> None:
        next_request = itertools.cycle(self.requests).__next__
        stores, now = self.stores, self.now
        for _ in range(calls):
            request = next_request()
            self.module.authenticate(request.body, request.headers, stores, now)

    @functools.cached_property
    def _deliveries(self) -> list[tuple[Request, Delivery]]:
        """Authenticated once, so ``encode`` and ``publish`` time only their own work."""
        return [
            (r, self.module.authenticate(r.body, r.headers, self.stores, self.now))
            for r in self.requests
        ]

    @functools.cached_property
    def _encoded(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of each request's raw record, as ingest publishes it."""
        records = [
            raw_record(delivery, request.body, "application/json", self.now)
            for request, delivery in self._deliveries
        ]
        return [(RAW_TOPIC.message_key(r), self.serde.encode(RAW_RECORD, r)) for r in records]

    def encode(self, calls: int) -> None:
        deliveries = self._deliveries
        encode = self.serde.encode
        for n in range(calls):
            request, delivery = deliveries[n % len(deliveries)]
            record = raw_record(delivery, request.body, "application/json", self.now)
            encode(RAW_RECORD, record)

    def publish(self, calls: int, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self._publish_all(calls))
        self.acked += calls

    async def _publish_all(self, calls: int) -> None:
        assert self.service is not None, "publish needs Kafka"
        topic, publish = self.service.raw_topic, self.service.publisher.publish
        encoded = self._encoded
        for start in range(0, calls, IN_FLIGHT):
            await asyncio.gather(
                *(
                    publish(topic, *encoded[n % len(encoded)])
                    for n in range(start, min(start + IN_FLIGHT, calls))
                )
            )

    def receive(self, calls: int, loop: asyncio.AbstractEventLoop) -> None:
        statuses = loop.run_until_complete(self._receive_all(calls))
        self.acked += statuses.count(200)
        refused = {s for s in statuses if s != 200}
        if refused:
            raise RuntimeError(f"ingest answered {sorted(refused)} (is Kafka up?)")

    async def _receive_all(self, calls: int) -> list[int]:
        assert self.service is not None, "receive needs Kafka"
        service = self.service
        next_request = itertools.cycle(self.requests).__next__
        statuses: list[int] = []

        async def one(request: Request) -> None:
            async def read_body(_limit: int) -> bytes:
                return request.body

            reply = await service.receive(self.platform, request.headers, read_body)
            statuses.append(reply.status)

        for start in range(0, calls, IN_FLIGHT):
            await asyncio.gather(
                *(one(next_request()) for _ in range(min(IN_FLIGHT, calls - start)))
            )
        return statuses


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # ingest runs on uvloop when it is installed, as uvicorn picks it

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def measure(
    settings: Settings,
    platform: PlatformChoice,
    rounds: int,
    round_seconds: float,
    with_kafka: bool,
    log: Callable[[str], None] = lambda _: None,
    fixtures: Path | None = None,
) -> MicroReport:
    tag = "micro" + secrets.token_hex(4)
    specs = bench_stores(tag, platform)
    by_platform: dict[str, list[Request]] = {}
    for request in signed_requests(specs, fixtures):
        by_platform.setdefault(request.platform, []).append(request)
    stores = registry_of(specs)
    serde = serde_for(settings)
    steps = [s for s in STEPS if with_kafka or s not in KAFKA_STEPS]
    settings = settings.model_copy(update={"topic_prefix": f"{tag}."})
    (raw_topic,) = prefixed(settings.topic_prefix, [RAW_TOPIC])
    publisher = DurablePublisher(settings, ack_timeout=5.0) if with_kafka else None
    service = None
    records = 0
    if publisher is not None:
        service = IngestService(stores, publisher, serde, IngestMetrics(), settings=settings)
        ensure_topics(settings, [raw_topic])
        log(f"receive writes to {raw_topic.name}, deleted afterwards")
    paths = [AcceptPath(reqs, stores, serde, service) for reqs in by_platform.values()]
    loop = _new_loop()
    try:
        figures = _rounds(paths, steps, rounds, round_seconds, loop, log)
    finally:
        loop.close()
        if publisher is not None:
            publisher.close()
            records = sum(end_offsets(settings).values())
            delete_topics(settings, [raw_topic.name], timeout=30)
    return MicroReport(
        rounds=rounds,
        python=sys.version.split()[0],
        kafka=settings.bootstrap_servers if with_kafka else None,
        figures=figures,
        acked=sum(path.acked for path in paths),
        records=records,
    )


def _rounds(
    paths: Sequence[AcceptPath],
    steps: Sequence[str],
    rounds: int,
    round_seconds: float,
    loop: asyncio.AbstractEventLoop,
    log: Callable[[str], None],
) -> list[StepFigures]:
    def runner(path: AcceptPath, step: str) -> Callable[[int], None]:
        if step in KAFKA_STEPS:
            return lambda calls: cast(Callable[..., None], getattr(path, step))(calls, loop)
        return cast(Callable[[int], None], getattr(path, step))

    figures = {(p.platform, s): StepFigures(p.platform, s, 0) for p in paths for s in steps}
    # Round 0 warms caches and the producer's connection, then sizes each step to round_seconds.
    for path in paths:
        for step in steps:
            run = runner(path, step)
            _cpu_us_per_call(IN_FLIGHT, run)
            us, _ = _cpu_us_per_call(IN_FLIGHT, run)
            calls = max(IN_FLIGHT, int(round_seconds * 1e6 / max(us, 0.01)))
            figures[path.platform, step].calls_per_round = calls - calls % IN_FLIGHT
    gc.collect()
    gc.freeze()  # as ingest does after startup, so a full collection of setup garbage is no step's
    for n in range(rounds):
        log(f"round {n + 1} of {rounds}")
        for path in paths if n % 2 == 0 else reversed(paths):
            hmac_us = None
            for step in steps:
                entry = figures[path.platform, step]
                us, thread_us = _cpu_us_per_call(entry.calls_per_round, runner(path, step))
                entry.us_per_call.append(us)
                entry.thread_us_per_call.append(thread_us)
                if step == "hmac":
                    hmac_us = us
                assert hmac_us is not None
                entry.times_hmac.append(us / hmac_us)
    return list(figures.values())


def print_micro_report(report: MicroReport, console: Console) -> None:
    table = Table(title=f"accept path, µs of CPU per call (median of {report.rounds} rounds)")
    columns = ("platform", "step", "median µs", "min µs", "loop thread µs", "per hmac", "calls")
    for column in columns:
        table.add_column(column, justify="left" if column in ("platform", "step") else "right")
    for f in report.figures:
        table.add_row(
            f.platform,
            f.step,
            f"{f.median_us:.1f}",
            f"{f.min_us:.1f}",
            f"{f.median_thread_us:.1f}",
            f"{f.median_times_hmac:.2f}",
            f"{f.calls_per_round:,}",
        )
    console.print(table)
    where = (
        f"Kafka at {report.kafka}: {report.acked:,} acked, {report.records:,} records"
        if report.kafka
        else "no Kafka (receive skipped)"
    )
    console.print(f"Python {report.python}; {where}", style="dim")


def report_dict(report: MicroReport) -> dict[str, object]:
    data = asdict(report)
    for entry, figures in zip(data["figures"], report.figures, strict=True):
        entry.update(
            median_us=figures.median_us,
            min_us=figures.min_us,
            median_thread_us=figures.median_thread_us,
            median_times_hmac=figures.median_times_hmac,
        )
    return data


def accept_path_command(
    platform: PlatformChoice = typer.Option(  # noqa: B008
        PlatformChoice.MIX, help="One platform, or mix for all three."
    ),
    rounds: int = typer.Option(7, help="Measured rounds (after one warm-up round).", min=1),
    round_seconds: float = typer.Option(
        0.2, help="About how long each step runs per round.", min=0.01
    ),
    kafka: bool = typer.Option(True, help="Measure the receive step against the broker."),
    json_path: Path | None = typer.Option(  # noqa: B008
        None, "--json", help="Also write the figures as JSON to this file."
    ),
    fixtures: Path = typer.Option(  # noqa: B008
        DEFAULT_FIXTURES, help="Folder of order fixtures to send (synthetic orders when absent)."
    ),
) -> None:
    """Measure CPU per call of each step of the accept path: HMAC, authenticate, encode, receive."""
    console = Console()
    console.width = max(console.width, 100)
    try:
        report = measure(
            get_settings(),
            platform,
            rounds,
            round_seconds,
            kafka,
            log=lambda m: console.print(m, style="dim"),
            fixtures=fixtures,
        )
    except (RuntimeError, KafkaException, PublishUnavailable) as exc:
        console.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from exc
    print_micro_report(report, console)
    if json_path is not None:
        json_path.write_text(json.dumps(report_dict(report), indent=2) + "\n")
    if report.records != report.acked:
        console.print("some acks have no record in Kafka", style="red")
        raise typer.Exit(2)
