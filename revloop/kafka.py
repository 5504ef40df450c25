"""Kafka clients configured from settings, the adapter that applies the topic catalogue, and the
few reading loops every process needs: watermarks, a range of offsets read to its end, and what
an error from librdkafka asks of the caller."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from revloop.settings import Settings
from schemas.registry import registry_for
from schemas.serde import AvroSerde
from schemas.topics import (
    ExistingTopic,
    Topic,
    TopicChange,
    plan_topic_changes,
    records_produced_by,
)


def serde_for(settings: Settings, *producers: str) -> AvroSerde:
    """The serde of a process, with ids from the registry (or, in ``catalogue`` mode, the
    committed catalogue). ``producers`` name the process as the topic catalogue does
    (``ingest``, ``streams``...): their records' schemas are registered or looked up now, so a
    process fails at start, not at its first message, when the registry is down or refuses a
    breaking change (SchemaError)."""
    serde = AvroSerde(
        registry_for(settings.registry_url, auto_register=settings.schema_auto_register)
    )
    for record in records_produced_by(*producers) if producers else ():
        serde.writer(record)
    return serde


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Durable by default: an ack means every in-sync replica has it; retries can't duplicate."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 2,
        # librdkafka backs off reconnects up to 10 s by default; after a broker restart that
        # would keep answering 503 for seconds after the broker is back.
        "reconnect.backoff.max.ms": 1000,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """``group_id`` gets ``settings.topic_prefix`` too: environments sharing a cluster share
    no consumer groups either."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.topic_prefix + group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config


def admin_client(settings: Settings) -> AdminClient:
    # Connection failures surface as exceptions with the cause; librdkafka would log each retry.
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 2})


def cluster_id(settings: Settings) -> str:
    """The Kafka cluster's id: state kept outside Kafka (the worker's RocksDB files, the sink's
    offsets in Postgres) belongs to one cluster, and another one's must never be taken for it."""
    metadata = admin_client(settings).list_topics(timeout=settings.kafka_call_timeout_seconds)
    return metadata.cluster_id or "unknown-cluster"


def describe_topics(
    admin: AdminClient, names: Sequence[str], timeout: float = 15.0
) -> dict[str, ExistingTopic]:
    metadata = admin.list_topics(timeout=timeout)
    present = [n for n in names if n in metadata.topics]
    if not present:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in present]
    configs = {
        resource.name: future.result(timeout=timeout)
        for resource, future in admin.describe_configs(resources).items()
    }
    return {
        name: ExistingTopic(
            name,
            len(metadata.topics[name].partitions),
            {k: v.value for k, v in configs[name].items()},
            # describe_configs gives each entry's source as librdkafka's int.
            frozenset(
                k
                for k, v in configs[name].items()
                if v.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            ),
        )
        for name in present
    }


def apply_topic_changes(
    admin: AdminClient,
    changes: Sequence[TopicChange],
    replication_factor: int,
    timeout: float = 30.0,
) -> None:
    creates = [
        NewTopic(
            c.topic,
            num_partitions=c.partitions or 1,
            replication_factor=replication_factor,
            config=dict(c.config),
        )
        for c in changes
        if c.action == "create"
    ]
    partitions = [
        NewPartitions(c.topic, c.partitions or 1) for c in changes if c.action == "add-partitions"
    ]
    alters = [
        ConfigResource(
            ResourceType.TOPIC,
            c.topic,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in c.config.items()
            ]
            + [
                ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE)
                for k in c.reset
            ],
        )
        for c in changes
        if c.action == "alter-config"
    ]
    futures: list[Any] = []
    if creates:
        futures += admin.create_topics(creates, operation_timeout=timeout).values()
    if partitions:
        futures += admin.create_partitions(partitions, operation_timeout=timeout).values()
    if alters:
        futures += admin.incremental_alter_configs(alters).values()
    for future in futures:
        future.result(timeout=timeout)


def ensure_topics(
    settings: Settings, topics: Sequence[Topic] | None = None, timeout: float = 30.0
) -> list[TopicChange]:
    """Make the broker match the catalogue (by default ``settings.topics``); returns what was
    changed (empty when in sync)."""
    topics = settings.topics if topics is None else topics
    admin = admin_client(settings)
    try:
        existing = describe_topics(admin, [t.name for t in topics], timeout)
    except KafkaException as exc:
        raise ConnectionError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    changes = plan_topic_changes(topics, existing)
    if changes:
        apply_topic_changes(admin, changes, settings.topic_replication_factor, timeout)
        _wait_until_converged(admin, topics, timeout)
    return changes


