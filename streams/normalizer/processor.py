"""`revloop normalize`: raw.webhooks.v1 → canonical topics, exactly once.

The normalizer is a :class:`~streams.runtime.Processor`: the exactly-once loop commits its
canonical events, its dead letters and the raw offsets in one transaction per batch.

Duplicates are dropped with :class:`~streams.normalizer.dedupe.SeenEvents`, one per raw
partition (a store's deliveries share a partition, so its retries meet there). The set lives in
memory and is rebuilt on assignment (:meth:`Normalizer.restore`) by re-normalizing the
partition's last dedupe window of raw records up to the committed offset; the log is the state,
so nothing else has to be kept or restored.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import typer
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import CollectorRegistry, Counter, Gauge

from platforms.dispatch import Outcome, normalize_delivery
from platforms.events import Emit, NormalizeContext, RawDelivery
from revloop.exactly_once import ExactlyOnceLoop, LoopOptions, Output, kafka_call_guard
from revloop.kafka import consumer_config, read_ranges, serde_for
from revloop.metrics import serve_metrics
from revloop.settings import Settings, get_settings
from revloop.stores import LiveCurrencies
from revloop.watchdog import Watchdog, stop_on_signals
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import TOPICS, topic, topic_for_record
from streams.normalizer.dead_letters import RawReference, dead_letter
from streams.normalizer.dedupe import SeenEvents, first_sightings

log = logging.getLogger(__name__)

RAW = topic("raw.webhooks.v1")


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    KafkaException,
    BufferError,
    httpx.TransportError,
)
"""Errors that say nothing about a record: they abort or stop the batch, never park a record."""


@dataclass(frozen=True)
class Write(Output):
    """One record to produce, with the event it encodes (for dedupe and metrics)."""

    event: Emit = field(kw_only=True)


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
    group_id: str | None = None
    """The consumer group; ``settings.normalizer_group_id`` when None."""
    instance_id: str = field(default_factory=socket.gethostname)
    """Stable per process slot (see :attr:`~streams.runtime.LoopOptions.instance_id`)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    watchdog: Watchdog = field(default_factory=lambda: Watchdog("normalize"))
    _seen: dict[int, SeenEvents] = field(default_factory=dict, init=False)

    @property
    def input_topic(self) -> str:
        return self.settings.topic_name(RAW)

    @property
    def consumer_group(self) -> str:
        return self.group_id or self.settings.normalizer_group_id

    @property
    def dedupe_window(self) -> timedelta:
        return timedelta(hours=self.settings.normalizer_dedupe_window_hours)

    def loop_options(self) -> LoopOptions:
        return LoopOptions(
            group_id=self.consumer_group,
            instance_id=self.instance_id,
            batch_size=self.settings.normalizer_batch_size,
            batch_wait_seconds=self.settings.normalizer_batch_wait_seconds,
            session_timeout_ms=self.settings.normalizer_session_timeout_ms,
            max_poll_interval_ms=self.settings.stream_max_poll_interval_ms,
            producer_overrides={"linger.ms": 5},
        )

    def run(self, stop: threading.Event) -> None:
        """Normalize until ``stop`` is set (see :meth:`ExactlyOnceLoop.run`)."""
        ExactlyOnceLoop(self.settings, self, self.loop_options(), self.watchdog).run(stop)

    # -- the Processor protocol --------------------------------------------------------------

    def prepare(self) -> None:
        """Resolve every schema id the normalizer writes now, so a registry that is down stops
        the process at start instead of turning records into dead letters."""
        for catalogued in TOPICS:
            if "streams.normalizer" in catalogued.producers:
                for record in catalogued.values:
                    self.serde.writer(record)

    def restore(self, committed: Sequence[TopicPartition]) -> None:
        """The dedupe windows as they stood at the committed offsets."""
        reader = Consumer(consumer_config(self.settings, f"{self.consumer_group}.rebuild"))
        try:
            for tp in committed:
                self._seen[tp.partition] = self._rebuild(reader, tp.partition, tp.offset)
        finally:
            reader.close()
        self.batch_done()

    def forget(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            self._seen.pop(partition, None)

    def process(self, message: Message) -> list[Write]:
        partition = _where(message)[0]
        plan = self._plan_safely(
            message, self._seen.setdefault(partition, SeenEvents(self.dedupe_window))
        )
        self.metrics.records.labels(plan.platform, plan.outcome, plan.reason).inc()
        for write in plan.writes:
            self.metrics.events.labels(write.event.record.rsplit(".", 1)[-1]).inc()
        return plan.writes

    def batch_done(self) -> None:
        self.metrics.dedupe_ids.set(sum(len(s) for s in self._seen.values()))

    # -- planning ------------------------------------------------------------------------------

    def _rebuild(self, reader: Consumer, partition: int, committed: int) -> SeenEvents:
        """The dedupe window as it stood at ``committed``: plan the raw records received in the
        window before it again, exactly as the live loop did, and keep only what they marked."""
        seen = SeenEvents(self.dedupe_window)
        if committed <= 0:  # nothing committed yet (OFFSET_INVALID is negative)
            return seen
        guard = kafka_call_guard(self.watchdog, self.settings)
        timeout = self.settings.kafka_call_timeout_seconds
        since_ms = int((self.clock() - self.dedupe_window).timestamp() * 1000)
        with guard("looking up the dedupe window's start"):
            (start,) = reader.offsets_for_times(
                [TopicPartition(self.input_topic, partition, since_ms)], timeout=timeout
            )
        position = start.offset if start.offset >= 0 else committed
        span = {(self.input_topic, partition): (position, committed)}
        for message in read_ranges(reader, span, drained_at_high_watermark=True, guard=guard):
            self._plan_safely(message, seen)
        log.info("partition %d: dedupe window rebuilt with %d ids", partition, len(seen))
        return seen

    def plan(self, message: Message, seen: SeenEvents) -> Plan:
        """What one raw record becomes, as the live loop decides it (a redrive re-runs it)."""
        return self._plan_safely(message, seen)

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
                _reference(message, self.input_topic),
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
                _reference(message, self.input_topic),
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
            self.input_topic,
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
            _reference(message, self.input_topic),
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
            self.settings.topic_name(catalogued),
            catalogued.message_key(event.value),
            self.serde.encode(event.record, event.value),
            event=event,
        )


def _where(message: Message) -> tuple[int, int]:
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "consumed messages have a position"
    return partition, offset


def _reference(message: Message, raw_topic: str) -> RawReference:
    partition, offset = _where(message)
    return RawReference(topic=raw_topic, partition=partition, offset=offset, key=message.key())


def build_normalizer(settings: Settings) -> Normalizer:
    return Normalizer(
        settings=settings,
        context=NormalizeContext(
            customer_salt=settings.customer_salt,
            store_currency=LiveCurrencies(settings.stores_file, settings.stores_check_seconds),
        ),
        serde=serde_for(settings, "streams.normalizer"),
    )


def normalize_command(
    metrics_port: int | None = typer.Option(
        None,
        help="Serve Prometheus metrics on this port, 0 for none "
        "(default: REVLOOP_NORMALIZER_METRICS_PORT, 9401).",
    ),
    group_id: str | None = typer.Option(
        None,
        help="Consumer group, one per normalizer pipeline (default: REVLOOP_NORMALIZER_GROUP_ID).",
    ),
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
    port = settings.normalizer_metrics_port if metrics_port is None else metrics_port
    serve_metrics(normalizer.metrics.registry, port, settings.metrics_host, process="normalize")
    normalizer.run(stop)
