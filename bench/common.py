"""What every benchmark needs: the commit it measured, child processes it stops cleanly, and
the bare consume-and-produce ceiling it compares against."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Consumer, Producer

from revloop.kafka import consumer_config, ensure_topics, producer_config
from revloop.settings import Settings
from schemas.topics import Topic


def git_commit() -> str:
    """The short commit the run measured (``unknown`` outside a checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextmanager
def child_process(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` with ``env`` over ours, its output appended to ``log_path``; stopped with
    SIGTERM (so it commits or aborts and leaves its group), killed after 30 s."""
    log = log_path.open("ab")
    process = subprocess.Popen(
        list(argv), env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def produce(producer: Producer, name: str, key: bytes | None, value: bytes | None) -> None:
    """Produce, waiting for room when the client's queue is full."""
    while True:
        try:
            producer.produce(name, key=key, value=value)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def ceiling(settings: Settings, sources: Sequence[Topic], records: int) -> float:
    """The bare ceiling: consume ``sources`` from the start and produce each record again to a
    topic of the run's (``<prefix>bench.ceiling``), in batches: the same client library, no
    decoding, no state, no transactions. Records per second, from the first batch."""
    sink = f"{settings.topic_prefix}bench.ceiling"
    ensure_topics(settings, [replace(sources[0], name=sink)])
    consumer = Consumer(consumer_config(settings, f"bench-ceiling-{uuid.uuid4().hex[:6]}"))
    producer = Producer(producer_config(settings, **{"message.max.bytes": 4 * 1024 * 1024}))
    consumer.subscribe([settings.topic_name(t) for t in sources])
    seen, started = 0, 0.0
    try:
        while seen < records:
            batch = consumer.consume(500, 1.0)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            for message in batch:
                if message.error():
                    continue
                produce(producer, sink, message.key(), message.value())
                seen += 1
        producer.flush(60)
        consumer.commit(asynchronous=False)
        return seen / (time.perf_counter() - started)
    finally:
        consumer.close()
