"""Groups made to lag on the real broker: records produced, and commits by consumers that
leave (the group keeps the offset, with no member)."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from revloop.kafka import consumer_config, producer_config
from revloop.settings import Settings


def produce(settings: Settings, topic: str, count: int) -> None:
    producer = Producer(producer_config(settings))
    for n in range(count):
        producer.produce(topic, value=f"m{n}".encode())
    assert producer.flush(10) == 0


def commit(settings: Settings, group: str, topic: str, offset: int) -> None:
    """A commit by a consumer that then leaves: the group keeps its offset, with no member."""
    consumer = Consumer(consumer_config(settings, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()
