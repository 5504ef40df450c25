"""Publishing with a durable ack: a request is answered 200 only after the broker has the record
with acks=all from an idempotent producer. confluent-kafka reports deliveries from ``poll()``;
the event loop polls every millisecond while records are in flight and settles their futures
directly, with no thread hop per record. The same tick expires records whose ack is overdue, so
a publish costs no timer of its own."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from revloop.kafka import producer_config
from revloop.settings import Settings

log = logging.getLogger(__name__)

# A raw record is the body plus headers and the envelope. Kafka's default limit (1 MB message,
# ~1 MiB topic batch) is too tight for a 1 MiB body, so both sides allow 2 MiB.
MAX_RECORD_BYTES = 2 * 1024 * 1024


class PublishUnavailable(Exception):
    """Kafka did not take the record in time; the caller answers 503 so the platform retries."""


class DurablePublisher:
    def __init__(self, settings: Settings, ack_timeout: float) -> None:
        self._ack_timeout = ack_timeout
        self._config = producer_config(
            settings,
            # Give up on a record about when the request does, so a broker outage doesn't pile up
            # an unbounded queue of records whose requests were already answered 503.
            **{
                "message.timeout.ms": int(ack_timeout * 1000),
                "queue.buffering.max.messages": 200_000,
                "message.max.bytes": MAX_RECORD_BYTES,
            },
        )
        self._producer: Producer | None = Producer(self._config)
        # (deadline, future) in publish order; deadlines ascend because the timeout is fixed.
        self._pending: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._polling = False
        self._ready_until = 0.0

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self._producer is None:
            raise PublishUnavailable("the publisher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        try:
            on_delivery = partial(_settle, future)
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except BufferError as exc:
            raise PublishUnavailable("producer queue is full") from exc
        except KafkaException as exc:
            raise PublishUnavailable(f"producer refused the record: {exc}") from exc
        self._pending.append((loop.time() + self._ack_timeout, future))
        if not self._polling:
            self._polling = True
            loop.call_soon(self._poll, loop)
        await future

    def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._producer is None:
            self._polling = False
            return
        try:
            self._producer.poll(0)
        except Exception:  # a callback raised; keep serving the other deliveries
            log.exception("delivery callback failed")
        self._fail_overdue(loop.time(), f"no ack within {self._ack_timeout}s")
        if self._pending:
            loop.call_later(0.001, self._poll, loop)
        else:
            self._polling = False

    def _fail_overdue(self, now: float, reason: str) -> None:
        """Fails the records whose deadline is past ``now``, and forgets settled ones. A late
        delivery report then finds its future done and settles nothing."""
        pending = self._pending
        while pending:
            deadline, future = pending[0]
            if not future.done():
                if deadline > now:
                    return
                future.set_exception(PublishUnavailable(reason))
            pending.popleft()

    async def ready(self, timeout: float = 1.0) -> bool:
        """Whether the broker answers a metadata request (cached for a second). The request
        blocks, so it runs off the event loop and never stalls webhook traffic."""
        if self._producer is None:
            return False
        if time.monotonic() < self._ready_until:
            return True
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=timeout)
        except Exception:
            return False
        self._ready_until = time.monotonic() + 1.0
        return True

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is in flight; returns how many records were left undelivered. The client
        is then released, so it stops reconnecting to a broker that may be gone."""
        if self._producer is None:
            return 0
        remaining: int = self._producer.flush(timeout)
        self._producer = None
        # Whatever flush could not deliver will never be acked: answer those requests now (503)
        # instead of leaving them to a poll tick that no longer runs.
        self._fail_overdue(math.inf, "the publisher closed before the ack")
        return remaining


def _settle(future: asyncio.Future[Any], err: KafkaError | None, _msg: Message | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(PublishUnavailable(f"delivery failed: {err.str()}"))
