"""`revloop sink postgres`: the canonical and derived topics into Postgres tables, with an
exactly-once effect.

Offsets live with the data (Kafka Connect's and Debezium's model): each batch's rows and the
next offset of every partition it read commit in one Postgres transaction, and on assignment
the sink seeks to the offsets in the table, not to the group's commits in Kafka (it also
commits there, after Postgres, for lag dashboards). A killed sink starts again at the last
committed batch; a batch that an older instance had already written is recognised by its
offsets and skipped.

A row Postgres refuses goes to ``ops.dead-letters.v1`` with the reason and a reference to the
record (never the values: they may be personal data); the rest of its batch is written.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import typer
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from revloop.ids import deterministic_id
from revloop.kafka import cluster_id, consumer_config, producer_config, serde_for
from revloop.metrics import serve_metrics
from revloop.settings import Settings, get_settings
from revloop.stores.registry import file_entries
from revloop.watchdog import Watchdog, stop_on_signals
from schemas.serde import SerdeError
from schemas.topics import TOPICS, topic_for_record
from sinks.postgres.followups import follow_up
from sinks.postgres.ledger import append_entries
from sinks.postgres.metrics import SinkMetrics
from sinks.postgres.rows import RECORDS, Row, rows_for
from sinks.postgres.writer import Rejected, prepare_staging, write_rows

log = logging.getLogger(__name__)

DEAD_LETTER = "dev.revloop.events.DeadLetter"
SINK_TOPICS = tuple(
    t.name for t in TOPICS if any(v.rsplit(".", 1)[-1] in RECORDS for v in t.values)
)
"""Every catalogue topic that carries a record the sink writes."""


class StopAssignment(Exception):
    """Raised from the assignment callback when the sink is stopping while Postgres is away."""


@dataclass(frozen=True)
class Origin:
    """Where a row's record came from: enough to find it again, nothing of its content."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    store_id: str
    event_id: str | None
    platform: str


@dataclass
class BatchResult:
    records: int
    rows: int
    rejected: int
    skipped: int


