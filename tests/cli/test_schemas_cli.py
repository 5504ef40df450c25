"""`revloop topics list` and `topics read` (revloop/cli/schemas.py): the catalogue as a table on a
real-size terminal, and a topic's newest records as JSON lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from platforms.webhooks import Delivery, raw_record
from revloop.cli.schemas import topics_app
from revloop.kafka import ensure_topics, producer_config, read_newest
from revloop.settings import Settings
from schemas.topics import TOPICS
from tests.normalizer_support import SERDE, STORES, Pipeline, wait_for


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_topics_list_shows_every_topic_name_whole_however_narrow_the_terminal(
    columns: int,
) -> None:
    result = CliRunner().invoke(topics_app, ["list"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns  # it still fits the terminal
    cells = {cell for line in lines for cell in re.split(r"[\s│┃]+", line) if cell}
    for topic in TOPICS:
        assert topic.name in cells, f"{topic.name} is cut or wrapped in:\n{result.stdout}"
    assert "…" not in result.stdout


def test_topics_read_prints_the_newest_committed_records_decoded(
    settings: Settings, scratch_catalogue: Any
) -> None:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    pipeline = Pipeline(settings, topics)
    for n in range(3):
        pipeline.publish("shopify", "orders/create", b'{"n": %d}' % n, f"ev-read-{n}")
    done = subprocess.run(
        [sys.executable, "-m", "revloop", "topics", "read", "raw.webhooks.v1", "--last", "2"],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "REVLOOP_TOPIC_PREFIX": pipeline.prefix,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["value"]["envelope"]["event_id"] for line in lines] == ["ev-read-1", "ev-read-2"]
    assert lines[1]["value"]["body"] == '{"n": 2}'  # bytes shown as the text they are
    assert lines[1]["key"] == "acme-shopify"


def test_topics_read_names_a_topic_outside_the_catalogue() -> None:
    done = CliRunner().invoke(topics_app, ["read", "no.such.topic"])
    assert done.exit_code == 2
    assert "not in the topic catalogue" in done.output


def test_topics_read_finds_the_last_record_behind_a_transaction_marker(
    settings: Settings, scratch_catalogue: Any
) -> None:
    # The normalizer writes transactionally: each partition's last offset is a commit marker.
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    pipeline = Pipeline(settings, topics)
    producer = Producer(producer_config(settings, **{"transactional.id": uuid.uuid4().hex}))
    producer.init_transactions(30)
    producer.begin_transaction()
    store = next(iter(STORES.stores_for("shopify")))
    now = datetime.now(UTC)
    record = raw_record(Delivery(store, "orders/create", "ev-tx", None, now, {}), b"{}", "a", now)
    producer.produce(
        pipeline.raw_topic, key=b"k", value=SERDE.encode("dev.revloop.events.RawWebhook", record)
    )
    producer.commit_transaction(30)
    # The commit returns once the coordinator has decided; it writes the partition's marker just
    # after, and until then the last stable offset stays below the record (on a new broker,
    # seconds later). Wait for the record to be readable, then read the newest one.
    scoped = settings.model_copy(update={"topic_prefix": pipeline.prefix})
    wait_for(lambda: pipeline.read("raw.webhooks.v1") != [], timeout=30)
    records = read_newest(scoped, pipeline.raw_topic, 1)
    assert [SERDE.decode(value).value["envelope"]["event_id"] for *_, value in records] == ["ev-tx"]
