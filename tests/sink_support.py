"""`revloop sink postgres` in a test: a database of the test's own (migrated), a scratch
catalogue, events published to it, and the sink run over it as a child process (so SIGKILL is
real)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer
from psycopg import sql

from revloop.kafka import consumer_config, high_watermarks, producer_config
from revloop.settings import Settings
from schemas.topics import TOPICS, Topic, topic_for_record
from sinks.postgres.migrate import upgrade
from sinks.postgres.service import SINK_TOPICS
from tests.normalizer_support import SERDE

E = "dev.revloop.events."
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@contextmanager
def scratch_database(settings: Settings) -> Iterator[str]:
    """A new database on the test server, migrated to the newest revision; dropped after."""
    name = f"sinktest_{uuid.uuid4().hex[:10]}"
    base, _, _ = settings.dsn.rpartition("/")
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = f"{base}/{name}"
    try:
        upgrade(dsn)
        yield dsn
    finally:
        with psycopg.connect(settings.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def envelope(event: str, minutes: float, store: str = "acme", **extra: Any) -> dict[str, Any]:
    at = T0 + timedelta(minutes=minutes)
    return {
        "event_id": event,
        "store_id": store,
        "platform": "shopify",
        "occurred_at": at,
        "received_at": at,
        "source": "webhook",
        "caused_by": [],
        **extra,
    }


class Sink:
    """Events published to a scratch catalogue, and `revloop sink postgres` over it."""

    def __init__(self, settings: Settings, topics: tuple[Topic, ...], dsn: str, tmp: Path) -> None:
        self.settings = settings
        self.topics = topics
        self.prefix = topics[0].name.removesuffix(TOPICS[0].name)
        self.dsn = dsn
        self.group = f"sink-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        self.log = tmp / f"{self.group}.log"
        self.producer = Producer(producer_config(settings))
        self.process: subprocess.Popen[bytes] | None = None

    def publish(self, record: str, value: dict[str, Any], flush: bool = True) -> None:
        catalogued = topic_for_record(E + record)
        self.producer.produce(
            self.prefix + catalogued.name,
            key=catalogued.message_key(value),
            value=SERDE.encode(E + record, value),
        )
        self.producer.poll(0)
        if flush:
            self.producer.flush(10)

    def start(self, group: str | None = None, **extra: str) -> None:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "DATABASE_URL": self.dsn,
            "REVLOOP_TOPIC_PREFIX": self.prefix,
            "REVLOOP_STATE_DIR": str(self.tmp),
            "REVLOOP_SINK_GROUP_ID": group or self.group,
            **extra,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "revloop", "sink", "postgres"],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def ends(self) -> dict[tuple[str, int], int]:
        reader = Consumer(consumer_config(self.settings, f"ends-{uuid.uuid4().hex[:6]}"))
        try:
            return {
                (self.prefix + name, p): end
                for name in SINK_TOPICS
                for p, end in high_watermarks(reader, self.prefix + name).items()
                if end
            }
        finally:
            reader.close()

    def stored_total(self, group: str | None = None) -> int:
        """The sum of the offsets the sink has committed to Postgres."""
        [(total,)] = self.query(
            "SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets WHERE group_id = %s",
            self.prefix + (group or self.group),
        )
        return int(total)

    def caught_up(self, group: str | None = None) -> bool:
        """Whether the sink's offsets in Postgres reached every topic's end (a transactional
        producer's commit marker takes an offset too, so 'reached' is within one)."""
        with psycopg.connect(self.dsn) as conn:
            stored = {
                (t, p): o
                for t, p, o in conn.execute(
                    "SELECT topic, partition, next_offset FROM kafka_offsets WHERE group_id = %s",
                    (self.prefix + (group or self.group),),
                )
            }
        return all(stored.get(key, 0) >= end for key, end in self.ends().items())

    def wait_caught_up(self, timeout: float = 90.0, group: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.caught_up(group):
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the sink exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the sink did not catch up: {self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return list(conn.execute(statement, params).fetchall())  # type: ignore[arg-type]


def table_contents(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every sink table's rows, in key order (the offsets table aside)."""
    from sinks.postgres.writer import TABLES

    found = {}
    with psycopg.connect(dsn) as conn:
        for name, table in TABLES.items():
            order = sql.SQL(", ").join(map(sql.Identifier, table.keys))
            found[name] = list(
                conn.execute(
                    sql.SQL("SELECT * FROM {} ORDER BY {}").format(sql.Identifier(name), order)
                ).fetchall()
            )
        found["inventory_levels"] = list(
            conn.execute("SELECT * FROM inventory_levels ORDER BY 1, 2, 3").fetchall()
        )
    return found
