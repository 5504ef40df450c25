"""`revloop lag` against real consumer groups on the broker, made to keep up, lag, stall, stop and
rewind; and a group that has read everything a transactional producer wrote, whose one offset
of lag is only the commit marker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from revloop.consumer_lag import Status
from revloop.kafka import consumer_config, producer_config
from revloop.lag_sampler import LagSampler
from revloop.settings import Settings
from tests.lag_support import commit, produce
from tests.normalizer_support import wait_for
from tests.stack_support import free_ports


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    name = f"lagtest-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


def test_statuses_of_groups_that_keep_up_lag_stall_stop_and_rewind(
    settings: Settings, topic: str
) -> None:
    prefix = f"lag-{uuid.uuid4().hex[:6]}."
    local = settings.model_copy(update={"topic_prefix": prefix})
    produce(settings, topic, 10)
    for name in ("keeps-up", "behind", "stalled", "stopped", "rewound"):
        commit(local, name, topic, 2)  # consumer_config puts the prefix on the group id
    # The stalled group has a live member that never commits.
    member = Consumer(consumer_config(local, "stalled", **{"session.timeout.ms": 30_000}))
    member.subscribe([topic])
    sampler = LagSampler(local, window=4)
    try:
        for step in range(4):
            member.poll(0.5)  # stay in the group; no commit
            produce(settings, topic, 5)
            end = 10 + 5 * (step + 1)
            commit(local, "keeps-up", topic, end)
            commit(local, "behind", topic, 2 + 2 * (step + 1))  # moves, slower than writes
            commit(local, "rewound", topic, 8 if step < 2 else 3)
            report = sampler.sample()
        statuses = {g.group.removeprefix(prefix): g.status for g in report.groups}
        assert statuses == {
            "keeps-up": Status.OK,
            "behind": Status.WARN,
            "stalled": Status.STALL,
            "stopped": Status.STOP,
            "rewound": Status.REWIND,
        }
        rows = {r.group.removeprefix(prefix): r for r in report.rows}
        assert rows["stopped"].lag == 30 - 2 and rows["keeps-up"].lag == 0
        assert rows["stopped"].lag_seconds > 0 and rows["keeps-up"].lag_seconds == 0
        assert rows["stopped"].lag_seconds >= rows["behind"].lag_seconds
        # The behind group catches up: OK again once its lag is 0 within the window.
        commit(local, "behind", topic, 30)
        assert {g.group.removeprefix(prefix): g.status for g in sampler.sample().groups}[
            "behind"
        ] is Status.OK
    finally:
        member.close()


def test_a_commit_marker_is_not_lag(settings: Settings, topic: str, tmp_path: Path) -> None:
    producer = Producer(producer_config(settings, **{"transactional.id": f"lag-{uuid.uuid4()}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for n in range(5):
        producer.produce(topic, value=f"t{n}".encode())
    producer.commit_transaction(30)
    prefix = f"lagm-{uuid.uuid4().hex[:6]}."
    local = settings.model_copy(update={"topic_prefix": prefix})
    reader = Consumer(consumer_config(local, "reader"))
    reader.assign([TopicPartition(topic, 0, 0)])
    read = []
    while len(read) < 5:
        read += [m for m in reader.consume(10, timeout=1) if m.error() is None]
    # As the exactly-once processors commit: after the last record read, not past the marker.
    last = read[-1].offset() or 0
    reader.commit(offsets=[TopicPartition(topic, 0, last + 1)], asynchronous=False)
    reader.close()
    (row,) = LagSampler(local).sample().rows
    assert row.end == 6 and row.committed == 5  # the marker sits at offset 5
    assert row.lag == 0 and row.status is Status.OK
    # And the command says so too.
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REVLOOP_TOPIC_PREFIX": prefix,
        "REVLOOP_STATE_DIR": str(tmp_path),
    }
    shown = subprocess.run(
        [sys.executable, "-P", "-m", "revloop", "lag", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert [(g["group"], g["lag"], g["status"]) for g in document["groups"]] == [
        (f"{prefix}reader", 0, "OK")
    ]
    # And the exporter, in kafka-lag-exporter's names.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    exporter = subprocess.Popen(
        [sys.executable, "-P", "-m", "revloop", "lag", "--serve", str(port), "--interval", "0.5"],
        env=env,
    )
    try:
        labels = f'group="{prefix}reader",partition="0",topic="{topic}"'
        wanted = [
            f"kafka_consumergroup_group_lag{{{labels}}} 0.0",
            f"kafka_consumergroup_group_offset{{{labels}}} 5.0",
            f'kafka_partition_latest_offset{{partition="0",topic="{topic}"}} 6.0',
            f'kafka_consumergroup_group_max_lag_seconds{{group="{prefix}reader"}} 0.0',
            f'revloop_consumergroup_status{{group="{prefix}reader"}} 0.0',
        ]

        def exported() -> bool:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return False
            return all(line in text for line in wanted)

        wait_for(exported, timeout=30)
    finally:
        exporter.kill()
        exporter.wait(10)


def test_a_broker_that_does_not_answer_fails_the_sample_rather_than_reporting_no_groups(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)  # nothing listens there
    nowhere = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", state_dir=tmp_path)
    with pytest.raises(KafkaException):
        LagSampler(nowhere, request_timeout=1.0).sample()
