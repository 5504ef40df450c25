"""A downstream consumer of revloop's circuit-breaker actions: copy it and replace `handle`.

It needs confluent-kafka with its schema-registry extras (`pip install
"confluent-kafka[avro,schemaregistry]"`) and nothing of revloop: the schema of every message
comes from the registry, by the id the message carries. What it does, as any consumer of
revloop's topics should:

* reads with ``isolation.level=read_committed``: revloop's stream processors write in Kafka
  transactions, and an aborted one must never reach your ad platform;
* commits an offset only after `handle` returned, so a crash re-delivers instead of skipping
  (at least once: make `handle` idempotent, e.g. keyed by ``envelope.event_id``);
* decodes keys as UTF-8 (``<store_id>/<product_id>``): all actions for one product share a
  partition, so they arrive in order.

Run it against the local stack:

    python examples/circuit_breaker_consumer.py --group-id my-team.ads
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from confluent_kafka import Consumer, Message
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "actions.circuit-breaker.v1"


def handle(key: str, action: dict[str, Any]) -> None:
    """Your side effect: pause or resume the product's ads. Here: one JSON line on stdout."""
    print(
        json.dumps(
            {
                "key": key,
                "event_id": action["envelope"]["event_id"],
                "store_id": action["envelope"]["store_id"],
                "action": action["action"],
                "product_id": action["product_id"],
                "variant_id": action["variant_id"],
                "available": action["available"],
                "campaigns": [c["campaign_id"] for c in action["campaigns"]],
            }
        ),
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    registry = SchemaRegistryClient({"url": args.schema_registry_url})
    # No reader schema: each message decodes with the schema it was written with.
    deserialize = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": args.group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.subscribe([args.topic])
    handled = 0
    idle_since = time.monotonic()
    try:
        while not stopping and (args.max_messages is None or handled < args.max_messages):
            msg = consumer.poll(1.0)
            if msg is None:
                if args.idle_exit and time.monotonic() - idle_since > args.idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            error = msg.error()
            if error is not None:
                # librdkafka retries transient errors itself; only a fatal one ends the consumer.
                print(f"consumer error: {error}", file=sys.stderr)
                if error.fatal():
                    return 1
                continue
            handle_one(msg, deserialize)
            # Only now: a crash before this line means the message comes again.
            consumer.commit(message=msg, asynchronous=False)
            handled += 1
    finally:
        consumer.close()
    return 0


def handle_one(msg: Message, deserialize: AvroDeserializer) -> None:
    value = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
    key = msg.key()
    handle(key.decode() if key is not None else "", value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument(
        "--schema-registry-url",
        default="http://127.0.0.1:8081/apis/ccompat/v7",
        help="A Confluent-compatible registry (revloop's local stack runs Apicurio Registry).",
    )
    parser.add_argument("--group-id", required=True, help="Your team's consumer group.")
    parser.add_argument("--topic", default=TOPIC)
    parser.add_argument("--max-messages", type=int, help="Stop after this many (default: never).")
    parser.add_argument(
        "--idle-exit", type=float, help="Stop after this many seconds without a message."
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
