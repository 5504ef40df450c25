"""A store's history read from its platform API into the canonical topics (docs/connectors.md,
"Backfill"), and the job machinery reconciliation shares.

A job reads each resource page by page (:func:`~connectors.store_apis.base.every_page`), turns
every record into the events its webhook would have made (``platforms.dispatch.read_events``,
with version ids, so an overlap with webhooks duplicates nothing) and publishes each page's
events in one Kafka transaction together with a :class:`Checkpoint` on
``ops.connector-checkpoints.v1``. A job killed anywhere starts again from its last checkpoint:
the page in flight was either committed with its checkpoint or not at all. A fixed
transactional id per store and job fences a killed run's open transaction at start.

Order facts for the baseline go to the caller (``on_orders``) before a page commits; the caller
stores them idempotently, so a page read twice counts once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from connectors.hydrator import READERS, requesting_delivery
from connectors.store_apis.base import Resource, StoreApi, every_page
from platforms.dispatch import as_source, read_events
from platforms.events import Emit, NormalizeContext
from revloop.baseline import OrderFact
from revloop.ids import deterministic_id
from revloop.kafka import consumer_config, producer_config, read_ranges
from revloop.settings import Settings
from schemas.serde import AvroSerde
from schemas.topics import topic, topic_for_record

log = logging.getLogger(__name__)

CHECKPOINTS = "ops.connector-checkpoints.v1"
CHECKPOINT = "dev.revloop.events.ConnectorCheckpoint"
HYDRATION_REQUEST = "dev.revloop.events.HydrationRequest"
ORDER_EVENT = "dev.revloop.events.OrderEvent"

RESOURCES: Mapping[str, tuple[Resource, ...]] = {
    # Products first: an order's lines name them. WooCommerce's stock rides on its products;
    # Shopify's and BigCommerce's is per location, listed on its own.
    "shopify": (Resource.PRODUCTS, Resource.CUSTOMERS, Resource.ORDERS, Resource.INVENTORY_LEVELS),
    "woocommerce": (Resource.PRODUCTS, Resource.CUSTOMERS, Resource.ORDERS),
    "bigcommerce": (
        Resource.PRODUCTS,
        Resource.CUSTOMERS,
        Resource.ORDERS,
        Resource.INVENTORY_LEVELS,
    ),
}


@dataclass(frozen=True)
class Checkpoint:
    """How far a job has read one resource of one store."""

    resource: str
    since: datetime | None
    until: datetime
    cursor: str | None = None
    done: bool = False
    pages: int = 0
    records: int = 0
    events: int = 0


@dataclass(frozen=True)
class PageDone:
    """What a progress display hears after each committed page."""

    resource: str
    page: int
    records: int
    events: int
    done: bool


class JobStopped(Exception):
    """The job was asked to stop between pages; its checkpoints hold where it was."""


def order_facts(events: Iterable[Emit]) -> list[OrderFact]:
    """The baseline facts of a page's orders: each order's total, refunds and cancellation.
    An order's refunds arrive as their own events, so they are summed per order."""
    orders: dict[str, dict[str, Any]] = {}
    refunds: dict[str, int] = {}
    for event in events:
        if event.record != ORDER_EVENT:
            continue
        value = event.value
        if value["kind"] == "refunded":
            amount = value["refund"]["amount"]["amount_minor"] if value.get("refund") else 0
            refunds[value["order_id"]] = refunds.get(value["order_id"], 0) + int(amount)
        elif value.get("total") is not None:
            orders[value["order_id"]] = value
    facts = []
    for order_id, value in orders.items():
        facts.append(
            OrderFact(
                order_id=order_id,
                placed_at=value.get("placed_at") or value["envelope"]["occurred_at"],
                currency=value["currency"],
                total_minor=int(value["total"]["amount_minor"]),
                refunded_minor=refunds.get(order_id, 0),
                customer_key=value.get("customer_key"),
                cancelled=value["kind"] == "cancelled" or value.get("cancelled_at") is not None,
            )
        )
    return facts


