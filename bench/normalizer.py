"""`revloop bench normalizer`: the normalizer on its hand-written exactly-once loop against a
quixstreams prototype of the same job, and both against a bare consume-and-produce loop.

One run, on topics of its own (the catalogue under a fresh prefix, deleted after):

1. Signed Shopify deliveries (orders/create, products/create, inventory_levels/update, a few
   refunds with the order update that repeats them, a few untracked levels and malformed
   bodies), each verified by ``platforms.shopify.authenticate`` and stored as ingest stores it
   (``platforms.webhooks.raw_record``), some delivered twice, are written to the raw topic.
2. ``revloop normalize`` reads them as a group of its own; its rate runs from its first commit
   to the commit that covers the raw topic's end (the group's committed offsets).
3. The prototype (``revloop bench normalizer-prototype``, a quixstreams application configured
   as the worker is) reads the same raw topic as a group of its own and writes to the catalogue
   under another prefix. Same rate.
4. A bare confluent-kafka loop consumes the raw topic and produces every record again: the
   ceiling.

Each output is then read with read_committed and compared by event id with the other's and with
what ``normalize_delivery`` and the dedupe say the records make. Optionally the prototype is
killed (SIGKILL) mid-run, restarted, and its outputs compared again.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import httpx
import typer
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from quixstreams import Application, State, message_context
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import SerializationContext, Serializer
from rich.console import Console

from bench.common import ceiling, child_process, git_commit
from platforms import shopify
from platforms.dispatch import normalize_delivery
from platforms.events import EVENTS, Emit, NormalizeContext, RawDelivery
from platforms.webhooks import raw_record
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import (
    admin_client,
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    read_ranges,
    serde_for,
)
from revloop.settings import Settings, get_settings
from revloop.stores import LiveCurrencies, Store, StoreRegistry
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import TOPICS, Topic, prefixed, topic, topic_for_record
from streams.normalizer.dead_letters import RawReference
from streams.normalizer.dead_letters import dead_letter as normalizer_dead_letter

RAW = topic("raw.webhooks.v1")
RAW_RECORD = EVENTS + "RawWebhook"
OUTPUTS = tuple(t for t in TOPICS if "streams.normalizer" in t.producers)
"""The catalogue topics the normalizer writes."""
NORMALIZER_GROUP = "bench.normalizer"
PROTOTYPE_GROUP = "bench.normalizer-quix"
INSTANCE = "bench"


@dataclass(frozen=True)
class RuntimeRun:
    """One runtime over the raw records: its rate between its first commit and the commit
    that covered the raw topic's end, and how long it took to commit anything."""

    per_s: float
    first_commit_s: float
    measured_records: int
    measured_s: float


@dataclass(frozen=True)
class Outputs:
    """What a runtime wrote, read with read_committed."""

    records: int
    distinct: int
    duplicates: int
    by_topic: dict[str, int]
    missing: int
    unexpected: int


@dataclass(frozen=True)
class KillCheck:
    killed_at_committed: int
    outputs: Outputs


@dataclass(frozen=True)
class NormalizerReport:
    commit: str
    raw_records: int
    redeliveries: int
    expected_events: int
    expected_by_topic: dict[str, int]
    ceiling_per_s: float
    normalizer: RuntimeRun
    prototype: RuntimeRun
    normalizer_ratio: float
    prototype_ratio: float
    prototype_vs_normalizer: float
    normalizer_outputs: Outputs
    prototype_outputs: Outputs
    outputs_match: bool
    kill_check: KillCheck | None
    commit_interval_s: float
    batch_size: int


# -- the stores and their deliveries -------------------------------------------------------------


@dataclass(frozen=True)
class BenchStore:
    store_id: str
    domain: str
    secret: bytes = field(repr=False)
    currency: str


@dataclass(frozen=True)
class Webhook:
    """One HTTP delivery as Shopify sends it: a retry repeats body and headers byte for byte."""

    store: BenchStore
    body: bytes
    headers: Mapping[str, str]


def bench_stores(count: int) -> list[BenchStore]:
    currencies = ("USD", "EUR", "GBP", "CAD")
    return [
        BenchStore(
            f"bench-shop-{n}",
            f"bench-shop-{n}.myshopify.com",
            secrets.token_urlsafe(32).encode(),
            currencies[n % len(currencies)],
        )
        for n in range(count)
    ]


