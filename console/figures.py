"""The console's arithmetic, pure: throughput from log-end offsets, dead-letter counts, ingest
outcomes from a /metrics page, counter deltas, and the bounded lag history the chart draws."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from revloop.lag_sampler import Report, as_json
from sinks.postgres.ops_views import OpenBreaker

OUTCOMES_METRIC = "revloop_ingest_deliveries_total"
"""Ingest's counter of deliveries by platform, topic, outcome and reason (ingest/metrics.py)."""

Offsets = Mapping[tuple[str, int], int]
"""(topic, partition) → offset."""


def topic_totals(ends: Offsets) -> dict[str, int]:
    """Each topic's log-end offsets summed over its partitions: every offset ever written."""
    totals: dict[str, int] = {}
    for (topic, _), end in ends.items():
        totals[topic] = totals.get(topic, 0) + end
    return totals


def rates(
    before: Mapping[str, float] | None, after: Mapping[str, float], seconds: float
) -> dict[str, float | None]:
    """Per key, how fast ``after`` grew since ``before``, per second. None where there is nothing
    to compare with: the first sample, or a key new since (a topic shown from now on has a
    history the console did not see)."""
    if before is None or seconds <= 0:
        return dict.fromkeys(after)
    return {
        key: None if key not in before else delta(before[key], value) / seconds
        for key, value in after.items()
    }


def delta(before: float, after: float) -> float:
    """How much a counter grew. One that went back was reset (a restarted process, a recreated
    topic) and counts from zero: all of it is new."""
    return after - before if after >= before else after


def records(low: Offsets, high: Offsets) -> int:
    """Records kept in partitions, as high minus low watermark (a transactional writer's commit
    markers take offsets too, so this is an upper bound)."""
    return sum(max(0, end - low.get(tp, 0)) for tp, end in high.items())


def outcome_totals(exposition: str) -> dict[str, float]:
    """Ingest's deliveries per outcome, summed over platform, topic and reason, from a
    Prometheus text exposition."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == OUTCOMES_METRIC:
                outcome = sample.labels.get("outcome", "")
                totals[outcome] = totals.get(outcome, 0.0) + sample.value
    return totals


def breaker_json(breaker: OpenBreaker, now: datetime) -> dict[str, Any]:
    since = breaker.since if breaker.since.tzinfo else breaker.since.replace(tzinfo=UTC)
    return {
        "store_id": breaker.store_id,
        "product_id": breaker.product_id,
        "variant_id": breaker.variant_id,
        "campaign_ids": list(breaker.campaign_ids),
        "since": since.isoformat(),
        "open_seconds": max(0.0, (now - since).total_seconds()),
        "reason": breaker.reason,
        "available": breaker.available,
    }


def report_json(report: Report) -> list[dict[str, Any]]:
    """Each group's summary with its partitions, as the lag panel shows them: the document
    `revloop lag --json` prints, with each group's rows nested under it."""
    document = as_json(report)
    return [
        group | {"partitions": [r for r in document["partitions"] if r["group"] == group["group"]]}
        for group in document["groups"]
    ]


@dataclass
class History:
    """The last ``size`` samples of each group's lag (messages and seconds), for the chart. A
    group missing from a sample has no point there (None)."""

    size: int
    _at: deque[float] = field(init=False)
    _lag: dict[str, deque[tuple[int, float] | None]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._at = deque(maxlen=self.size)

    def add(self, at: float, groups: Iterable[tuple[str, int, float]]) -> None:
        """One sample: (group, lag, lag seconds) for each group sampled."""
        self._at.append(at)
        seen = {group: (lag, seconds) for group, lag, seconds in groups}
        for group in seen.keys() - self._lag.keys():
            self._lag[group] = deque([None] * (len(self._at) - 1), maxlen=self.size)
        for group, points in list(self._lag.items()):
            points.append(seen.get(group))
            if not any(points):
                del self._lag[group]  # gone for the whole history: drop it from the chart

    def as_json(self) -> dict[str, Any]:
        return {
            "at": list(self._at),
            "groups": {
                group: {
                    "lag": [None if p is None else p[0] for p in points],
                    "seconds": [None if p is None else p[1] for p in points],
                }
                for group, points in sorted(self._lag.items())
            },
        }
