"""The event contracts on a real broker: every event type survives Kafka, old consumers read new
data, and `revloop topics ensure` converges."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from revloop.kafka import (
    consumer_config,
    delete_topics,
    describe_topics,
    ensure_topics,
    producer_config,
)
from revloop.settings import Settings
from schemas.registry import AVRO_DIR, CommittedCatalogue, event_names, load_definition
from schemas.serde import AvroSerde
from schemas.topics import TOPICS, Topic, topic_for_record
from tests.avro_strategies import for_schema

EVENTS = event_names()
ORDER = "dev.revloop.events.OrderEvent"


@pytest.fixture(scope="module")
def scratch_topics(settings: Settings, scratch_catalogue: Any) -> dict[str, Topic]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    return {t.name.split(".", 1)[1]: t for t in topics}


@pytest.fixture(scope="module")
def producer(settings: Settings) -> Iterator[Producer]:
    p = Producer(producer_config(settings))
    yield p
    p.flush(10)


def _produce(
    producer: Producer, topic: str, messages: list[tuple[bytes, bytes]]
) -> list[TopicPartition]:
    """Positions of the messages, in the order they were sent."""
    delivered: dict[int, TopicPartition] = {}

    def on_delivery(index: int) -> Callable[[Any, Any], None]:
        def record(err: Any, msg: Any) -> None:
            assert err is None, err
            delivered[index] = TopicPartition(msg.topic(), msg.partition(), msg.offset())

        return record

    for index, (key, value) in enumerate(messages):
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery(index))
    assert producer.flush(15) == 0
    return [delivered[i] for i in range(len(messages))]


def _read_back(settings: Settings, positions: list[TopicPartition]) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        consumer_config(settings, group_id="unused", **{"enable.partition.eof": False})
    )
    try:
        starts: dict[int, int] = {}
        for p in positions:
            starts[p.partition] = min(p.offset, starts.get(p.partition, p.offset))
        consumer.assign(
            [TopicPartition(positions[0].topic, part, off) for part, off in starts.items()]
        )
        wanted = {(p.partition, p.offset) for p in positions}
        got: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        for _ in range(200):
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            if (msg.partition(), msg.offset()) in wanted:
                got[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
            if len(got) == len(wanted):
                break
        return [got[(p.partition, p.offset)] for p in positions]
    finally:
        consumer.close()


SERDE = AvroSerde(CommittedCatalogue.load())


@pytest.mark.parametrize("name", EVENTS)
@hypothesis_settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_event_type_survives_a_real_broker(
    name: str,
    data: st.DataObject,
    settings: Settings,
    producer: Producer,
    scratch_topics: dict[str, Topic],
) -> None:
    values = data.draw(st.lists(for_schema(load_definition(name)), min_size=1, max_size=5))
    carrier = scratch_topics[topic_for_record(name).name]
    sent = [(carrier.message_key(v), SERDE.encode(name, v)) for v in values]
    positions = _produce(producer, carrier.name, sent)
    received = _read_back(settings, positions)
    assert [k for k, _ in received] == [k for k, _ in sent]
    assert [SERDE.decode(v).value for _, v in received] == values


@hypothesis_settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sample=for_schema(load_definition(ORDER)))
def test_a_consumer_on_the_previous_schema_reads_the_new_one(
    sample: dict[str, Any],
    tmp_path: Path,
    settings: Settings,
    producer: Producer,
    scratch_topics: dict[str, Topic],
) -> None:
    # v2 adds a field and an enum symbol, the two commonest real evolutions.
    avro_dir = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, avro_dir, dirs_exist_ok=True)
    v1 = load_definition(ORDER)
    raw = json.loads((AVRO_DIR / f"{ORDER}.avsc").read_text())
    raw["fields"].append({"name": "gift_message", "type": ["null", "string"], "default": None})
    kind = next(f for f in raw["fields"] if f["name"] == "kind")["type"]
    kind["symbols"].append("archived")
    (avro_dir / f"{ORDER}.avsc").write_text(json.dumps(raw))
    v2 = load_definition(ORDER, avro_dir)
    catalogue, added = CommittedCatalogue.load().locked(ORDER, v2)
    assert added

    new_value = {**sample, "gift_message": "happy birthday", "kind": "archived"}
    new_writer = AvroSerde(catalogue, avro_dir)
    carrier = scratch_topics["commerce.orders.v1"]
    positions = _produce(
        producer,
        carrier.name,
        [(carrier.message_key(new_value), new_writer.encode(ORDER, new_value))],
    )
    [(_, payload)] = _read_back(settings, positions)

    old_consumer = AvroSerde(catalogue)
    decoded = old_consumer.decode(payload, reader=v1).value
    assert "gift_message" not in decoded
    assert decoded["kind"] == "updated"  # the v1 enum default stands in for an unknown symbol
    assert {k: v for k, v in decoded.items() if k != "kind"} == {
        k: v for k, v in new_value.items() if k not in ("kind", "gift_message")
    }

    # And the other way: a v2 consumer reads v1 data, filling the new field's default.
    positions = _produce(
        producer, carrier.name, [(carrier.message_key(sample), SERDE.encode(ORDER, sample))]
    )
    [(_, payload)] = _read_back(settings, positions)
    assert new_writer.decode(payload, reader=v2).value == {**sample, "gift_message": None}


def test_ensure_converges_and_repairs_drift(
    settings: Settings, admin: AdminClient, scratch_catalogue: Any
) -> None:
    topics = scratch_catalogue()
    first = ensure_topics(settings, topics)
    assert [c.action for c in first] == ["create"] * len(topics)
    assert ensure_topics(settings, topics) == []

    orders = next(t for t in topics if t.name.endswith("commerce.orders.v1"))
    products = next(t for t in topics if t.name.endswith("commerce.products.v1"))
    # Drift: a retention changed by hand, and a setting no catalogue makes.
    resource = ConfigResource(
        ResourceType.TOPIC,
        orders.name,
        incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry(
                "max.message.bytes", "4194304", incremental_operation=AlterConfigOpType.SET
            ),
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    for _ in range(50):  # the broker applies the alteration asynchronously
        drifted = describe_topics(admin, [orders.name])[orders.name]
        if drifted.config["retention.ms"] == "60000" and "max.message.bytes" in drifted.overrides:
            break
        time.sleep(0.1)
    grown = [t if t is not products else replace(t, partitions=5) for t in topics]
    repairs = ensure_topics(settings, grown)
    assert sorted((c.topic, c.action) for c in repairs) == sorted(
        [(orders.name, "alter-config"), (products.name, "add-partitions")]
    )
    [orders_repair] = [c for c in repairs if c.topic == orders.name]
    assert orders_repair.reset == ("max.message.bytes",)
    state = describe_topics(admin, [orders.name, products.name])
    assert state[orders.name].config["retention.ms"] == "-1"
    assert "max.message.bytes" not in state[orders.name].overrides
    assert state[orders.name].config["max.message.bytes"] != "4194304"
    assert state[products.name].partitions == 5
    assert state[products.name].config["cleanup.policy"] == "compact"
    assert ensure_topics(settings, grown) == []


def test_revloop_topics_ensure_twice_changes_nothing_the_second_time(settings: Settings) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    command = [sys.executable, "-m", "revloop", "topics", "ensure"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"0 change(s); {len(TOPICS)} topics" in second.stdout


def test_ensure_against_a_dead_broker_is_a_clear_error() -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "revloop", "topics", "ensure", "--timeout", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in " ".join(result.stdout.split())


def test_ensure_under_a_topic_prefix_creates_the_whole_catalogue_and_nothing_else(
    settings: Settings, admin: AdminClient
) -> None:
    scoped = settings.model_copy(update={"topic_prefix": f"env-{os.urandom(4).hex()}."})
    names = [t.name for t in scoped.topics]
    try:
        changes = ensure_topics(scoped)
        assert sorted(c.topic for c in changes) == sorted(names)
        assert {c.action for c in changes} == {"create"}
        assert ensure_topics(scoped) == []
        existing = describe_topics(admin, names, 10)
        for made, catalogued in zip(scoped.topics, TOPICS, strict=True):
            assert made.name == scoped.topic_prefix + catalogued.name
            assert existing[made.name].partitions == catalogued.partitions
    finally:
        assert sorted(delete_topics(scoped, names)) == sorted(names)
    assert not set(names) & set(admin.list_topics(timeout=10).topics)