def write_registry(directory: Path, stores: Sequence[BenchStore]) -> dict[str, str]:
    """``stores.json`` for these stores (secrets encrypted under a fresh master key), and the
    environment the normalizer needs to read it."""
    master = new_master_key("bench")
    key_id, _, encoded = master.partition(":")
    box = SecretBox({key_id: base64.b64decode(encoded)}, key_id)
    registry = StoreRegistry(
        Store(
            store_id=s.store_id,
            platform="shopify",
            identity=s.domain,
            secrets=(Secret(s.secret),),
            currency=s.currency,
        )
        for s in stores
    )
    path = directory / "stores.json"
    registry.save(path, box)
    return {
        "REVLOOP_STORES_FILE": str(path),
        "REVLOOP_MASTER_KEYS": master,
        "REVLOOP_CUSTOMER_KEY_SALT": secrets.token_urlsafe(32),
    }


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _shop_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _money_set(amount: str, currency: str) -> dict[str, Any]:
    money = {"amount": amount, "currency_code": currency}
    return {"shop_money": money, "presentment_money": money}


class ShopifyTraffic:
    """A day of Shopify webhooks over a few stores: ids above 2**53 as real ones are, money as
    decimal strings, and payload shapes as Shopify sends them (demo/simulation/shopify.py)."""

    def __init__(self, stores: Sequence[BenchStore], seed: int, start: datetime) -> None:
        self.stores = stores
        self.rng = random.Random(seed)  # noqa: S311  # a benchmark's inputs, not secrets
        self.clock = start
        self.serial = 0
        self.recent: list[Webhook] = []

    def _id(self, base: int) -> int:
        self.serial += 1
        return base + self.serial

    def _variant(self) -> tuple[int, int, int, str]:
        """(product id, variant id, inventory item id, price) of one of 2,000 variants."""
        n = self.rng.randrange(2000)
        price = f"{10 + n % 90}.{n % 100:02d}"
        return 8_800_000_000_000 + n, 9_007_199_254_740_993 + n, 9_100_000_000_000_000 + n, price

    def deliveries(self, count: int, redeliveries: float) -> Iterator[Webhook]:
        """``count`` deliveries; about ``redeliveries`` of them send a recent one again."""
        made = 0
        while made < count:
            self.clock += timedelta(milliseconds=self.rng.randrange(1, 20))
            if self.recent and self.rng.random() < redeliveries:
                yield self.rng.choice(self.recent[-300:])
                made += 1
                continue
            for webhook in self._next():
                self.recent.append(webhook)
                yield webhook
                made += 1
            del self.recent[:-1000]

    def _next(self) -> list[Webhook]:
        store = self.rng.choice(self.stores)
        roll = self.rng.random()
        if roll < 0.35:
            return [self._send(store, "orders/create", self._order(store, refunds=[]))]
        if roll < 0.47:
            return [self._send(store, "products/create", self._product(store))]
        if roll < 0.49:
            order = self._order(store, refunds=[])
            refund = self._refund(order)
            order["refunds"] = [refund]
            order["financial_status"] = "partially_refunded"
            return [
                self._send(store, "refunds/create", refund),
                self._send(store, "orders/updated", order),
            ]
        if roll < 0.495:
            # Signed but not JSON: ingest stores it, the normalizer dead-letters it.
            return [self._send(store, "orders/create", b'{"id": 1, "line_items": [')]
        untracked = roll > 0.99
        return [self._send(store, "inventory_levels/update", self._level(untracked))]

    def _send(self, store: BenchStore, topic_name: str, document: Any) -> Webhook:
        body = document if isinstance(document, bytes) else _compact(document)
        headers = shopify.signed_headers(
            body,
            store.secret,
            shop_domain=store.domain,
            topic=topic_name,
            webhook_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            triggered_at=self.clock - timedelta(milliseconds=self.rng.randrange(50, 900)),
        )
        return Webhook(store, body, headers)

    def _level(self, untracked: bool) -> dict[str, Any]:
        _, _, item, _ = self._variant()
        location = 71_234_567_890
        return {
            "inventory_item_id": item,
            "location_id": location,
            "available": None if untracked else self.rng.choice((0, 1, 3, 7, 12, 40)),
            "updated_at": _shop_time(self.clock),
            "admin_graphql_api_id": (
                f"gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"
            ),
        }

    def _product(self, store: BenchStore) -> dict[str, Any]:
        product, variant, item, price = self._variant()
        created = _shop_time(self.clock)
        sizes = ("S", "M", "L")
        return {
            "admin_graphql_api_id": f"gid://shopify/Product/{product}",
            "body_html": "<p>Organic cotton, garment dyed.</p>",
            "created_at": created,
            "handle": f"tee-{product % 10_000}",
            "id": product,
            "product_type": "Apparel",
            "published_at": created,
            "template_suffix": None,
            "title": f"Garment-dyed tee {product % 10_000}",
            "updated_at": created,
            "vendor": "Northwind",
            "status": "active",
            "published_scope": "global",
            "tags": "cotton, summer, tee",
            "variants": [
                {
                    "admin_graphql_api_id": f"gid://shopify/ProductVariant/{variant + k}",
                    "barcode": None,
                    "compare_at_price": None,
                    "created_at": created,
                    "id": variant + k * 10_000,
                    "inventory_policy": "deny",
                    "position": k + 1,
                    "price": price,
                    "product_id": product,
                    "sku": f"TEE-{product % 10_000}-{size}",
                    "taxable": True,
                    "title": size,
                    "updated_at": created,
                    "option1": size,
                    "option2": None,
                    "option3": None,
                    "image_id": None,
                    "inventory_item_id": item + k * 10_000,
                    "inventory_quantity": self.rng.randrange(50),
                    "old_inventory_quantity": 0,
                }
                for k, size in enumerate(sizes)
            ],
            "options": [{"name": "Size", "id": product + 1, "position": 1, "values": sizes}],
            "images": [],
            "image": None,
            "media": [],
            "has_variants_that_requires_components": False,
            "category": None,
        }

    def _order(self, store: BenchStore, refunds: list[Any]) -> dict[str, Any]:
        order_id = self._id(5_980_000_000_000_000_000)
        customer_id = 7_600_000_000_000 + self.rng.randrange(5000)
        email = f"shopper{customer_id % 100_000}@example.com"
        currency = store.currency
        lines = []
        subtotal = 0
        for _ in range(self.rng.randrange(1, 4)):
            product, variant, _, price = self._variant()
            quantity = self.rng.randrange(1, 3)
            cents = int(price.replace(".", ""))
            subtotal += cents * quantity
            lines.append(
                {
                    "id": self._id(15_000_000_000_000),
                    "admin_graphql_api_id": "gid://shopify/LineItem/1",
                    "fulfillable_quantity": quantity,
                    "fulfillment_status": None,
                    "gift_card": False,
                    "grams": 200,
                    "name": f"Garment-dyed tee {product % 10_000} - M",
                    "price": price,
                    "price_set": _money_set(price, currency),
                    "product_exists": True,
                    "product_id": product,
                    "properties": [],
                    "quantity": quantity,
                    "requires_shipping": True,
                    "sku": f"TEE-{product % 10_000}-M",
                    "taxable": True,
                    "title": f"Garment-dyed tee {product % 10_000}",
                    "total_discount": "0.00",
                    "total_discount_set": _money_set("0.00", currency),
                    "variant_id": variant,
                    "variant_title": "M",
                    "vendor": "Northwind",
                    "tax_lines": [],
                    "discount_allocations": [],
                }
            )
        tax = subtotal * 8875 // 100_000
        total = subtotal + tax
        amount = f"{total // 100}.{total % 100:02d}"
        at = _shop_time(self.clock)
        address = {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "address1": "12 Larkspur Lane",
            "city": "Brooklyn",
            "province": "New York",
            "country": "United States",
            "zip": "11215",
            "country_code": "US",
            "province_code": "NY",
        }
        utm = self.rng.random() < 0.4
        return {
            "id": order_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
            "browser_ip": "203.0.113.47",
            "buyer_accepts_marketing": False,
            "cancelled_at": None,
            "confirmed": True,
            "contact_email": email,
            "created_at": at,
            "currency": currency,
            "customer_locale": "en-US",
            "email": email,
            "financial_status": "paid",
            "fulfillment_status": None,
            "landing_site": (
                "/products/tee?utm_source=meta&utm_medium=cpc&utm_campaign=summer&fbclid=abc"
                if utm
                else "/"
            ),
            "name": f"#{order_id % 100_000}",
            "note_attributes": [],
            "order_number": order_id % 100_000,
            "processed_at": at,
            "referring_site": "https://www.example.com/" if utm else None,
            "source_name": "web",
            "subtotal_price": f"{subtotal // 100}.{subtotal % 100:02d}",
            "tags": "",
            "taxes_included": False,
            "test": False,
            "total_discounts": "0.00",
            "total_price": amount,
            "total_price_set": _money_set(amount, currency),
            "total_shipping_price_set": _money_set("0.00", currency),
            "total_tax": f"{tax // 100}.{tax % 100:02d}",
            "updated_at": at,
            "billing_address": address,
            "shipping_address": address,
            "customer": {
                "id": customer_id,
                "email": email,
                "first_name": "Ada",
                "last_name": "Lovelace",
                "state": "disabled",
                "currency": currency,
                "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
                "default_address": address,
            },
            "line_items": lines,
            "refunds": refunds,
            "shipping_lines": [],
        }

    def _refund(self, order: dict[str, Any]) -> dict[str, Any]:
        refund_id = self._id(1_020_000_000_000_000_000)
        line = order["line_items"][0]
        currency = order["currency"]
        at = _shop_time(self.clock)
        return {
            "id": refund_id,
            "order_id": order["id"],
            "created_at": at,
            "processed_at": at,
            "note": "Arrived damaged",
            "restock": False,
            "refund_line_items": [
                {
                    "id": refund_id % 10**13,
                    "quantity": 1,
                    "line_item_id": line["id"],
                    "restock_type": "no_restock",
                    "subtotal_set": _money_set(line["price"], currency),
                    "total_tax_set": _money_set("0.00", currency),
                }
            ],
            "transactions": [
                {
                    "id": refund_id % 10**13 + 1,
                    "order_id": order["id"],
                    "kind": "refund",
                    "status": "success",
                    "amount": line["price"],
                    "currency": currency,
                }
            ],
        }


