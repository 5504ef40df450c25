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
import socket
import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
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
from revloop.watchdog import Watchdog, stop_on_signals
from schemas.registry import registry_for
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import TOPICS, topic, topic_for_record

log = logging.getLogger(__name__)

RAW = topic("raw.webhooks.v1")
GROUP_ID = "revloop.ingest.normalizer"


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    KafkaException,
    BufferError,
    httpx.TransportError,
)
"""Errors that say nothing about a record: they abort or stop the batch, never park a record."""


@dataclass(frozen=True)
class Write:
    """One record to produce: the event and where and how it goes."""

    event: Emit
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Plan:
    """What one raw record becomes, decided before anything is produced."""

    writes: list[Write]
    platform: str
    outcome: str
    reason: str


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
    watchdog: Watchdog = field(default_factory=lambda: Watchdog("normalize"))
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
        self._warm_writers()
        with self._guard("init_transactions"):
            producer.init_transactions(self._timeout)
        consumer.subscribe([self.raw_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                messages = consumer.consume(self.batch_size, timeout=0.5)
                if messages:
                    self._process_batch(consumer, producer, messages)
        finally:
            with self._guard("closing the consumer"):
                consumer.close()
            with self._guard("flushing the producer"):
                producer.flush(self._timeout)

    @property
    def _timeout(self) -> float:
        return self.settings.kafka_call_timeout_seconds

    def _guard(self, what: str) -> AbstractContextManager[None]:
        """A blocking Kafka call's deadline: its own timeout plus the watchdog's grace."""
        return self.watchdog.guard(
            what, self.settings.kafka_call_timeout_seconds + self.settings.watchdog_grace_seconds
        )

    def _warm_writers(self) -> None:
        """Resolve every schema id the normalizer writes now, so a registry that is down stops
        the process at start instead of turning records into dead letters."""
        for catalogued in TOPICS:
            if "ingest.normalizer" in catalogued.producers:
                for record in catalogued.values:
                    self.serde.writer(record)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._guard("reading committed offsets"):
            committed = consumer.committed(partitions, timeout=self._timeout)
        self._rebuild_all(committed)

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
        """The dedupe window as it stood at ``committed``: plan the raw records received in the
        window before it again, exactly as the live loop did, and keep only what they marked."""
        seen = SeenEvents(self.dedupe_window)
        if committed <= 0:  # nothing committed yet (OFFSET_INVALID is negative)
            return seen
        since_ms = int((self.clock() - self.dedupe_window).timestamp() * 1000)
        with self._guard("looking up the dedupe window's start"):
            (start,) = reader.offsets_for_times(
                [TopicPartition(self.raw_topic, partition, since_ms)], timeout=self._timeout
            )
        position = start.offset if start.offset >= 0 else committed
        if position >= committed:
            return seen
        reader.assign([TopicPartition(self.raw_topic, partition, position)])
        while position < committed:
            messages = reader.consume(500, timeout=0.2)
            if not messages:
                with self._guard("reading a watermark"):
                    _, high = reader.get_watermark_offsets(
                        TopicPartition(self.raw_topic, partition), timeout=self._timeout
                    )
                if high <= position:
                    break
            for message in messages:
                if message.error() is not None or _where(message)[1] >= committed:
                    continue
                position = _where(message)[1] + 1
                self._plan_safely(message, seen)
            # Transaction markers take offsets but are never returned: the reader's own
            # position says when everything below the committed offset has been seen.
            (reached,) = reader.position([TopicPartition(self.raw_topic, partition)])
            if reached.offset >= committed:
                break
        log.info("partition %d: dedupe window rebuilt with %d ids", partition, len(seen))
        return seen

    def _process_batch(
        self, consumer: Consumer, producer: Producer, messages: list[Message]
    ) -> None:
        with self._guard("begin_transaction"):
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
                plan = self._plan_safely(
                    message, self._seen.setdefault(partition, SeenEvents(self.dedupe_window))
                )
                self._count(plan.platform, plan.outcome, plan.reason)
                for write in plan.writes:
                    producer.produce(write.topic, key=write.key, value=write.value)
                    self.metrics.events.labels(write.event.record.rsplit(".", 1)[-1]).inc()
                next_offsets[partition] = offset + 1
            with self._guard("send_offsets_to_transaction"):
                producer.send_offsets_to_transaction(
                    [TopicPartition(self.raw_topic, p, o) for p, o in next_offsets.items()],
                    consumer.consumer_group_metadata(),
                    self._timeout,
                )
            self._commit(producer)
        except KafkaException as exc:
            if not _abortable(exc):
                raise
            log.warning("transaction aborted, re-reading the batch: %s", exc)
            with self._guard("abort_transaction"):
                producer.abort_transaction(self._timeout)
            self._rewind(consumer)
        self._update_gauge()

    def _commit(self, producer: Producer, attempts: int = 3) -> None:
        """Commit, retrying what Kafka calls retriable (a timeout); anything else propagates."""
        for attempt in range(attempts):
            try:
                with self._guard("commit_transaction"):
                    producer.commit_transaction(self._timeout)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and error.retriable()
                if not retriable or attempt == attempts - 1:
                    raise

    def _rewind(self, consumer: Consumer) -> None:
        """After an abort, return to the committed offsets with the dedupe state they imply."""
        with self._guard("reading committed offsets"):
            committed = consumer.committed(consumer.assignment(), timeout=self._timeout)
        self._rebuild_all(committed)
        for tp in committed:
            if tp.offset >= 0:
                consumer.seek(tp)
            else:
                consumer.seek(TopicPartition(tp.topic, tp.partition, 0))

    def _plan_safely(self, message: Message, seen: SeenEvents) -> Plan:
        """The boundary no record crosses: whatever goes wrong while one record is decoded,
        normalized, keyed or encoded parks that record as a dead letter, and the partition
        moves on. Only infrastructure errors (Kafka, the schema registry's transport) escape,
        to abort or stop the batch."""
        try:
            return self._plan(message, seen)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            return self._park(message, seen, exc)

    def _plan(self, message: Message, seen: SeenEvents) -> Plan:
        """What one raw record becomes. Nothing is produced here, and ``seen`` changes only in
        the last step, so a failure anywhere leaves no trace."""
        raw = self._decode(message)
        if raw is None:
            letter = dead_letter(
                _reference(message, self.raw_topic),
                raw=None,
                reason="bad_raw_record",
                message="raw record does not decode as RawWebhook",
                stage="deserialize",
                at=self.clock(),
            )
            # No event id to dedupe on; the letter's own id is fixed by the record's position.
            return Plan([self._encode(letter)], "other", "dead_lettered", "bad_raw_record")
        outcome = normalize_delivery(raw, self.context)
        if outcome.status == "dead_lettered":
            letter = dead_letter(
                _reference(message, self.raw_topic),
                raw=raw,
                reason=outcome.reason,
                message=outcome.message,
                stage="normalize",
                at=self.clock(),
            )
            return self._deduped(raw, [self._encode(letter)], outcome, seen)
        return self._deduped(raw, [self._encode(e) for e in outcome.events], outcome, seen)

    def _deduped(
        self, raw: RawDelivery, writes: list[Write], outcome: Outcome, seen: SeenEvents
    ) -> Plan:
        is_new, fresh = first_sightings(raw, [write.event for write in writes], seen)
        fresh_ids = {event.event_id for event in fresh}
        return Plan(
            [write for write in writes if write.event.event_id in fresh_ids],
            raw.platform,
            outcome.status if is_new else "duplicate",
            outcome.reason,
        )

    def _park(self, message: Message, seen: SeenEvents, exc: Exception) -> Plan:
        """The dead letter for a record whose processing raised. Only the exception's type is
        kept: its message could quote payload values (PII), and dead letters outlive them."""
        reason = "schema_mismatch" if isinstance(exc, SerdeError) else "unexpected_error"
        partition, offset = _where(message)
        log.error(
            "raw record %s[%d]@%d parked as a dead letter (%s, %s); traceback:\n%s",
            self.raw_topic,
            partition,
            offset,
            reason,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
        )
        try:
            raw = self._decode(message)
        except Exception:  # decoding is what raised: the letter points at the bytes alone
            raw = None
        text = f"{type(exc).__name__} while normalizing"
        letter = dead_letter(
            _reference(message, self.raw_topic),
            raw=raw,
            reason=reason,
            message=text,
            stage="normalize",
            at=self.clock(),
        )
        if raw is None:
            return Plan([self._encode(letter)], "other", "dead_lettered", reason)
        outcome = Outcome("dead_lettered", reason=reason, message=text)
        return self._deduped(raw, [self._encode(letter)], outcome, seen)

    def _decode(self, message: Message) -> RawDelivery | None:
        try:
            return RawDelivery.from_record(self.serde.decode(message.value() or b"").value)
        except (SerdeError, KeyError, TypeError) as exc:
            log.warning("raw record at offset %s does not decode: %s", message.offset(), exc)
            return None

    def _encode(self, event: Emit) -> Write:
        catalogued = topic_for_record(event.record)
        return Write(
            event,
            self.settings.topic_name(catalogued),
            catalogued.message_key(event.value),
            self.serde.encode(event.record, event.value),
        )

    def _count(self, platform: str, outcome: str, reason: str) -> None:
        self.metrics.records.labels(platform, outcome, reason).inc()

    def _update_gauge(self) -> None:
        self.metrics.dedupe_ids.set(sum(len(s) for s in self._seen.values()))


def _where(message: Message) -> tuple[int, int]:
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "consumed messages have a position"
    return partition, offset


def _reference(message: Message, raw_topic: str) -> RawReference:
    partition, offset = _where(message)
    return RawReference(
        topic=raw_topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value() or b"",
    )


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
    # Before any thread starts (the metrics server, librdkafka's), so none of them takes SIGTERM.
    stop = threading.Event()
    watchdog = Watchdog("normalize")
    stop_on_signals(stop, watchdog, settings.shutdown_seconds)
    try:
        normalizer = build_normalizer(settings)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    normalizer.watchdog = watchdog
    normalizer.group_id = group_id
    if instance_id:
        normalizer.instance_id = instance_id
    if metrics_port is not None:
        start_http_server(metrics_port, registry=normalizer.metrics.registry)
    normalizer.run(stop)