def delete_topics(settings: Settings, names: Sequence[str], timeout: float = 30.0) -> list[str]:
    """Delete those of ``names`` that exist; returns the ones deleted, once the broker no longer
    lists them (KRaft applies a deletion to the broker's metadata after acknowledging it)."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    doomed = [name for name in names if name in existing]
    if not doomed:
        return doomed
    for future in admin.delete_topics(doomed, operation_timeout=timeout).values():
        future.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while set(doomed) & set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"broker still lists deleted topics after {timeout}s")
        time.sleep(0.1)
    return doomed


def _wait_until_converged(admin: AdminClient, topics: Sequence[Topic], timeout: float) -> None:
    # Brokers apply KRaft metadata asynchronously; return only once a describe agrees, so an
    # immediate second run (or producer) sees the new state.
    deadline = time.monotonic() + timeout
    while True:
        remaining = plan_topic_changes(
            topics, describe_topics(admin, [t.name for t in topics], timeout)
        )
        if not remaining and _all_partitions_led(admin, topics, timeout):
            return
        if time.monotonic() > deadline:
            pending = ", ".join(f"{c.topic} ({c.action})" for c in remaining) or "leaders"
            raise TimeoutError(f"broker did not converge within {timeout}s: {pending}")
        time.sleep(0.2)


def _all_partitions_led(admin: AdminClient, topics: Sequence[Topic], timeout: float) -> bool:
    # A new partition is listed in metadata before its leader serves it; reads and writes in
    # that gap fail with NOT_LEADER_FOR_PARTITION. Asking every partition for its end offset is
    # the check that the leader really answers.
    metadata = admin.list_topics(timeout=timeout).topics
    if any(t.name not in metadata for t in topics):
        return False
    wanted = {
        TopicPartition(t.name, p): OffsetSpec.latest()
        for t in topics
        for p in metadata[t.name].partitions
    }
    try:
        for future in admin.list_offsets(wanted, request_timeout=timeout).values():
            future.result(timeout=timeout)
    except KafkaException:
        return False
    return True


def read_newest(
    settings: Settings, topic_name: str, count: int, timeout: float = 10.0
) -> list[tuple[int, int, bytes | None, bytes]]:
    """The newest ``count`` committed records of a topic, oldest first, as (partition, offset,
    key, value). Reads without a consumer group, so it commits nothing and moves nobody."""
    consumer = Consumer(consumer_config(settings, "revloop.cli.read"))
    try:
        try:
            metadata = consumer.list_topics(topic_name, timeout=timeout).topics[topic_name]
        except KafkaException as exc:
            raise ConnectionError(f"cannot reach Kafka at {settings.bootstrap_servers}") from exc
        if metadata.error is not None:
            raise ConnectionError(f"{topic_name}: {metadata.error.str()}")
        # Under read_committed the high mark is the last stable offset: nothing open is waited on.
        ranges = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic_name, partition), timeout=timeout
            )
            # Transactional writers leave a commit marker after each batch, and markers take
            # offsets too: at worst every record is followed by one.
            ranges[(topic_name, partition)] = (max(low, high - 2 * count), high)
        found: list[tuple[int, int, int, bytes | None, bytes]] = []
        with contextlib.suppress(TimeoutError):
            for message in read_ranges(consumer, ranges, timeout=timeout):
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                _, stamp = message.timestamp()
                found.append((stamp, partition, offset, message.key(), message.value() or b""))
        found.sort()
        return [(p, o, k, v) for _, p, o, k, v in found[-count:]]
    finally:
        consumer.close()


# --- errors -----------------------------------------------------------------------------------

_TRANSIENT_CODES = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error if isinstance(error, KafkaError) else None


def is_retriable(exc: BaseException) -> bool:
    """Whether trying again may succeed as is: what librdkafka calls retriable, plus the leader
    and coordinator moves a new or restarting broker answers with for a moment."""
    error = kafka_error(exc)
    return error is not None and (error.retriable() or error.code() in _TRANSIENT_CODES)


def requires_abort(exc: BaseException) -> bool:
    """Whether a transactional producer must abort its open transaction and carry on."""
    error = kafka_error(exc)
    return error is not None and bool(error.txn_requires_abort())


# --- reading ----------------------------------------------------------------------------------

Guard = Callable[[str], AbstractContextManager[None]]
"""Wraps each blocking call (by name), e.g. in a watchdog's deadline."""


def _unguarded(_what: str) -> AbstractContextManager[None]:
    return nullcontext()


def high_watermarks(consumer: Consumer, topic_name: str, timeout: float = 30.0) -> dict[int, int]:
    """Each partition's high watermark (the last stable offset under read_committed). Retries
    the moments after a topic is created, when its partitions may not have a leader yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            partitions = consumer.list_topics(topic_name, timeout=10).topics[topic_name].partitions
            return {
                p: int(consumer.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)[1])
                for p in partitions
            }
        except KafkaException as exc:
            if not is_retriable(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_ranges(
    consumer: Consumer,
    ranges: Mapping[tuple[str, int], tuple[int, int]],
    *,
    timeout: float | None = None,
    drained_at_high_watermark: bool = False,
    guard: Guard = _unguarded,
) -> Iterator[Message]:
    """Every readable record at ``start <= offset < end`` of each ``(topic, partition)``, as
    ``consumer`` returns them (assigned here; errors are skipped).

    A partition is done once the consumer's position reaches ``end``: transaction markers take
    offsets but are never returned, so the last record's offset cannot tell. With
    ``drained_at_high_watermark`` a partition is also done when a poll finds nothing and the
    high watermark is at the position (the range's end may name records that are gone).
    Raises TimeoutError when ``timeout`` seconds pass first."""
    wanted = {tp: span for tp, span in ranges.items() if span[1] > span[0]}
    if not wanted:
        return
    reached = {tp: start for tp, (start, _) in wanted.items()}
    consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in wanted.items()])
    deadline = None if timeout is None else time.monotonic() + timeout
    while wanted:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted(wanted)} to its end within {timeout:.0f}s")
        messages = consumer.consume(500, timeout=0.5)
        for message in messages:
            topic_name, partition, offset = message.topic(), message.partition(), message.offset()
            if message.error() is not None or topic_name is None or partition is None:
                continue
            span = wanted.get((topic_name, partition))
            if span is None or offset is None or offset >= span[1]:
                continue
            yield message
        for key, (_, end) in list(wanted.items()):
            tp = TopicPartition(*key)
            (position,) = consumer.position([tp])
            reached[key] = max(reached[key], position.offset)  # negative until it has fetched
            if reached[key] >= end:
                del wanted[key]
            elif drained_at_high_watermark and not messages:
                with guard("reading a watermark"):
                    _, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high <= reached[key]:
                    del wanted[key]