class RawRecord(NamedTuple):
    key: bytes
    value: bytes
    timestamp_ms: int
    record: dict[str, Any]


def raw_records(
    webhooks: Iterator[Webhook], stores: StoreRegistry, serde: AvroSerde, start: datetime
) -> list[RawRecord]:
    """What ingest publishes for each delivery: verified as ingest verifies it, stored as ingest
    stores it, received a few milliseconds apart (the Kafka timestamp is the receipt)."""
    records = []
    for n, webhook in enumerate(webhooks):
        received_at = start + timedelta(milliseconds=5 * n)
        delivery = shopify.authenticate(webhook.body, webhook.headers, stores, received_at)
        record = raw_record(delivery, webhook.body, "application/json", received_at)
        records.append(
            RawRecord(
                RAW.message_key(record),
                serde.encode(RAW_RECORD, record),
                int(received_at.timestamp() * 1000),
                record,
            )
        )
    return records


def publish_raw(settings: Settings, records: Sequence[RawRecord]) -> None:
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    name = settings.topic_name(RAW)
    for record in records:
        while True:
            try:
                producer.produce(
                    name, key=record.key, value=record.value, timestamp=record.timestamp_ms
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the raw records were not all acknowledged within 60 s")


# -- dedupe and dead letters, as the normalizer does them -----------------------------------------


class Seen(Protocol):
    """Event ids already emitted (streams/normalizer/dedupe.py ``SeenEvents``)."""

    def __contains__(self, event_id: object) -> bool: ...
    def add(self, event_id: str) -> None: ...


def first_sightings(raw: RawDelivery, events: Sequence[Emit], seen: Seen) -> list[Emit]:
    """The events of a delivery nobody emitted yet; none when the delivery itself was seen.
    Marks them all as seen (streams/normalizer/dedupe.py ``first_sightings``)."""
    if raw.event_id in seen:
        return []
    seen.add(raw.event_id)
    fresh = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            fresh.append(event)
    return fresh


def dead_letter(
    ref: RawReference, raw: RawDelivery | None, reason: str, message: str, stage: str
) -> Emit:
    """The normalizer's own dead letter, stamped now."""
    at = datetime.now(UTC)
    return normalizer_dead_letter(ref, raw=raw, reason=reason, message=message, stage=stage, at=at)


def derived_events(raw: RawDelivery, ref: RawReference, context: NormalizeContext) -> list[Emit]:
    """What one decoded delivery becomes before dedupe: its events, or its dead letter."""
    outcome = normalize_delivery(raw, context)
    if outcome.status == "dead_lettered":
        return [dead_letter(ref, raw, outcome.reason, outcome.message, "normalize")]
    return list(outcome.events)


def expected_events(records: Sequence[RawRecord], context: NormalizeContext) -> dict[str, str]:
    """Every event id the raw records should yield once, with its catalogue topic: a store's
    deliveries share a raw partition, so deduping per store is what the normalizer's
    per-partition dedupe does."""
    seen: dict[str, set[str]] = {}
    events: dict[str, str] = {}
    for record in records:
        raw = RawDelivery.from_record(record.record)
        ref = RawReference(RAW.name, -1, -1, record.key)
        fresh = first_sightings(raw, derived_events(raw, ref, context), _IdSet(seen, raw.store_id))
        events.update((e.event_id, topic_for_record(e.record).name) for e in fresh)
    return events


class _IdSet:
    def __init__(self, seen: dict[str, set[str]], store_id: str) -> None:
        self._ids = seen.setdefault(store_id, set())

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids.add(event_id)


# -- the quixstreams prototype -------------------------------------------------------------------


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    KafkaException,
    BufferError,
    httpx.TransportError,
)


