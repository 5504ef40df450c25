"""Samples every consumer group's position from Kafka for the lag model
(:mod:`revloop.consumer_lag`; docs/ops.md, "Consumer lag").

One sample asks the broker, in a few batched admin calls, for each group's committed offsets
and members, and for every partition they read its log-end offset (read-uncommitted) and its
last stable offset (read-committed). A group that has read everything written by a
transactional producer sits one offset short of the end: the commit marker. When the last
stable offset is only a little ahead of a commit, a read-committed probe at the commit tells
whether anything readable is left; if not, the group is caught up.

The sampler keeps, per partition, a table of (time, log-end offset) for the lag in seconds and
a window of observations for the status; a one-shot run carries them over in a small state
file, so that statuses mean something from the second run on.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from revloop.consumer_lag import Observation, Status, lag_seconds, partition_status, worst
from revloop.files import write_private
from revloop.kafka import admin_client, consumer_config
from revloop.settings import Settings

log = logging.getLogger(__name__)

MARKER_PROBE = 3
"""Probe a partition whose readable end is at most this far past the commit: commit markers."""

Key = tuple[str, str, int]
"""(group, topic, partition)."""


@dataclass(frozen=True)
class Row:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    lag_seconds: float
    status: Status


@dataclass(frozen=True)
class GroupSummary:
    group: str
    status: Status
    lag: int
    max_lag_seconds: float
    members: int
    partitions: int


@dataclass(frozen=True)
class Report:
    at: float
    rows: list[Row]
    groups: list[GroupSummary]


@dataclass
class LagSampler:
    settings: Settings
    window: int = 10
    """Observations per partition a status is judged on."""
    table_seconds: float = 3600.0
    """How much history of log-end offsets is kept for the lag in seconds."""
    groups_prefix: str | None = None
    """Only groups whose id starts with this (default: the topic prefix)."""
    request_timeout: float = 10.0
    """Seconds each admin call may take (a broker that does not answer fails the sample)."""
    _ends: dict[tuple[str, int], deque[tuple[float, int]]] = field(default_factory=dict)
    _seen: dict[Key, deque[Observation]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._admin = admin_client(self.settings)

    # -- state carried between one-shot runs ---------------------------------------------------

    def load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        for key, ends in saved.get("ends", {}).items():
            topic, _, partition = key.rpartition("/")
            self._ends[(topic, int(partition))] = deque(tuple(e) for e in ends)
        for key, seen in saved.get("seen", {}).items():
            group, topic, partition = key.split("\n")
            self._seen[(group, topic, int(partition))] = deque(
                (Observation(*o) for o in seen), maxlen=self.window
            )

    def save(self, path: Path) -> None:
        document = {
            "ends": {f"{t}/{p}": list(v) for (t, p), v in self._ends.items()},
            "seen": {
                "\n".join((g, t, str(p))): [[o.at, o.committed, o.end, o.readable_end] for o in v]
                for (g, t, p), v in self._seen.items()
            },
        }
        write_private(path, json.dumps(document).encode())

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, now: float | None = None) -> Report:
        at = time.time() if now is None else now
        groups = self._groups()
        committed: dict[Key, int | None] = {}
        members: dict[str, int] = {}
        if groups:
            members = self._members(groups)
            committed = self._committed(groups)
        partitions = sorted({(t, p) for _, t, p in committed})
        ends = self._offsets(partitions, IsolationLevel.READ_UNCOMMITTED)
        stable = self._offsets(partitions, IsolationLevel.READ_COMMITTED)
        readable = self._readable(committed, stable)
        for tp in partitions:
            table = self._ends.setdefault(tp, deque())
            if not table or table[-1][1] != ends[tp] or at - table[-1][0] > 60:
                table.append((at, ends[tp]))
            while table and table[0][0] < at - self.table_seconds:
                table.popleft()
        rows = []
        for key in sorted(committed):
            group, topic, partition = key
            observation = Observation(at, committed[key], ends[(topic, partition)], readable[key])
            seen = self._seen.setdefault(key, deque(maxlen=self.window))
            seen.append(observation)
            position = committed[key] if observation.lag else ends[(topic, partition)]
            rows.append(
                Row(
                    group,
                    topic,
                    partition,
                    committed[key],
                    ends[(topic, partition)],
                    observation.lag,
                    lag_seconds(list(self._ends[(topic, partition)]), position, at),
                    partition_status(list(seen), members.get(group, 0) > 0),
                )
            )
        summaries = []
        for group in sorted({r.group for r in rows}):
            own = [r for r in rows if r.group == group]
            summaries.append(
                GroupSummary(
                    group,
                    worst(r.status for r in own),
                    sum(r.lag for r in own),
                    max(r.lag_seconds for r in own),
                    members.get(group, 0),
                    len(own),
                )
            )
        return Report(at, rows, summaries)

    def _groups(self) -> list[str]:
        prefix = self.settings.topic_prefix if self.groups_prefix is None else self.groups_prefix
        listed = self._admin.list_consumer_groups(request_timeout=self.request_timeout).result()
        if listed.errors and not listed.valid:
            # A broker that cannot be reached answers with errors only: not "no groups".
            raise KafkaException(listed.errors[0])
        return sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))

    def _members(self, groups: list[str]) -> dict[str, int]:
        found = {}
        for group, future in self._admin.describe_consumer_groups(
            groups, request_timeout=self.request_timeout
        ).items():
            try:
                found[group] = len(future.result().members)
            except KafkaException:  # a group deleted meanwhile: no members
                found[group] = 0
        return found

    def _committed(self, groups: list[str]) -> dict[Key, int | None]:
        found: dict[Key, int | None] = {}
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group)]
            future = self._admin.list_consumer_group_offsets(
                request, request_timeout=self.request_timeout
            )[group]
            try:
                result = future.result()
            except KafkaException as exc:  # a group deleted meanwhile
                log.debug("offsets of %s: %s", group, exc)
                continue
            for tp in result.topic_partitions or []:
                if tp.error is None and tp.offset >= 0:
                    found[(group, tp.topic, tp.partition)] = tp.offset
        return found

    def _offsets(
        self, partitions: Iterable[tuple[str, int]], isolation: IsolationLevel
    ) -> dict[tuple[str, int], int]:
        wanted = {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}
        if not wanted:
            return {}
        futures = self._admin.list_offsets(
            wanted, isolation_level=isolation, request_timeout=self.request_timeout
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def _readable(
        self, committed: Mapping[Key, int | None], stable: Mapping[tuple[str, int], int]
    ) -> dict[Key, int]:
        """Where a read-committed reader ends, per group and partition: the last stable offset,
        unless only commit markers lie between the commit and it."""
        readable = {key: stable[(key[1], key[2])] for key in committed}
        near = {
            key
            for key, offset in committed.items()
            if offset is not None and 0 < readable[key] - offset <= MARKER_PROBE
        }
        if not near:
            return readable
        found = self._probe({(t, p): committed[(g, t, p)] or 0 for g, t, p in near}, stable)
        for key in near:
            if (key[1], key[2]) not in found:
                readable[key] = committed[key] or 0
        return readable

    def _probe(
        self, starts: Mapping[tuple[str, int], int], stable: Mapping[tuple[str, int], int]
    ) -> set[tuple[str, int]]:
        """The partitions with a readable record between ``starts`` and their stable end."""
        consumer = Consumer(
            consumer_config(self.settings, f"revloop.lag.probe-{uuid.uuid4().hex[:8]}")
        )
        found: set[tuple[str, int]] = set()
        try:
            consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
            deadline = time.monotonic() + 2.0
            left = set(starts)
            while left and time.monotonic() < deadline:
                for message in consumer.consume(500, timeout=0.2):
                    tp = (message.topic() or "", message.partition() or 0)
                    if message.error() is None and (message.offset() or 0) < stable[tp]:
                        found.add(tp)
                        left.discard(tp)
                for tp in list(left):
                    (position,) = consumer.position([TopicPartition(*tp)])
                    if position.offset >= stable[tp]:
                        left.discard(tp)  # read to the stable end: nothing readable was there
        finally:
            consumer.close()
        return found | left  # unresolved in time: counted as lag, never hidden


def as_json(report: Report) -> dict[str, Any]:
    return {
        "at": report.at,
        "groups": [vars(g) | {"status": g.status.value} for g in report.groups],
        "partitions": [vars(r) | {"status": r.status.value} for r in report.rows],
    }
