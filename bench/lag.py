"""`revloop bench lag`: how long evaluating consumer lag takes for 500 partitions (target: under
1 s; docs/ops.md, "Consumer lag"; docs/benchmarks.md).

- **Evaluation** (``revloop.consumer_lag``, pure): per partition, the lag in seconds from a
  table of 60 log-end samples and Burrow's status over a window of 10 observations.
- **Sample** (``revloop.lag_sampler``, against the broker): a topic of the run's own with
  ``--partitions`` partitions, 10 records in each, one group that committed on every
  partition; one ``LagSampler.sample()`` is the batched admin calls (groups, members, committed
  offsets, log-end and last stable offsets) plus the evaluation. Timed twice: with 5 records of
  lag per partition, and with 1 (within ``MARKER_PROBE``, so the sampler also reads each
  partition with a read-committed probe to tell a commit marker from a record).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

import typer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from rich.console import Console

from bench.common import git_commit
from revloop.consumer_lag import Observation, lag_seconds, partition_status
from revloop.kafka import admin_client, consumer_config, delete_topics, producer_config
from revloop.lag_sampler import LagSampler
from revloop.settings import Settings, get_settings

TARGET_SECONDS = 1.0


def evaluate(partitions: int, window: int = 10, table: int = 60) -> float:
    """Seconds to evaluate ``partitions`` partitions once (best of 5)."""
    now = 10_000.0
    ends = [(now - 60.0 * (table - n), 100 * n) for n in range(table)]
    seen = [
        [
            Observation(now - 5.0 * (window - k), 50 * k + p % 7, 100 * k, 100 * k)
            for k in range(window)
        ]
        for p in range(partitions)
    ]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for window_of in seen:
            lag_seconds(ends, window_of[-1].committed, now)
            partition_status(window_of, has_members=True)
        best = min(best, time.perf_counter() - started)
    return best


def _timed(sample: Callable[[], object], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        sample()
        spent.append(time.perf_counter() - started)
    return spent


def sampled(settings: Settings, partitions: int, times: int) -> tuple[list[float], list[float]]:
    """Seconds of each ``LagSampler.sample()`` with 5 records of lag per partition, then 1."""
    prefix = f"bench-lag-{uuid.uuid4().hex[:6]}."
    local = settings.model_copy(update={"topic_prefix": prefix})
    name = f"{prefix}lag"
    admin = admin_client(settings)
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(60)
    group = Consumer(consumer_config(local, "g"))
    try:
        _wait_for_leaders(group, name, partitions)
        producer = Producer(producer_config(settings, **{"linger.ms": 20}))
        for p in range(partitions):
            for _ in range(10):
                producer.produce(name, value=b"x", partition=p)
        if producer.flush(60):
            raise RuntimeError("Kafka did not acknowledge every record in 60 s")
        sampler = LagSampler(local, groups_prefix=prefix)

        def commit(offset: int) -> None:
            tps = [TopicPartition(name, p, offset) for p in range(partitions)]
            group.commit(offsets=tps, asynchronous=False)

        commit(5)
        sampler.sample()  # warms the admin client's connections
        far = _timed(sampler.sample, times)
        commit(9)
        near = _timed(sampler.sample, times)
        report = sampler.sample()
        if len(report.rows) != partitions or any(r.lag != 1 for r in report.rows):
            raise RuntimeError(f"the sampler saw {len(report.rows)} partitions, not {partitions}")
        return far, near
    finally:
        group.close()
        delete_topics(settings, [name])
        admin.delete_consumer_groups([prefix + "g"])[prefix + "g"].result(30)


def _wait_for_leaders(consumer: Consumer, name: str, partitions: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        metadata = consumer.list_topics(name, timeout=10).topics[name].partitions
        if len(metadata) == partitions and all(m.leader >= 0 for m in metadata.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name}: not every partition has a leader after 60 s")


def lag_command(
    partitions: int = typer.Option(500, help="Partitions evaluated.", min=1),
    samples: int = typer.Option(5, help="Timed samples against the broker.", min=1),
) -> None:
    """Lag evaluation and one full sample for N partitions, against 1 s."""
    console = Console()
    pure = evaluate(partitions)
    far, near = sampled(get_settings(), partitions, samples)
    console.print(f"commit {git_commit()}, {partitions} partitions, {samples} samples each")
    console.print(f"  evaluation (lag seconds + status): {pure * 1000:.1f} ms")
    for label, spent in (("lag 5, no probe", far), ("lag 1, marker probe", near)):
        console.print(
            f"  sample, {label}: median {statistics.median(spent) * 1000:.0f} ms, "
            f"max {max(spent) * 1000:.0f} ms"
        )
    worst = max(max(far), max(near))
    verdict = "[green]met[/]" if worst < TARGET_SECONDS else "[red]missed[/]"
    console.print(f"  target < {TARGET_SECONDS:.0f} s per sample: {verdict}")