class Out(NamedTuple):
    """One record to write: its catalogue topic, key and encoded value."""

    topic: str
    key: bytes
    value: bytes


class Encoded(Serializer):
    """The value of an :class:`Out`, encoded already (so a failing encode parks its record)."""

    def __call__(self, value: Out, ctx: SerializationContext) -> bytes:
        return value.value


class StateSeen:
    """Seen event ids in quixstreams state: the store's RocksDB partition, scoped to the message
    key (the store id), with a changelog. Entries expire ``window`` after the record's Kafka
    timestamp (its receipt), as the normalizer's window follows ``received_at``."""

    def __init__(self, state: State[str, int], window: timedelta) -> None:
        self._state, self._window = state, window

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and self._state.get(event_id) is not None

    def add(self, event_id: str) -> None:
        self._state.set(event_id, 1, ttl=self._window)


class PrototypeNormalizer:
    """The normalizer's per-record logic (streams/normalizer/processor.py ``_plan_safely``) as
    a stateful quixstreams function: raw bytes in, encoded catalogue records out."""

    def __init__(self, settings: Settings, output_prefix: str) -> None:
        self.settings = settings
        self.serde = serde_for(settings)
        self.context = NormalizeContext(
            customer_salt=settings.customer_salt,
            store_currency=LiveCurrencies(settings.stores_file, settings.stores_check_seconds),
        )
        self.window = timedelta(hours=settings.normalizer_dedupe_window_hours)
        self.output_prefix = output_prefix
        self.raw_topic = settings.topic_name(RAW)
        for catalogued in OUTPUTS:  # resolve schema ids now, as the normalizer does
            for record in catalogued.values:
                self.serde.writer(record)

    def plan(
        self, value: bytes, key: bytes | None, _ts: int, _headers: Any, state: State[str, int]
    ) -> Any:
        context = message_context()
        ref = RawReference(self.raw_topic, context.partition, context.offset, key)
        seen = StateSeen(state, self.window)
        try:
            return self._plan(ref, value, seen)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            return self._park(ref, value, seen, exc)

    def _plan(self, ref: RawReference, value: bytes, seen: Seen) -> list[Out]:
        raw = self._decode(value)
        if raw is None:
            letter = dead_letter(
                ref,
                None,
                "bad_raw_record",
                "raw record does not decode as RawWebhook",
                "deserialize",
            )
            return [self._encode(letter)]
        events = derived_events(raw, ref, self.context)
        encoded = {e.event_id: self._encode(e) for e in events}
        return [encoded[e.event_id] for e in first_sightings(raw, events, seen)]

    def _park(self, ref: RawReference, value: bytes, seen: Seen, exc: Exception) -> list[Out]:
        reason = "schema_mismatch" if isinstance(exc, SerdeError) else "unexpected_error"
        try:
            raw = self._decode(value)
        except Exception:
            raw = None
        letter = dead_letter(
            ref, raw, reason, f"{type(exc).__name__} while normalizing", "normalize"
        )
        if raw is None:
            return [self._encode(letter)]
        return [self._encode(e) for e in first_sightings(raw, [letter], seen)]

    def _decode(self, value: bytes) -> RawDelivery | None:
        try:
            return RawDelivery.from_record(self.serde.decode(value).value)
        except (SerdeError, KeyError, TypeError):
            return None

    def _encode(self, event: Emit) -> Out:
        catalogued = topic_for_record(event.record)
        return Out(
            catalogued.name,
            catalogued.message_key(event.value),
            self.serde.encode(event.record, event.value),
        )