class PostgresSink:
    def __init__(
        self,
        settings: Settings,
        metrics: SinkMetrics | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id or socket.gethostname()
        """Its static group membership: a restarted sink (after a SIGKILL too) takes its
        partitions back at once instead of waiting out its dead life's session."""
        self.metrics = metrics or SinkMetrics(None)
        self.group = settings.topic_prefix + settings.sink_group_id
        self.topics = [settings.topic_prefix + name for name in SINK_TOPICS]
        self.serde = serde_for(settings, "sinks")
        self.dead_letters = settings.topic_name(topic_for_record(DEAD_LETTER))
        self._conn: psycopg.Connection[Any] | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._assigned: list[TopicPartition] = []
        self._stores_stamp: Any = None
        self._next_retention = 0.0
        self.cluster = cluster_id(settings)
        self._stop = threading.Event()

    # -- Postgres --------------------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.settings.dsn, application_name="revloop-sink")
            prepare_staging(self._conn)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def stored_offsets(self, partitions: Sequence[TopicPartition]) -> dict[tuple[str, int], int]:
        rows = self.conn.execute(
            "SELECT topic, partition, next_offset FROM kafka_offsets"
            " WHERE cluster_id = %s AND group_id = %s",
            (self.cluster, self.group),
        ).fetchall()
        self.conn.commit()
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        return {(t, p): o for t, p, o in rows if (t, p) in wanted}

    # -- Kafka -----------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The offsets must be read before the partitions are taken: wait for Postgres.
        backoff = 0.5
        while True:
            if self._stop.is_set():
                raise StopAssignment  # stopping: the partitions are not taken
            try:
                stored = self.stored_offsets(partitions)
                break
            except (psycopg.Error, OSError) as exc:
                log.error("sink postgres: cannot read the offsets: %s", _first(exc))
                self._drop_connection()
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        self._assigned = partitions
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = []

    def _rewind(self) -> None:
        """Back to the offsets in Postgres (after a failed batch: its records are read again)."""
        assert self._consumer is not None
        if not self._assigned:
            return
        stored = self.stored_offsets(self._assigned)
        for tp in self._assigned:
            offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # -- one batch -------------------------------------------------------------------------------

    def write_batch(self, messages: Sequence[Message]) -> BatchResult:
        """Write ``messages`` and their offsets in one transaction."""
        conn = self.conn
        with conn.transaction():
            stored = self._locked_offsets(conn, messages)
            fresh = [
                m
                for m in messages
                if (m.offset() or 0) >= stored.get((m.topic() or "", m.partition() or 0), 0)
            ]
            rows: list[tuple[Row, Origin]] = []
            dead: list[Rejected] = []
            for message in fresh:
                rows_of, failure = self._rows(message)
                if failure is not None:
                    dead.append(failure)
                for row, origin in rows_of:
                    # Postgres text cannot hold NUL, ids included: refused here, so no
                    # statement (a follow-up, the ledger's) ever sees one.
                    if _holds_nul(row.values):
                        reason = f"table {row.table}; a text holds a NUL (0x00) character"
                        dead.append(Rejected(row, reason, origin))
                    else:
                        rows.append((row, origin))
            entries = [row for row, _ in rows if row.table == "ledger_entries"]
            written = write_rows(conn, [(r, o) for r, o in rows if r.table != "ledger_entries"])
            refused = {id(rejected.row) for rejected in written.rejected}
            follow_up(conn, [row for row, _ in rows if id(row) not in refused])
            append_entries(conn, entries)
            dead += written.rejected
            if dead:
                self._send_dead_letters(dead)
            self._store_offsets(conn, fresh)
        return BatchResult(len(fresh), written.rows, len(dead), len(messages) - len(fresh))

    def _locked_offsets(
        self, conn: psycopg.Connection[Any], messages: Sequence[Message]
    ) -> dict[tuple[str, int], int]:
        # FOR UPDATE: two instances that both think they own a partition write one at a time,
        # and the second sees what the first wrote.
        partitions = sorted({(m.topic() or "", m.partition() or 0) for m in messages})
        topics, numbers = [t for t, _ in partitions], [p for _, p in partitions]
        found = conn.execute(
            """
            SELECT o.topic, o.partition, o.next_offset FROM kafka_offsets o
            JOIN unnest(%s::text[], %s::int[]) AS k(topic, partition)
              ON o.topic = k.topic AND o.partition = k.partition
            WHERE o.cluster_id = %s AND o.group_id = %s
            ORDER BY o.topic, o.partition
            FOR UPDATE OF o
            """,
            (topics, numbers, self.cluster, self.group),
        ).fetchall()
        return {(t, p): o for t, p, o in found}

    def _store_offsets(self, conn: psycopg.Connection[Any], messages: Sequence[Message]) -> None:
        ends = _next_offsets(messages)
        if not ends:
            return
        now = datetime.now(UTC)
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO kafka_offsets
                    (cluster_id, group_id, topic, partition, next_offset, updated_at)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (cluster_id, group_id, topic, partition) DO UPDATE
                SET next_offset = GREATEST(kafka_offsets.next_offset, EXCLUDED.next_offset),
                    updated_at = EXCLUDED.updated_at
                """,
                [(self.cluster, self.group, tp.topic, tp.partition, tp.offset, now) for tp in ends],
            )

    def _rows(self, message: Message) -> tuple[list[tuple[Row, Origin]], Rejected | None]:
        topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset()
        try:
            decoded = self.serde.decode(message.value() or b"")
        except SerdeError as exc:
            origin = Origin(topic, partition, offset or 0, message.key(), "unknown", None, "other")
            reason = f"not a catalogue record: {type(exc).__name__}"
            return [], Rejected(Row("", {}), reason, origin)
        envelope = decoded.value["envelope"]
        origin = Origin(
            topic,
            partition,
            offset or 0,
            message.key(),
            envelope["store_id"],
            envelope["event_id"],
            envelope["platform"],
        )
        record = decoded.record_name.rsplit(".", 1)[-1]
        _, stamp = message.timestamp()
        published = datetime.fromtimestamp(stamp / 1000, UTC)
        return [(row, origin) for row in rows_for(record, decoded.value, published)], None

    def _send_dead_letters(self, rejected: Sequence[Rejected]) -> None:
        if self._producer is None:
            self._producer = Producer(producer_config(self.settings))
        now = datetime.now(UTC)
        for failure in rejected:
            origin: Origin = failure.origin
            where = f"{origin.topic}/{origin.partition}/{origin.offset}/{failure.row.table}"
            value = {
                "envelope": {
                    "event_id": deterministic_id(f"dead-letter/sink.postgres/{where}"),
                    "store_id": origin.store_id,
                    "platform": origin.platform,
                    "occurred_at": now,
                    "received_at": now,
                    "source": "derived",
                    "caused_by": [origin.event_id] if origin.event_id else [],
                },
                "stage": "sink.postgres",
                "error_type": failure.reason,
                "error_message": (
                    f"Postgres refused a row of {failure.row.table} from {where}; the rest of "
                    "its batch was written"
                    if failure.row.table
                    else f"{origin.topic} offset {origin.offset} did not decode"
                ),
                "original_topic": origin.topic,
                "original_partition": origin.partition,
                "original_offset": origin.offset,
                "original_key": origin.key,
                "original_value": None,  # a reference, not a copy: it may hold personal data
                "raw_event_id": None,
                "attempts": 1,
            }
            self._producer.produce(
                self.dead_letters,
                key=topic_for_record(DEAD_LETTER).message_key(value),
                value=self.serde.encode(DEAD_LETTER, value),
            )
        # Before the rows commit: a dead letter is never lost, at worst sent twice (same id).
        if self._producer.flush(self.settings.kafka_call_timeout_seconds):
            raise RuntimeError("dead letters not acknowledged in time; the batch is retried")

    # -- housekeeping ----------------------------------------------------------------------------

    def sync_stores(self) -> None:
        """The ``stores`` table from the stores file (its public fields), when it changed."""
        path = self.settings.stores_file
        stamp = path.stat().st_mtime_ns if path.exists() else None
        if stamp == self._stores_stamp:
            return
        entries = file_entries(path) if path.exists() else []
        now = datetime.now(UTC)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO stores (store_id, platform, identity, currency, updated_at)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (store_id) DO UPDATE SET platform = EXCLUDED.platform,
                    identity = EXCLUDED.identity, currency = EXCLUDED.currency,
                    updated_at = EXCLUDED.updated_at
                WHERE (stores.platform, stores.identity, stores.currency)
                    IS DISTINCT FROM (EXCLUDED.platform, EXCLUDED.identity, EXCLUDED.currency)
                """,
                [
                    (e["store_id"], e["platform"], e["identity"], e.get("currency"), now)
                    for e in entries
                    if isinstance(e, dict) and "store_id" in e
                ],
            )
        self._stores_stamp = stamp

    def expire_webhook_log(self) -> int:
        if time.monotonic() < self._next_retention:
            return 0
        self._next_retention = time.monotonic() + 3600
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.sink_webhook_log_days)
        with self.conn.transaction():
            deleted = self.conn.execute(
                "DELETE FROM webhook_log WHERE received_at < %s", (cutoff,)
            ).rowcount
        return deleted

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        settings = self.settings
        self._stop = stop
        self._consumer = consumer = Consumer(
            consumer_config(
                settings,
                settings.sink_group_id,
                **{
                    "group.instance.id": self.instance_id,
                    "session.timeout.ms": settings.sink_session_timeout_ms,
                },
            )
        )
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("sink postgres: group %s reading %d topics", self.group, len(self.topics))
        backoff = 0.5
        try:
            rewind = False
            while not stop.is_set():
                try:
                    if rewind:
                        # A failed batch's records are read again before anything after them:
                        # consuming on without the rewind would skip them for good.
                        self._rewind()
                        rewind = False
                    self.sync_stores()
                    self.expire_webhook_log()
                    messages = [
                        m
                        for m in consumer.consume(
                            settings.sink_batch_size, settings.sink_poll_timeout_seconds
                        )
                        if not m.error()
                    ]
                    if not messages:
                        continue
                    result = self.write_batch(messages)
                    self.metrics.written(messages)
                    # For lag dashboards only: the offsets that count are in Postgres.
                    consumer.commit(offsets=_next_offsets(messages), asynchronous=True)
                    if result.rejected:
                        log.warning("sink postgres: %d dead letter(s)", result.rejected)
                    backoff = 0.5
                except (psycopg.Error, RuntimeError, OSError) as exc:
                    log.error("sink postgres: batch failed, reading it again: %s", _first(exc))
                    self.metrics.failed()
                    if isinstance(exc, psycopg.OperationalError):
                        self._drop_connection()
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    rewind = True
        finally:
            consumer.close()
            if self._producer is not None:
                self._producer.flush(settings.kafka_call_timeout_seconds)
            self._drop_connection()


