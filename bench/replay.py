"""`revloop bench replay`: `revloop replay export` events/s, decoding included, against a bare
confluent-kafka consume of the same records (docs/ops.md, "Replay"; docs/benchmarks.md).

N orders (``commerce.orders.v1``, 6 partitions) are published to a topic of the run's own
(the catalogue under a fresh prefix, deleted after). Then, alternating over ``--rounds``:

- **Ceiling**: a group-less consumer assigned every partition from its start, ``consume`` in
  batches until each partition's position reaches its end; nothing else done with a message.
- **Export**: the same code as the command (``revloop.history``): the seek plan by time
  (``offsets_for_times`` on every partition), the batched reader, decoding with cached parsed
  schemas, and writing the Avro OCF (deflate) or JSON Lines file to a scratch directory.

Both are timed from client creation to the last record, so both pay connecting and fetching
the same bytes. The best round of each is reported, and the ratio of each round. JSON Lines
decodes every record and is an order of magnitude slower: it is run once, after the rounds.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from confluent_kafka import Consumer, Producer
from rich.console import Console

from bench.common import git_commit, produce
from bench.sinks import Shops
from revloop.history import Decoder, TopicSchemas, export, plan_range, planned_batches
from revloop.kafka import (
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    serde_for,
)
from revloop.settings import Settings, get_settings
from schemas.registry import registry_for
from schemas.topics import prefixed, topic

E = "dev.revloop.events."
TOPIC = "commerce.orders.v1"
TARGET_RATE = 100_000
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class ReplayReport:
    commit: str
    events: int
    ceiling_per_s: float
    avro_per_s: float
    jsonl_per_s: float
    avro_bytes: int
    jsonl_bytes: int

    @property
    def ratio(self) -> float:
        return self.avro_per_s / self.ceiling_per_s


def _reader(settings: Settings) -> Consumer:
    return Consumer(
        consumer_config(
            settings,
            f"bench-replay-{uuid.uuid4().hex[:8]}",
            **{"fetch.max.bytes": 64 * 1024 * 1024},
        )
    )


def publish_orders(settings: Settings, count: int, stores: int, seed: int) -> None:
    shops = Shops(stores, seed)
    serde = serde_for(settings)
    for store in shops.stores:  # each store gets products and customers for orders to refer to
        for _ in range(5):
            shops.product(store, datetime.now(UTC))
            shops.customer(store, datetime.now(UTC))
    orders = topic(TOPIC)
    name = settings.topic_name(orders)
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    start = datetime(2026, 9, 1, tzinfo=UTC)
    for n in range(count):
        _, value = shops.order(shops.rng.choice(shops.stores), start + timedelta(seconds=n))
        produce(producer, name, orders.message_key(value), serde.encode(E + "OrderEvent", value))
    if producer.flush(120):
        raise RuntimeError("Kafka did not acknowledge every order in 120 s")


def bare_consume(settings: Settings) -> tuple[int, float]:
    """Records and seconds of a plain batched read of the whole topic: the export's own read
    loop (``planned_batches``), with nothing done to a record but counting it."""
    name = settings.topic_name(topic(TOPIC))
    started = time.perf_counter()
    consumer = _reader(settings)
    try:
        plan = {p: (0, end) for p, end in high_watermarks(consumer, name).items() if end}
        seen = 0
        for messages in planned_batches(consumer, name, plan):
            seen += len(messages)
        return seen, time.perf_counter() - started
    finally:
        consumer.close()


def timed_export(
    settings: Settings, out: Path, jsonl: bool, codec: str = "deflate"
) -> tuple[int, float]:
    """Records and seconds of the export of the whole topic, as the command runs it."""
    entry = topic(TOPIC)
    name = settings.topic_name(entry)
    started = time.perf_counter()
    schemas = TopicSchemas.of(entry.values)
    decoder = Decoder(registry_for(settings.registry_url), schemas)
    consumer = _reader(settings)
    try:
        plan = plan_range(
            consumer, name, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        )
        with out.open("wb") as sink:
            result = export(consumer, name, plan, decoder, schemas, sink, jsonl=jsonl, codec=codec)
        return result.records, time.perf_counter() - started
    finally:
        consumer.close()


def replay_command(
    events: int = typer.Option(200_000, help="Orders published and exported.", min=1000),
    rounds: int = typer.Option(3, help="Alternating rounds of ceiling and Avro export.", min=1),
    stores: int = typer.Option(12, help="Stores the orders are spread over.", min=1, max=26),
    seed: int = typer.Option(7, help="Seed of the generated orders."),
    codec: str = typer.Option("deflate", help="Avro OCF codec: deflate or null."),
    profile: Path | None = typer.Option(  # noqa: B008
        None, "--profile", help="cProfile one Avro export into this file (pstats)."
    ),
) -> None:
    """Replay export events/s (decoding and writing included) against a bare consume."""
    console = Console()
    base = get_settings()
    settings = base.model_copy(update={"topic_prefix": f"bench-replay-{uuid.uuid4().hex[:6]}."})
    catalogue = [t for t in prefixed(settings.topic_prefix) if t.name.endswith(TOPIC)]
    ensure_topics(settings, catalogue)
    try:
        console.print(f"publishing {events:,} orders to {catalogue[0].name}")
        publish_orders(settings, events, stores, seed)
        # As `revloop replay export` does: the objects of the imports (and the orders just made)
        # leave the collector's view, or each full collection walks them all again (it took
        # the bare consume from 550,000/s to 110,000/s here).
        gc.collect()
        gc.freeze()
        with tempfile.TemporaryDirectory(prefix="bench-replay-") as scratch:
            avro_path, jsonl_path = Path(scratch) / "o.avro", Path(scratch) / "o.jsonl"
            ceilings, avros = [], []
            for n in range(rounds):
                count, seconds = bare_consume(settings)
                ceilings.append(count / seconds)
                exported, seconds = timed_export(settings, avro_path, False, codec)
                avros.append(exported / seconds)
                if not count == exported == events:
                    raise RuntimeError(f"read {count}, exported {exported} of {events}")
                console.print(
                    f"  round {n + 1}: ceiling {ceilings[-1]:,.0f}/s, avro {avros[-1]:,.0f}/s "
                    f"(ratio {avros[-1] / ceilings[-1]:.2f})"
                )
            exported, seconds = timed_export(settings, jsonl_path, jsonl=True)
            if exported != events:
                raise RuntimeError(f"exported {exported} of {events} as JSON Lines")
            jsonls = [exported / seconds]
            console.print(f"  JSON Lines, once: {jsonls[-1]:,.0f}/s")
            report = ReplayReport(
                git_commit(),
                events,
                max(ceilings),
                max(avros),
                max(jsonls),
                avro_path.stat().st_size,
                jsonl_path.stat().st_size,
            )
            if profile is not None:
                profiler = cProfile.Profile()
                profiler.runcall(timed_export, settings, avro_path, False, codec)
                profiler.dump_stats(str(profile))
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
                console.print(text.getvalue(), markup=False, highlight=False)
    finally:
        delete_topics(settings, [t.name for t in catalogue])
    ok = report.avro_per_s >= TARGET_RATE and report.ratio >= TARGET_RATIO
    console.print()
    console.print(f"commit {report.commit}, {report.events:,} orders, best of {rounds} rounds")
    console.print(f"  ceiling (bare consume): {report.ceiling_per_s:,.0f} events/s")
    console.print(
        f"  export, Avro OCF ({codec}): {report.avro_per_s:,.0f} events/s "
        f"({report.avro_bytes / events:,.0f} B/event), ratio {report.ratio:.2f}"
    )
    console.print(
        f"  export, JSON Lines:     {report.jsonl_per_s:,.0f} events/s "
        f"({report.jsonl_bytes / events:,.0f} B/event), "
        f"ratio {report.jsonl_per_s / report.ceiling_per_s:.2f}"
    )
    verdict = "[green]met[/]" if ok else "[red]missed[/]"
    console.print(f"  target >= {TARGET_RATE:,}/s and >= {TARGET_RATIO} of the ceiling: {verdict}")