def _topic_config(settings: Settings, catalogued: Topic) -> TopicConfig:
    return TopicConfig(
        num_partitions=catalogued.partitions,
        replication_factor=settings.topic_replication_factor,
        extra_config=dict(catalogued.config),
    )


def prototype_application(settings: Settings, output_prefix: str, state_dir: Path) -> Application:
    """A quixstreams application configured as the worker's (streams/runtime/quix.py
    ``worker_application``): exactly-once, the worker's commit interval and poll timeout, a
    stable instance id for static membership and the transactional id."""
    group = output_prefix + PROTOTYPE_GROUP
    app = Application(
        broker_address=settings.bootstrap_servers,
        consumer_group=group,
        processing_guarantee="exactly-once",
        commit_interval=settings.worker_commit_interval_seconds,
        consumer_poll_timeout=settings.worker_poll_timeout_seconds,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        consumer_extra_config={
            "group.instance.id": f"{group}.{INSTANCE}",
            "session.timeout.ms": settings.worker_session_timeout_ms,
            "fetch.wait.max.ms": settings.worker_fetch_wait_max_ms,
        },
        producer_extra_config={"transactional.id": f"{group}.{INSTANCE}"},
        loglevel="WARNING",
    )
    normalizer = PrototypeNormalizer(settings, output_prefix)
    raw = app.topic(
        settings.topic_name(RAW),
        key_deserializer="bytes",
        value_deserializer="bytes",
        config=_topic_config(settings, RAW),
    )
    outputs = {
        catalogued.name: app.topic(
            output_prefix + catalogued.name,
            key_serializer="bytes",
            value_serializer=Encoded(),
            config=_topic_config(settings, catalogued),
        )
        for catalogued in OUTPUTS
    }
    sdf = app.dataframe(raw)
    sdf = sdf.apply(normalizer.plan, stateful=True, expand=True, metadata=True)
    sdf.to_topic(lambda out, _key, _ts, _headers: outputs[out.topic], key=lambda out: out.key)
    return app