@dataclass
class Job:
    """One job (``backfill`` or ``reconcile``) over one store's resources."""

    settings: Settings
    job: str
    store_id: str
    platform: str
    api: StoreApi
    serde: AvroSerde
    context: NormalizeContext
    page_size: int | None = None
    on_page: Callable[[PageDone], None] = lambda _: None
    on_orders: Callable[[list[OrderFact]], None] = lambda _: None
    keep: Callable[[list[Emit]], list[Emit]] = lambda events: events
    """Which of a page's events to publish (reconciliation keeps what the pipeline lacks)."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _producer: Producer | None = field(default=None, init=False)

    @property
    def transactional_id(self) -> str:
        return f"{self.settings.topic_prefix}revloop.{self.job}.{self.store_id}"

    def start(self) -> None:
        """Fence a killed run of this job: its open transaction is aborted, so the checkpoints
        read next are the committed ones."""
        self._producer = Producer(
            producer_config(
                self.settings,
                **{"transactional.id": self.transactional_id, "transaction.timeout.ms": 60_000},
            )
        )
        self._producer.init_transactions(self.settings.kafka_call_timeout_seconds)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.settings.kafka_call_timeout_seconds)

    def checkpoints(self) -> dict[str, Checkpoint]:
        """The job's newest committed checkpoint per resource."""
        name = self.settings.topic_name(topic(CHECKPOINTS))
        consumer = Consumer(consumer_config(self.settings, f"revloop.{self.job}.checkpoints"))
        found: dict[str, Checkpoint] = {}
        try:
            tp = TopicPartition(name, 0)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            for message in read_ranges(consumer, {(name, 0): (low, high)}, timeout=60):
                value = self.serde.decode(message.value() or b"").value
                if value["envelope"]["store_id"] == self.store_id and value["job"] == self.job:
                    found[value["resource"]] = Checkpoint(
                        resource=value["resource"],
                        since=value["since"],
                        until=value["until"],
                        cursor=value["cursor"],
                        done=value["done"],
                        pages=value["pages"],
                        records=value["records"],
                        events=value["events"],
                    )
        finally:
            consumer.close()
        return found

    def plan(
        self,
        resources: Sequence[Resource],
        since: datetime | None,
        resume: Mapping[str, Checkpoint] | None = None,
    ) -> list[Checkpoint]:
        """Where each resource's read starts: its checkpoint in ``resume``, or from the start
        (what changed at or after ``since``, until now)."""
        until = self.clock()
        return [(resume or {}).get(r.value) or Checkpoint(r.value, since, until) for r in resources]

    def run(self, plan: Sequence[Checkpoint], stop: threading.Event) -> dict[str, Checkpoint]:
        """Read each resource from its checkpoint to its end. Returns the final checkpoints."""
        return {state.resource: self._read(state, stop) for state in plan}

    def _read(self, state: Checkpoint, stop: threading.Event) -> Checkpoint:
        if state.done:
            return state
        resource = Resource(state.resource)
        pages = every_page(
            self.api,
            resource,
            since=state.since,
            cursor=state.cursor,
            page_size=self.page_size,
        )
        for page, _ in pages:
            if stop.is_set():
                raise JobStopped(f"stopped in {resource.value}; run again to resume")
            received_at = self.clock()
            events = self.keep(
                [e for record in page.records for e in self._events(resource, record, received_at)]
            )
            if resource is Resource.ORDERS:
                self.on_orders(order_facts(events))
            state = replace(
                state,
                cursor=page.next_cursor,
                done=page.next_cursor is None,
                pages=state.pages + 1,
                records=state.records + len(page.records),
                events=state.events + len(events),
            )
            self._commit(events, state)
            self.on_page(
                PageDone(resource.value, state.pages, len(page.records), len(events), state.done)
            )
        return state

    def _events(
        self, resource: Resource, record: Mapping[str, Any], received_at: datetime
    ) -> list[Emit]:
        events = read_events(
            self.platform, self.store_id, resource.value, record, self.context, received_at
        )
        whole: list[Emit] = []
        for event in events:
            if event.record != HYDRATION_REQUEST:
                whole.append(event)
                continue
            # A resource the read names but does not hold (WooCommerce's variations): the
            # hydrator's read completes it here, as it would for a webhook.
            reader = READERS[self.platform]
            hydrated = reader(self.api, event.value, requesting_delivery(event.value), self.context)
            whole.extend(as_source(e) for e in hydrated)
        return whole

    def _commit(self, events: Sequence[Emit], state: Checkpoint) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("start() the job first")
        timeout = self.settings.kafka_call_timeout_seconds
        producer.begin_transaction()
        try:
            for event in events:
                catalogued = topic_for_record(event.record)
                producer.produce(
                    self.settings.topic_name(catalogued),
                    key=catalogued.message_key(event.value),
                    value=self.serde.encode(event.record, event.value),
                )
                producer.poll(0)
            value = self._checkpoint_value(state)
            catalogued = topic(CHECKPOINTS)
            producer.produce(
                self.settings.topic_name(catalogued),
                key=catalogued.message_key(value),
                value=self.serde.encode(CHECKPOINT, value),
            )
            producer.commit_transaction(timeout)
        except (KafkaException, BufferError):
            producer.abort_transaction(timeout)
            raise

    def _checkpoint_value(self, state: Checkpoint) -> dict[str, Any]:
        now = self.clock()
        name = f"checkpoint/{self.job}/{self.store_id}/{state.resource}/{state.until}/{state.pages}"
        return {
            "envelope": {
                "event_id": deterministic_id(name),
                "store_id": self.store_id,
                "platform": self.platform,
                "occurred_at": now,
                "received_at": now,
                "source": "derived",
                "caused_by": [],
            },
            "job": self.job,
            "resource": state.resource,
            "since": state.since,
            "until": state.until,
            "cursor": state.cursor,
            "done": state.done,
            "pages": state.pages,
            "records": state.records,
            "events": state.events,
        }
