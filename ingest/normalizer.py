"""`revloop normalize`: raw.webhooks.v1 → canonical topics, exactly once.

Each batch is one Kafka transaction: the canonical events, the dead letters and the consumer
offsets commit together, so a crash mid-batch leaves neither half-written events nor a skipped
record. Readers use read_committed.

Duplicates are dropped with :class:`~ingest.normalize.SeenEvents`, one per raw partition (a
store's deliveries share a partition, so its retries meet there). The set lives in memory and is
rebuilt on assignment by re-normalizing the partition's last ``dedupe window`` of raw records up
to the committed offset; the log is the state, so nothing else has to be kept or restored.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType

import typer
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ingest.canonical import Emit, NormalizeContext, RawDelivery
from ingest.normalize import (
    Outcome,
    RawReference,
    SeenEvents,
    dead_letter,
    first_sightings,
    normalize_delivery,
)
from ingest.stores import LiveCurrencies
from revloop.kafka import consumer_config, producer_config
from revloop.settings import Settings, get_settings
from schemas.registry import registry_for
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import topic, topic_for_record

log = logging.getLogger(__name__)

RAW = topic("raw.webhooks.v1")
GROUP_ID = "revloop.ingest.normalizer"


class NormalizerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records = Counter(
            "revloop_normalizer_records",
            "Raw deliveries read, by platform and outcome "
            "(normalized, skipped, duplicate, dead_lettered).",
            ["platform", "outcome", "reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "revloop_normalizer_events",
            "Canonical events written, by record type.",
            ["record"],
            registry=self.registry,
        )
        self.dedupe_ids = Gauge(
            "revloop_normalizer_dedupe_ids",
            "Event ids held in the dedupe window.",
            registry=self.registry,
        )


@dataclass
class Normalizer:
    settings: Settings
    context: NormalizeContext
    serde: AvroSerde
    metrics: NormalizerMetrics = field(default_factory=NormalizerMetrics)
    group_id: str = GROUP_ID
    instance_id: str = field(default_factory=socket.gethostname)
    """Stable per process slot: a restarted instance reuses its transactional id, which aborts
    whatever its previous life left open instead of letting it block readers until timeout."""
    dedupe_window: timedelta = timedelta(hours=72)
    batch_size: int = 500
    session_timeout_ms: int = 45_000
    """How long a silent (e.g. killed) instance keeps its partitions before the group moves them."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _seen: dict[int, SeenEvents] = field(default_factory=dict, init=False)

    @property
    def raw_topic(self) -> str:
        return self.settings.topic_name(RAW)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set. Raises on errors Kafka calls fatal (e.g. this
        instance was fenced by a newer one with the same group)."""
        consumer = Consumer(
            consumer_config(
                self.settings,
                self.group_id,
                **{"max.poll.interval.ms": 300_000, "session.timeout.ms": self.session_timeout_ms},
            )
        )
        producer = Producer(
            producer_config(
                self.settings,
                **{
                    "transactional.id": (
                        f"{self.settings.topic_prefix}{self.group_id}.{self.instance_id}"
                    ),
                    "linger.ms": 5,
                    # Dead letters carry a raw record of up to 2 MiB (ops.dead-letters.v1 allows 4).
                    "message.max.bytes": 4 * 1024 * 1024,
                },
            )
        )
        producer.init_transactions(30)
        consumer.subscribe([self.raw_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                messages = consumer.consume(self.batch_size, timeout=0.5)
                if messages:
                    self._process_batch(consumer, producer, messages)
        finally:
            consumer.close()
            producer.flush(10)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebuild_all(consumer.committed(partitions, timeout=30))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._seen.pop(tp.partition, None)
        self._update_gauge()

    def _rebuild_all(self, committed: list[TopicPartition]) -> None:
        reader = Consumer(consumer_config(self.settings, f"{self.group_id}.rebuild"))
        try:
            for tp in committed:
                self._seen[tp.partition] = self._rebuild(reader, tp.partition, tp.offset)
        finally:
            reader.close()
        self._update_gauge()

    def _rebuild(self, reader: Consumer, partition: int, committed: int) -> SeenEvents:
        """The dedupe window as it stood at ``committed``: re-derive the ids of the raw
        records received in the window before it."""
        seen = SeenEvents(self.dedupe_window)
        if committed <= 0:  # nothing committed yet (OFFSET_INVALID is negative)
            return seen
        since_ms = int((self.clock() - self.dedupe_window).timestamp() * 1000)
        (start,) = reader.offsets_for_times(
            [TopicPartition(self.raw_topic, partition, since_ms)], timeout=30
        )
        position = start.offset if start.offset >= 0 else committed
        if position >= committed:
            return seen
        reader.assign([TopicPartition(self.raw_topic, partition, position)])
        while position < committed:
            messages = reader.consume(500, timeout=0.2)
            if not messages:
                _, high = reader.get_watermark_offsets(
                    TopicPartition(self.raw_topic, partition), timeout=10
                )
                if high <= position:
                    break
            for message in messages:
                if message.error() is not None or _where(message)[1] >= committed:
                    continue
                position = _where(message)[1] + 1
                raw = self._decode(message)
                if raw is not None:
                    outcome = normalize_delivery(raw, self.context)
                    first_sightings(raw, outcome.events, seen)
        log.info("partition %d: dedupe window rebuilt with %d ids", partition, len(seen))
        return seen

    def _process_batch(
        self, consumer: Consumer, producer: Producer, messages: list[Message]
    ) -> None:
        producer.begin_transaction()
        next_offsets: dict[int, int] = {}
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    continue
                partition, offset = _where(message)
                self._process(
                    producer,
                    message,
                    self._seen.setdefault(partition, SeenEvents(self.dedupe_window)),
                )
                next_offsets[partition] = offset + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(self.raw_topic, p, o) for p, o in next_offsets.items()],
                consumer.consumer_group_metadata(),
                30,
            )
            _commit(producer)
        except KafkaException as exc:
            if not _abortable(exc):
                raise
            log.warning("transaction aborted, re-reading the batch: %s", exc)
            producer.abort_transaction(30)
            self._rewind(consumer)
        self._update_gauge()

    def _rewind(self, consumer: Consumer) -> None:
        """After an abort, return to the committed offsets with the dedupe state they imply."""
        committed = consumer.committed(consumer.assignment(), timeout=30)
        self._rebuild_all(committed)
        for tp in committed:
            if tp.offset >= 0:
                consumer.seek(tp)
            else:
                consumer.seek(TopicPartition(tp.topic, tp.partition, 0))

    def _process(self, producer: Producer, message: Message, seen: SeenEvents) -> None:
        partition, offset = _where(message)
        ref = RawReference(
            topic=self.raw_topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value() or b"",
        )
        raw = self._decode(message)
        if raw is None:
            letter = dead_letter(
                ref,
                raw=None,
                reason="bad_raw_record",
                message="raw record does not decode as RawWebhook",
                stage="deserialize",
                at=self.clock(),
            )
            self._count("other", "dead_lettered", "bad_raw_record")
            _, name, (key, value) = self._encode(letter)
            producer.produce(name, key=key, value=value)
            return
        outcome = normalize_delivery(raw, self.context)
        try:
            encoded = [self._encode(event) for event in outcome.events]
        except SerdeError as exc:
            # A normalizer bug must not wedge the partition: park the record, keep going.
            log.error("normalized event does not fit its schema: %s", type(exc).__name__)
            outcome = Outcome("dead_lettered", reason="schema_mismatch", message=str(exc)[:200])
            encoded = []
        if outcome.status == "dead_lettered":
            letter = dead_letter(
                ref,
                raw=raw,
                reason=outcome.reason,
                message=outcome.message,
                stage="normalize",
                at=self.clock(),
            )
            encoded = [self._encode(letter)]
        is_new, fresh = first_sightings(raw, [event for event, _, _ in encoded], seen)
        self._count(raw.platform, outcome.status if is_new else "duplicate", outcome.reason)
        fresh_ids = {event.event_id for event in fresh}
        for event, name, key_and_value in encoded:
            if event.event_id in fresh_ids:
                producer.produce(name, key=key_and_value[0], value=key_and_value[1])
                self.metrics.events.labels(event.record.rsplit(".", 1)[-1]).inc()

    def _decode(self, message: Message) -> RawDelivery | None:
        try:
            return RawDelivery.from_record(self.serde.decode(message.value() or b"").value)
        except (SerdeError, KeyError, TypeError) as exc:
            log.warning("raw record at offset %s does not decode: %s", message.offset(), exc)
            return None

    def _encode(self, event: Emit) -> tuple[Emit, str, tuple[bytes, bytes]]:
        catalogued = topic_for_record(event.record)
        return (
            event,
            self.settings.topic_name(catalogued),
            (catalogued.message_key(event.value), self.serde.encode(event.record, event.value)),
        )

    def _count(self, platform: str, outcome: str, reason: str) -> None:
        self.metrics.records.labels(platform, outcome, reason).inc()

    def _update_gauge(self) -> None:
        self.metrics.dedupe_ids.set(sum(len(s) for s in self._seen.values()))


def _where(message: Message) -> tuple[int, int]:
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "consumed messages have a position"
    return partition, offset


def _commit(producer: Producer, attempts: int = 3) -> None:
    """Commit, retrying what Kafka calls retriable (a timeout); anything else propagates."""
    for attempt in range(attempts):
        try:
            producer.commit_transaction(30)
            return
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.retriable()) or attempt == attempts - 1:
                raise


def _abortable(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and bool(error.txn_requires_abort())


def build_normalizer(settings: Settings) -> Normalizer:
    return Normalizer(
        settings=settings,
        context=NormalizeContext(
            customer_salt=settings.customer_salt,
            store_currency=LiveCurrencies(settings.stores_file),
        ),
        serde=AvroSerde(registry_for(settings.schema_registry_url)),
    )


def normalize_command(
    metrics_port: int | None = typer.Option(
        None, help="Serve Prometheus metrics on this port (default: none)."
    ),
    group_id: str = typer.Option(GROUP_ID, help="Consumer group (one per normalizer pipeline)."),
    instance_id: str | None = typer.Option(
        None,
        help="Stable id of this instance within the group (default: the host name); a restart "
        "with the same id aborts what the previous run left open.",
    ),
) -> None:
    """Turn raw webhook deliveries into canonical events (orders, refunds, products, inventory,
    customers, redactions, hydration requests); what cannot be normalized goes to the
    dead-letter topic. Runs until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    try:
        normalizer = build_normalizer(settings)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    normalizer.group_id = group_id
    if instance_id:
        normalizer.instance_id = instance_id
    if metrics_port is not None:
        start_http_server(metrics_port, registry=normalizer.metrics.registry)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    normalizer.run(stop)
