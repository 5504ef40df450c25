"""What the console shows, read from its three sources each sample: Kafka (the lag sampler of
`revloop lag`, and watermarks for throughput and dead letters), Postgres (the sink's open
breakers) and ingest's /metrics. A source that fails gives its panels an error; the others go
on."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from console.figures import (
    History,
    breaker_json,
    delta,
    outcome_totals,
    rates,
    records,
    report_json,
    topic_totals,
)
from revloop.kafka import admin_client
from revloop.lag_sampler import LagSampler, Report
from revloop.metrics import local_url
from revloop.settings import Settings
from schemas.topics import topic
from sinks.postgres.ops_views import open_breakers

log = logging.getLogger(__name__)

HISTORY_SECONDS = 900.0
"""How far back the lag chart reaches."""
KAFKA_TIMEOUT_SECONDS = 5.0
"""How long one metadata or offsets call may take before Kafka counts as down for the sample."""
POSTGRES_TIMEOUT_SECONDS = 3
INGEST_TIMEOUT_SECONDS = 2.0
DEAD_LETTERS = topic("ops.dead-letters.v1")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class Collector:
    """One snapshot per :meth:`collect`, each compared with the one before for rates and
    deltas. Not thread-safe: one sampling thread calls it."""

    def __init__(
        self, settings: Settings, interval: float, groups_prefix: str | None = None
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.sampler = LagSampler(settings, groups_prefix=groups_prefix)
        self.state = settings.state_dir / "lag-samples.json"
        self.sampler.load(self.state)  # as `revloop lag` does: statuses build on past samples
        self.admin = admin_client(settings)
        self.history = History(size=max(2, round(HISTORY_SECONDS / interval)))
        self.ingest_url = local_url(settings.ingest_host, settings.ingest_port, "/metrics")
        self._written: tuple[float, dict[str, int]] | None = None
        self._dead_letters: int | None = None
        self._outcomes: tuple[float, dict[str, float]] | None = None
        self._errors: dict[str, str | None] = {}

    def save(self) -> None:
        self.sampler.save(self.state)

    def collect(self) -> dict[str, Any]:
        started = time.monotonic()
        snapshot: dict[str, Any] = {"interval": self.interval}
        snapshot.update(self._kafka())
        snapshot["breakers"] = self._breakers()
        snapshot["ingest"] = self._ingest()
        snapshot["at"] = time.time()
        snapshot["took_seconds"] = time.monotonic() - started
        return snapshot

    # -- Kafka: lag, throughput, dead letters --------------------------------------------------

    def _kafka(self) -> dict[str, Any]:
        dead_name = self.settings.topic_name(DEAD_LETTERS)
        try:
            report, partitions, ends, dead = self._read_kafka(dead_name)
        except Exception as exc:  # the Kafka panels say so; the other panels go on
            if isinstance(exc, KafkaException):
                what = f"Kafka unreachable at {self.settings.bootstrap_servers}"
            else:  # a bug
                log.exception("Kafka panels failed")
                what = "Kafka panels failed"
            error = self._error("kafka", what, exc)
            self._written = None
            return {
                "lag": {"error": error, "groups": [], "history": self.history.as_json()},
                "throughput": {"error": error, "topics": []},
                "dead_letters": {"error": error, "topic": dead_name},
            }
        self._errors["kafka"] = None
        self.history.add(report.at, ((g.group, g.lag, g.max_lag_seconds) for g in report.groups))
        return {
            "lag": {
                "error": None,
                "at": report.at,
                "groups": report_json(report),
                "history": self.history.as_json(),
            },
            "throughput": {"error": None, "topics": self._throughput(report.at, ends, partitions)},
            "dead_letters": self._dead_letter_panel(dead_name, dead),
        }

    def _read_kafka(
        self, dead_name: str
    ) -> tuple[Report, dict[str, list[int]], dict[tuple[str, int], int], int | None]:
        """The lag report, the partitions of every topic, the log-end offsets of the topics
        shown, and the dead letters kept (None: no such topic). Metadata first: it fails fast
        when the broker is down, where the sampler would wait out each of its calls."""
        metadata = self.admin.list_topics(timeout=KAFKA_TIMEOUT_SECONDS)
        report = self.sampler.sample()
        partitions = {
            name: sorted(described.partitions)
            for name, described in metadata.topics.items()
            if described.error is None
        }
        shown = sorted(self._topics(report) & partitions.keys())
        # The dead-letter topic is in the catalogue, so among these.
        ends = self._watermarks(((t, p) for t in shown for p in partitions[t]), OffsetSpec.latest())
        if dead_name not in partitions:
            return report, partitions, ends, None
        tps = [(dead_name, p) for p in partitions[dead_name]]
        dead = records(self._watermarks(tps, OffsetSpec.earliest()), {tp: ends[tp] for tp in tps})
        return report, partitions, ends, dead

    def _topics(self, report: Report) -> set[str]:
        """The catalogue's topics and every topic a sampled group reads."""
        return {t.name for t in self.settings.topics} | {r.topic for r in report.rows}

    def _watermarks(
        self, partitions: Iterable[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        """Each partition's low (earliest) or high (latest, read-uncommitted) watermark."""
        wanted = {TopicPartition(t, p): spec for t, p in partitions}
        if not wanted:
            return {}
        futures = self.admin.list_offsets(wanted, request_timeout=KAFKA_TIMEOUT_SECONDS)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def _throughput(
        self,
        at: float,
        ends: dict[tuple[str, int], int],
        partitions: dict[str, list[int]],
    ) -> list[dict[str, Any]]:
        written = topic_totals(ends)
        before = self._written
        per_second = rates(
            None if before is None else dict(before[1]),
            dict(written),
            0.0 if before is None else at - before[0],
        )
        self._written = (at, written)
        return [
            {
                "topic": name,
                "partitions": len(partitions[name]),
                "end": total,
                "rate": per_second[name],
            }
            for name, total in sorted(written.items())
        ]

    def _dead_letter_panel(self, name: str, count: int | None) -> dict[str, Any]:
        if count is None:
            self._dead_letters = None
            return {
                "error": f"topic {name} does not exist (run `revloop topics ensure`)",
                "topic": name,
            }
        added = None if self._dead_letters is None else delta(self._dead_letters, count)
        self._dead_letters = count
        return {"error": None, "topic": name, "records": count, "added": added}

    # -- Postgres: open breakers ---------------------------------------------------------------

    def _breakers(self) -> dict[str, Any]:
        try:
            with psycopg.connect(
                self.settings.dsn,
                connect_timeout=POSTGRES_TIMEOUT_SECONDS,
                autocommit=True,
                application_name="revloop-console",
            ) as conn:
                found = open_breakers(conn)
        except psycopg.OperationalError as exc:
            return {"error": self._error("postgres", "Postgres unreachable", exc), "open": []}
        except psycopg.errors.UndefinedTable as exc:
            what = "Postgres has no sink tables (run `revloop db upgrade`)"
            return {"error": self._error("postgres", what, exc), "open": []}
        except Exception as exc:
            return {"error": self._error("postgres", "Postgres query failed", exc), "open": []}
        self._errors["postgres"] = None
        now = datetime.now(UTC)
        return {"error": None, "open": [breaker_json(b, now) for b in found]}

    # -- ingest: deliveries by outcome ---------------------------------------------------------

    def _ingest(self) -> dict[str, Any]:
        panel: dict[str, Any] = {"url": self.ingest_url, "outcomes": []}
        try:
            answer = httpx.get(self.ingest_url, timeout=INGEST_TIMEOUT_SECONDS, trust_env=False)
            answer.raise_for_status()
            totals = outcome_totals(answer.text)
        except httpx.TransportError as exc:
            self._outcomes = None
            panel["error"] = self._error(
                "ingest", f"ingest not running (no answer at {self.ingest_url})", exc
            )
            return panel
        except Exception as exc:
            self._outcomes = None
            what = f"ingest /metrics unreadable at {self.ingest_url}"
            panel["error"] = self._error("ingest", what, exc)
            return panel
        self._errors["ingest"] = None
        now = time.time()
        before = self._outcomes
        self._outcomes = (now, totals)
        seconds = 0.0 if before is None else now - before[0]
        panel["error"] = None
        panel["outcomes"] = [
            {
                "outcome": outcome,
                "total": total,
                # A series first seen now was created by its first delivery: from zero.
                "delta": None if before is None else delta(before[1].get(outcome, 0.0), total),
                "rate": None
                if before is None or seconds <= 0
                else delta(before[1].get(outcome, 0.0), total) / seconds,
            }
            for outcome, total in sorted(totals.items())
        ]
        return panel

    def _error(self, source: str, what: str, exc: BaseException) -> str:
        """The panel's message; logged when it changes, not every sample."""
        message = f"{what}: {_first_line(exc)}"
        if self._errors.get(source) != message:
            log.warning("%s", message)
            self._errors[source] = message
        return message