def prototype_command(
    output_prefix: str = typer.Option(..., help="Prefix of the catalogue topics to write."),
    state_dir: Path = typer.Option(..., help="RocksDB state directory."),  # noqa: B008
) -> None:
    """The quixstreams prototype of the normalizer (run by `revloop bench normalizer`)."""
    settings = get_settings()
    app = prototype_application(settings, output_prefix, state_dir)
    # Fence a killed predecessor's open transaction first, as the worker does
    # (streams/runtime/quix.py ``fence_previous_life``).
    transactional_id = app.config.producer_extra_config["transactional.id"]
    fencer = Producer(producer_config(settings, **{"transactional.id": transactional_id}))
    fencer.init_transactions(settings.kafka_call_timeout_seconds)
    fencer.flush(settings.kafka_call_timeout_seconds)
    app.run()


# -- running the runtimes and watching their commits ---------------------------------------------


def revloop_argv(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "revloop", *args]


def committed_total(reader: Consumer, partitions: Sequence[TopicPartition]) -> int:
    return sum(max(0, tp.offset) for tp in reader.committed(list(partitions), timeout=10))


def watch_commits(
    settings: Settings,
    group: str,
    total: int,
    process: subprocess.Popen[bytes],
    log_path: Path,
    stop_at: int | None = None,
    timeout: float = 600.0,
) -> tuple[RuntimeRun, int]:
    """Poll the committed offsets of ``group`` (its full name) on the raw topic every 20 ms
    until they cover ``total`` records (or ``stop_at``). The rate counts from the first commit
    seen."""
    # Reads offsets, never subscribes.
    reader = Consumer(consumer_config(settings, "") | {"group.id": group})
    name = settings.topic_name(RAW)
    partitions = [TopicPartition(name, p) for p in range(RAW.partitions)]
    began = time.perf_counter()
    first: tuple[float, int] | None = None
    target = total if stop_at is None else stop_at
    try:
        while True:
            done = committed_total(reader, partitions)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= target:
                break
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} ended ({process.returncode}); see {log_path}")
            if now - began > timeout:
                raise RuntimeError(f"{done} of {total} raw records committed after {timeout:.0f} s")
            time.sleep(0.02)
    finally:
        reader.close()
    assert first is not None
    measured_s = max(now - first[0], 1e-9)
    run = RuntimeRun(
        per_s=round((done - first[1]) / measured_s),
        first_commit_s=round(first[0] - began, 2),
        measured_records=done - first[1],
        measured_s=round(measured_s, 2),
    )
    return run, done


@contextmanager
def profiled(
    process: subprocess.Popen[bytes], profile_dir: Path | None, name: str
) -> Iterator[None]:
    """py-spy sampling ``process`` meanwhile, when asked (a flame graph per runtime)."""
    if profile_dir is None:
        yield
        return
    profile_dir.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(process.pid),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(profile_dir / f"{name}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def read_outputs(
    settings: Settings, output_prefix: str, serde: AvroSerde, expected: Mapping[str, str]
) -> Outputs:
    """Every record on the catalogue topics under ``output_prefix`` the normalizer writes,
    read_committed, by event id."""
    reader = Consumer(consumer_config(settings, f"bench-outputs-{uuid.uuid4().hex[:6]}"))
    ids: Counter[str] = Counter()
    by_topic: Counter[str] = Counter()
    try:
        for catalogued in OUTPUTS:
            name = output_prefix + catalogued.name
            ranges = {(name, p): (0, end) for p, end in high_watermarks(reader, name).items()}
            for message in read_ranges(reader, ranges, timeout=120):
                ids[serde.decode(message.value() or b"").value["envelope"]["event_id"]] += 1
                by_topic[catalogued.name] += 1
    finally:
        reader.close()
    distinct = set(ids)
    return Outputs(
        records=sum(ids.values()),
        distinct=len(distinct),
        duplicates=sum(n - 1 for n in ids.values()),
        by_topic=dict(sorted(by_topic.items())),
        missing=len(expected.keys() - distinct),
        unexpected=len(distinct - expected.keys()),
    )


# -- the run -------------------------------------------------------------------------------------