def _holds_nul(values: dict[str, Any]) -> bool:
    for value in values.values():
        if isinstance(value, str) and "\x00" in value:
            return True
        if isinstance(value, list) and any(isinstance(v, str) and "\x00" in v for v in value):
            return True
    return False


def _next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    ends: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic() or "", m.partition() or 0)
        ends[key] = max(ends.get(key, 0), (m.offset() or 0) + 1)
    return [TopicPartition(t, p, o) for (t, p), o in sorted(ends.items())]


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def sink_postgres_command(
    instance_id: str | None = typer.Option(
        None,
        help="Stable id of this instance (default: the host name): its static group membership.",
    ),
) -> None:
    """Write the canonical and derived topics to Postgres (`revloop db upgrade` first), exactly
    once: offsets commit with the rows. Runs until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    stop = threading.Event()
    watchdog = Watchdog("sink-postgres")
    stop_on_signals(stop, watchdog, settings.shutdown_seconds)
    metrics = SinkMetrics(settings.dsn)
    port, host = settings.sink_metrics_port, settings.metrics_host
    server = serve_metrics(metrics.registry, port, host, process="sink-postgres")
    try:
        PostgresSink(settings, metrics, instance_id).run(stop)
    except StopAssignment:
        return
    except psycopg.OperationalError as exc:
        typer.secho(f"error: cannot reach Postgres: {_first(exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    except KafkaException as exc:
        typer.secho(f"error: cannot reach Kafka: {_first(exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    finally:
        metrics.close()
        if server is not None:
            server.close()
