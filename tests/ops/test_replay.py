"""`revloop replay export` and `revloop replay reset` against the real broker: a time range of a
scratch topic written to Avro OCF and JSON Lines, and a group moved back in time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from revloop.cli.replay import replay_app
from revloop.history import reset_plan, revive, seek_plan
from revloop.kafka import consumer_config, ensure_topics, producer_config
from revloop.settings import Settings, get_settings
from schemas.registry import load_definition
from schemas.topics import Topic, topic_for_record
from tests.normalizer_support import SERDE
from tests.sink_events import product, raw
from tests.sink_support import envelope

E = "dev.revloop.events."
BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_seek_plan_takes_the_log_end_where_no_record_is_that_late() -> None:
    high = {0: 10, 1: 4, 2: 0}
    assert seek_plan(high, {0: 3, 1: -1, 2: -1}, {0: 7, 1: -1, 2: -1}) == {0: (3, 7)}
    assert seek_plan(high, {0: 3, 1: 1}, {0: -1, 1: 2}) == {0: (3, 10), 1: (1, 2)}
    moves = reset_plan(
        {("t", 0): 9, ("t", 1): None}, {("t", 0): 2, ("t", 1): -1}, {("t", 0): 9, ("t", 1): 5}
    )
    assert [(m.partition, m.current, m.planned) for m in moves] == [(0, 9, 2), (1, None, 5)]


@pytest.fixture
def prefixed_cli(
    settings: Settings, scratch_catalogue: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, tuple[Topic, ...]]]:
    """A scratch catalogue, and `get_settings()` answering with its prefix."""
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    prefix = topics[0].name.removesuffix("raw.webhooks.v1")
    monkeypatch.setenv("REVLOOP_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    get_settings.cache_clear()
    yield prefix, topics
    get_settings.cache_clear()


def publish(
    producer: Producer, prefix: str, record: str, value: dict[str, Any], at: datetime
) -> None:
    catalogued = topic_for_record(E + record)
    producer.produce(
        prefix + catalogued.name,
        key=catalogued.message_key(value),
        value=SERDE.encode(E + record, value),
        timestamp=int(at.timestamp() * 1000),
    )


def delete(event: str, minutes: float, product_id: str) -> dict[str, Any]:
    return {"envelope": envelope(event, minutes), "product_id": product_id}


def test_export_writes_exactly_the_records_of_the_range_as_ocf_and_jsonl(
    settings: Settings, prefixed_cli: tuple[str, tuple[Topic, ...]], tmp_path: Path
) -> None:
    prefix, _ = prefixed_cli
    producer = Producer(producer_config(settings))
    products: list[tuple[str, dict[str, Any]]] = []
    for n in range(30):  # minute n; both record types of the topic, over its 3 partitions
        if n % 5 == 4:
            products.append(("ProductDelete", delete(f"pd-{n}", n, f"p{n % 7}")))
        else:
            products.append(
                ("ProductUpsert", product(f"pu-{n}", n, f"p{n % 7}", f"Hat {n}", ["v"]))
            )
    raws = [raw(f"r-{n}", n, bytes(range(n, n + 40)) + 'é\n"'.encode()) for n in range(30)]
    for n, (record, value) in enumerate(products):
        publish(producer, prefix, record, value, BASE + timedelta(minutes=n))
    for n, value in enumerate(raws):
        publish(producer, prefix, "RawWebhook", value, BASE + timedelta(minutes=n))
    assert producer.flush(10) == 0
    start, end = (BASE + timedelta(minutes=10)).isoformat(), "2026-11-30T12:20:00"  # naive: UTC
    inside = range(10, 20)

    ocf = tmp_path / "products.avro"
    done = CliRunner().invoke(
        replay_app,
        [
            "export",
            "--topic",
            "commerce.products.v1",
            "--from",
            start,
            "--to",
            end,
            "--out",
            str(ocf),
        ],
    )
    assert done.exit_code == 0, done.output
    with ocf.open("rb") as stream:
        reader = fastavro.reader(stream, return_record_name=True)
        union: list[dict[str, Any]] = reader.writer_schema  # type: ignore[assignment]
        assert [s["name"] for s in union] == [
            E + "ProductUpsert",
            E + "ProductDelete",
        ]
        assert reader.metadata["revloop.topic"] == prefix + "commerce.products.v1"
        exported = list(reader)
    expected = [(E + products[n][0], products[n][1]) for n in inside]
    key = lambda pair: pair[1]["envelope"]["event_id"]  # noqa: E731
    assert sorted(exported, key=key) == sorted(expected, key=key)

    lines_path = tmp_path / "raw.jsonl"
    done = CliRunner().invoke(
        replay_app,
        [
            "export",
            "--topic",
            "raw.webhooks.v1",
            "--from",
            start,
            "--to",
            end,
            "--out",
            str(lines_path),
            "--quiet",
        ],
    )
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in lines_path.read_text().splitlines()]
    assert sorted(line["value"]["envelope"]["event_id"] for line in lines) == [
        f"r-{n}" for n in inside
    ]
    schema = load_definition(E + "RawWebhook")
    for line in lines:
        n = int(line["value"]["envelope"]["event_id"].removeprefix("r-"))
        assert revive(line["value"], schema) == raws[n]  # bytes and timestamps come back whole
        assert line["timestamp"] == (BASE + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert line["record"] == E + "RawWebhook"
        assert line["key"] == "acme"


def test_reset_plans_by_time_applies_and_refuses_while_the_group_has_members(
    settings: Settings, prefixed_cli: tuple[str, tuple[Topic, ...]]
) -> None:
    prefix, _ = prefixed_cli
    local = settings.model_copy(update={"topic_prefix": prefix})
    name = prefix + "commerce.inventory-levels.v1"
    producer = Producer(producer_config(settings))
    for n in range(10):  # minute n, all on partition 0
        producer.produce(
            name,
            value=b"x",
            partition=0,
            timestamp=int((BASE + timedelta(minutes=n)).timestamp() * 1000),
        )
    assert producer.flush(10) == 0
    group = prefix + "rebuild"  # as `revloop lag` shows it: consumer_config adds the prefix
    consumer = Consumer(consumer_config(local, "rebuild", **{"session.timeout.ms": 6000}))
    consumer.commit(
        offsets=[TopicPartition(name, 0, 10), TopicPartition(name, 1, 0)], asynchronous=False
    )

    def committed() -> dict[int, int]:
        found = consumer.committed([TopicPartition(name, 0), TopicPartition(name, 1)], timeout=10)
        return {tp.partition: tp.offset for tp in found}

    args = ["reset", "--group", group, "--to-datetime", (BASE + timedelta(minutes=4)).isoformat()]
    try:
        consumer.subscribe([name])  # an active member
        while not consumer.assignment():
            consumer.poll(0.2)
        refused = CliRunner().invoke(replay_app, args)
        assert refused.exit_code == 1
        assert "active member" in refused.output
        assert committed() == {0: 10, 1: 0}
    finally:
        consumer.close()
    consumer = Consumer(consumer_config(local, "rebuild"))
    try:
        planned = CliRunner().invoke(replay_app, [*args, "--dry-run"], env={"COLUMNS": "200"})
        assert planned.exit_code == 0, planned.output
        assert "dry run" in planned.output
        row = next(line for line in planned.output.splitlines() if name in line and " 0 " in line)
        assert [cell for cell in row.split() if cell != "│"] == [name, "0", "10", "4", "-6"]
        assert committed() == {0: 10, 1: 0}
        moved = CliRunner().invoke(replay_app, args)
        assert moved.exit_code == 0, moved.output
        assert committed() == {0: 4, 1: 0}  # partition 1 has no record that late: its end, 0
        unknown = CliRunner().invoke(
            replay_app, ["reset", "--group", "rebuild", "--to-datetime", "2026-01-01"]
        )
        assert unknown.exit_code == 1  # without the prefix: not the group `revloop lag` shows
    finally:
        consumer.close()