def run_bench(
    settings: Settings,
    raw_count: int,
    seed: int,
    redelivery_rate: float,
    kill_check: bool,
    profile_dir: Path | None,
    progress: Callable[[str], None],
) -> NormalizerReport:
    tag = f"bench-normalizer-{uuid.uuid4().hex[:6]}."
    settings = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{tag}"})
    quix_prefix = f"{settings.topic_prefix}quix."
    kill_prefix = f"{settings.topic_prefix}kill."
    serde = serde_for(settings)
    ensure_topics(settings, prefixed(settings.topic_prefix))
    ensure_topics(settings, prefixed(quix_prefix, OUTPUTS))
    log_dir = settings.state_dir / "bench-normalizer"
    log_dir.mkdir(parents=True, exist_ok=True)
    progress(f"logs: {log_dir}")
    try:
        with tempfile.TemporaryDirectory(prefix="revloop-bench-") as tmp:
            directory = Path(tmp)
            stores = bench_stores(24)
            env = write_registry(directory, stores)
            registry = StoreRegistry.load(directory / "stores.json", _box(env))
            start = datetime.now(UTC) - timedelta(hours=1)
            traffic = ShopifyTraffic(stores, seed, start)
            progress(f"signing and encoding {raw_count:,} raw records")
            records = raw_records(
                traffic.deliveries(raw_count, redelivery_rate), registry, serde, start
            )
            redeliveries = raw_count - len({r.record["envelope"]["event_id"] for r in records})
            context = NormalizeContext(
                customer_salt=env["REVLOOP_CUSTOMER_KEY_SALT"].encode(),
                store_currency={s.store_id: s.currency for s in stores},
            )
            expected = expected_events(records, context)
            publish_raw(settings, records)
            total = raw_end(settings)
            if total != raw_count:
                raise RuntimeError(f"the raw topic holds {total} records, not {raw_count}")
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "REVLOOP_TOPIC_PREFIX": settings.topic_prefix,
            }

            progress("the normalizer (`revloop normalize`) over them")
            log = log_dir / "normalizer.log"
            log.write_bytes(b"")
            argv = revloop_argv(
                "normalize", "--group-id", NORMALIZER_GROUP, "--instance-id", INSTANCE
            )
            env_n = env | {"REVLOOP_STATE_DIR": str(directory / "normalizer")}
            with (
                child_process(argv, env_n, log) as process,
                profiled(process, profile_dir, "normalizer"),
            ):
                group = settings.topic_prefix + NORMALIZER_GROUP
                normalizer, _ = watch_commits(settings, group, total, process, log)

            progress("the quixstreams prototype over the same raw records")
            log = log_dir / "prototype.log"
            log.write_bytes(b"")
            argv = prototype_argv(quix_prefix, directory / "quix-state")
            env_q = env | {"REVLOOP_STATE_DIR": str(directory / "quix")}
            with (
                child_process(argv, env_q, log) as process,
                profiled(process, profile_dir, "prototype"),
            ):
                group = quix_prefix + PROTOTYPE_GROUP
                prototype, _ = watch_commits(settings, group, total, process, log)

            progress("the ceiling: a bare consume-and-produce loop over the raw topic")
            ceiling_rate = ceiling(settings, [RAW], total)

            progress("reading both outputs (read_committed)")
            normalizer_outputs = read_outputs(settings, settings.topic_prefix, serde, expected)
            prototype_outputs = read_outputs(settings, quix_prefix, serde, expected)

            killed = None
            if kill_check:
                progress("the prototype killed (SIGKILL) halfway, restarted, read again")
                ensure_topics(settings, prefixed(kill_prefix, OUTPUTS))
                log = log_dir / "prototype-kill.log"
                log.write_bytes(b"")
                argv = prototype_argv(kill_prefix, directory / "kill-state")
                with child_process(argv, env_q, log) as process:
                    group = kill_prefix + PROTOTYPE_GROUP
                    _, at = watch_commits(settings, group, total, process, log, stop_at=total // 2)
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                with child_process(argv, env_q, log) as process:
                    watch_commits(settings, group, total, process, log)
                killed = KillCheck(at, read_outputs(settings, kill_prefix, serde, expected))
    finally:
        admin = admin_client(settings)
        delete_topics(settings, [n for n in admin.list_topics(timeout=10).topics if tag in n])
        groups = admin.list_consumer_groups(request_timeout=10).result().valid
        if ours := [g.group_id for g in groups if tag in g.group_id]:
            for future in admin.delete_consumer_groups(ours, request_timeout=10).values():
                future.exception()  # a group that lingers is harmless
    return NormalizerReport(
        commit=git_commit(),
        raw_records=total,
        redeliveries=redeliveries,
        expected_events=len(expected),
        expected_by_topic=dict(sorted(Counter(expected.values()).items())),
        ceiling_per_s=round(ceiling_rate),
        normalizer=normalizer,
        prototype=prototype,
        normalizer_ratio=round(normalizer.per_s / ceiling_rate, 3),
        prototype_ratio=round(prototype.per_s / ceiling_rate, 3),
        prototype_vs_normalizer=round(prototype.per_s / normalizer.per_s, 3),
        normalizer_outputs=normalizer_outputs,
        prototype_outputs=prototype_outputs,
        outputs_match=_clean(normalizer_outputs) and _clean(prototype_outputs),
        kill_check=killed,
        commit_interval_s=settings.worker_commit_interval_seconds,
        batch_size=settings.normalizer_batch_size,
    )


def prototype_argv(output_prefix: str, state_dir: Path) -> list[str]:
    return revloop_argv(
        "bench",
        "normalizer-prototype",
        "--output-prefix",
        output_prefix,
        "--state-dir",
        str(state_dir),
    )


def _clean(outputs: Outputs) -> bool:
    """Each expected event exactly once, nothing else."""
    return outputs.duplicates == 0 and outputs.missing == 0 and outputs.unexpected == 0


def _box(env: Mapping[str, str]) -> SecretBox:
    key_id, _, encoded = env["REVLOOP_MASTER_KEYS"].partition(":")
    return SecretBox({key_id: base64.b64decode(encoded)}, key_id)


def raw_end(settings: Settings) -> int:
    reader = Consumer(consumer_config(settings, f"bench-marks-{uuid.uuid4().hex[:6]}"))
    try:
        return sum(high_watermarks(reader, settings.topic_name(RAW)).values())
    finally:
        reader.close()


def normalizer_command(
    records: int = typer.Option(30_000, help="Raw records (deliveries) to normalize.", min=1000),
    seed: int = typer.Option(7, help="Seed of the generated deliveries."),
    redeliveries: float = typer.Option(
        0.03, help="Share of deliveries that send a recent one again.", min=0, max=0.5
    ),
    kill_check: bool = typer.Option(
        True, help="Also kill the prototype halfway, restart it and compare its outputs."
    ),
    profile_dir: Path | None = typer.Option(  # noqa: B008
        None, help="Sample each runtime with py-spy meanwhile (raw stacks) into this directory."
    ),
    json_path: Path | None = typer.Option(  # noqa: B008
        None, "--json", help="Also write the figures as JSON to this file."
    ),
) -> None:
    """The normalizer's records/s on its own exactly-once loop against a quixstreams prototype
    of the same job and a bare consume-and-produce ceiling, with their outputs compared."""
    console = Console(soft_wrap=True)
    report = run_bench(
        get_settings(),
        records,
        seed,
        redeliveries,
        kill_check,
        profile_dir,
        lambda m: console.print(f"  {m}"),
    )
    console.print()
    console.print(
        f"[bold]revloop bench normalizer[/] at {report.commit}: {report.raw_records:,} raw "
        f"records ({report.redeliveries:,} redeliveries), {report.expected_events:,} events "
        "expected"
    )
    console.print(f"  ceiling (bare consume-and-produce): {report.ceiling_per_s:,.0f} records/s")
    for name, run, ratio in (
        (
            f"normalizer (own loop, batches of {report.batch_size})",
            report.normalizer,
            report.normalizer_ratio,
        ),
        (
            f"prototype (quixstreams, commit every {report.commit_interval_s} s)",
            report.prototype,
            report.prototype_ratio,
        ),
    ):
        console.print(
            f"  {name}: {run.per_s:,.0f} records/s, ratio {ratio:.3f} of the ceiling "
            f"(first commit after {run.first_commit_s} s)"
        )
    console.print(f"  prototype / normalizer: {report.prototype_vs_normalizer:.3f}")
    for name, outputs in (
        ("normalizer", report.normalizer_outputs),
        ("prototype", report.prototype_outputs),
    ):
        console.print(f"  {name} wrote: {_describe(outputs)}")
    console.print(f"  outputs match: {'yes' if report.outputs_match else '[red]no[/]'}")
    if report.kill_check is not None:
        console.print(
            f"  prototype killed at {report.kill_check.killed_at_committed:,} committed, "
            f"restarted: {_describe(report.kill_check.outputs)}"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")


def _describe(outputs: Outputs) -> str:
    topics = ", ".join(f"{name} {n:,}" for name, n in outputs.by_topic.items())
    return (
        f"{outputs.records:,} records, {outputs.distinct:,} distinct event ids, "
        f"{outputs.duplicates} duplicates, {outputs.missing} missing, "
        f"{outputs.unexpected} unexpected ({topics})"
    )
