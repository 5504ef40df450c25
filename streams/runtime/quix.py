"""quixstreams configured from Settings: the runtime of the stateful processors.

One :class:`~quixstreams.Application` per worker process, exactly-once: state lives in RocksDB
with changelog topics, and each checkpoint commits the outputs, the changelogs and the input
offsets in one Kafka transaction. A worker instance has a stable id; it is both its static group
membership (``group.instance.id``) and its transactional id, so a restarted instance takes its
partitions back at once and fences whatever its previous life left open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Producer
from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import (
    Deserializer,
    SerializationContext,
    Serializer,
)
from quixstreams.models.topics import Topic as QuixTopic

from revloop.kafka import cluster_id, producer_config
from revloop.settings import Settings
from schemas.serde import AvroSerde
from schemas.topics import Topic, topic_for_record


class CatalogueValue(Deserializer):
    """A catalogue topic's Avro value, decoded, with its record's short name under ``record``.
    ``read(topic)`` is called for each: every input record is decoded once, before any branch,
    so this is where the worker counts them."""

    def __init__(self, serde: AvroSerde, read: Callable[[str], None] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # quixstreams leaves it untyped
        self._serde = serde
        self._read = read

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        if self._read is not None:
            self._read(ctx.topic)
        decoded = self._serde.decode(value)
        return {**decoded.value, "record": decoded.record_name.rsplit(".", 1)[-1]}


class CatalogueRecord(Serializer):
    """Encodes one Avro record type (its full name given) in the Confluent wire format."""

    def __init__(self, serde: AvroSerde, record_name: str) -> None:
        super().__init__()
        self._serde = serde
        self._record = record_name

    def __call__(self, value: Mapping[str, Any], ctx: SerializationContext) -> bytes:
        return self._serde.encode(self._record, value)


def worker_application(
    settings: Settings, instance_id: str, *, consumer_group: str | None = None
) -> Application:
    group = settings.topic_prefix + (consumer_group or settings.worker_group_id)
    return Application(
        broker_address=settings.bootstrap_servers,
        consumer_group=group,
        processing_guarantee="exactly-once",
        commit_interval=settings.worker_commit_interval_seconds,
        # A checkpoint is taken between polls: a long poll on an idle input would hold a
        # committed output back for as long (quixstreams waits 1 s by default).
        consumer_poll_timeout=settings.worker_poll_timeout_seconds,
        auto_offset_reset="earliest",
        # Local state belongs to one cluster: the same group on another broker (a test's, a
        # second stack) must not find this one's RocksDB files and their changelog offsets.
        state_dir=settings.state_dir / "streams" / cluster_id(settings) / instance_id,
        consumer_extra_config={
            "group.instance.id": f"{group}.{instance_id}",
            "session.timeout.ms": settings.worker_session_timeout_ms,
            # On assignment quixstreams looks up every partition's watermarks, one request at a
            # time on the connection its fetches long-poll on: each waited out a fetch (500 ms
            # by default), 11 s for 36 partitions on a restart.
            "fetch.wait.max.ms": settings.worker_fetch_wait_max_ms,
        },
        producer_extra_config={"transactional.id": f"{group}.{instance_id}"},
        loglevel="WARNING",
    )


def fence_previous_life(app: Application, settings: Settings) -> None:
    """Abort whatever a killed predecessor with this instance's transactional id left open.

    quixstreams starts its transactional producer only when it first produces, after the group
    has assigned the partitions. Until then the dead instance's transaction stays open, and the
    broker answers the committed-offset lookup of the assignment "unstable" for as long as it
    does: a restart waited about 13 s for it. Fencing first makes the restart immediate."""
    transactional_id = app.config.producer_extra_config["transactional.id"]
    fencer = Producer(producer_config(settings, **{"transactional.id": transactional_id}))
    fencer.init_transactions(settings.kafka_call_timeout_seconds)
    fencer.flush(settings.kafka_call_timeout_seconds)


def input_topic(
    app: Application,
    settings: Settings,
    catalogued: Topic,
    serde: AvroSerde,
    read: Callable[[str], None] | None = None,
) -> QuixTopic:
    """A catalogue topic to read (it exists: `revloop topics ensure` made it); ``read(topic)``
    is called for each record."""
    return app.topic(
        settings.topic_name(catalogued),
        key_deserializer="str",
        value_deserializer=CatalogueValue(serde, read),
        config=_config(settings, catalogued),
    )


def output_topic(
    app: Application, settings: Settings, record_name: str, serde: AvroSerde
) -> QuixTopic:
    """The catalogue topic of ``record_name``, to write that record to."""
    catalogued = topic_for_record(record_name)
    return app.topic(
        settings.topic_name(catalogued),
        key_serializer="bytes",
        value_serializer=CatalogueRecord(serde, record_name),
        config=_config(settings, catalogued),
    )


def catalogue_key(record_name: str) -> Callable[[Mapping[str, Any]], bytes]:
    """The message key the catalogue gives records of ``record_name`` (``Topic.key``)."""
    return topic_for_record(record_name).message_key


def internal_topic(app: Application, settings: Settings, name: str, partitions: int) -> QuixTopic:
    """A topic of the worker's own, between two of its stages (``<group>--<name>``): JSON values,
    string keys, written and read inside the worker's transactions."""
    return app.topic(
        f"{app.config.consumer_group}--{name}",
        key_serializer="str",
        key_deserializer="str",
        value_serializer="json",
        value_deserializer="json",
        config=TopicConfig(
            num_partitions=partitions, replication_factor=settings.topic_replication_factor
        ),
    )


def _config(settings: Settings, catalogued: Topic) -> TopicConfig:
    return TopicConfig(
        num_partitions=catalogued.partitions,
        replication_factor=settings.topic_replication_factor,
        extra_config=dict(catalogued.config),
    )
