"""`revloop bench sinks`: `revloop sink postgres` rows/s against a bare COPY of the same rows
into the same tables, and its ledger entries/s (docs/sinks.md, docs/ledger.md).

Everything runs on topics of the run's own (the catalogue under a fresh prefix) and scratch
databases of its own (migrated to the newest revision); both are deleted after.

- **Rows**: N canonical and derived events of a realistic mix are published first, then the
  sink is started; it is timed from its first committed batch until its offsets in Postgres
  reach the topics' ends. Both instants are the sink's own: ``kafka_offsets.updated_at`` of
  the newest batch committed, read with the row counts in one statement, so the rows of the
  first batch (committed before the clock starts) are not counted.
- **Ceiling**: the same events decoded as the sink decodes them, mapped with its own
  ``rows_for`` and collapsed to one row per key as its writer does, all before the clock; then
  only ``COPY <table> (columns) FROM STDIN`` per table and the commit, in one transaction, into
  a fresh database.
- **Ledger**: M LedgerEntry events (as the worker books them from attribution scores) for a
  handful of stores, timed the same way into ``ledger_entries``.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import typer
from confluent_kafka import Consumer, Producer
from psycopg import sql
from psycopg.types.json import Jsonb
from rich.console import Console
from sqlalchemy.dialects import postgresql

from bench.common import child_process, git_commit, produce
from revloop.kafka import (
    admin_client,
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    serde_for,
)
from revloop.ledger import entry_value, score_entries
from revloop.settings import Settings, get_settings
from schemas.serde import AvroSerde
from schemas.topics import prefixed, topic_for_record
from sinks.postgres.migrate import upgrade
from sinks.postgres.rows import Row, rows_for
from sinks.postgres.service import SINK_TOPICS
from sinks.postgres.tables import Base
from sinks.postgres.writer import TABLES, collapse

E = "dev.revloop.events."
T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
TARGET_ROWS = 30_000
TARGET_RATIO = 0.3
TARGET_LEDGER = 10_000

MIX: dict[str, int] = {
    "OrderEvent": 20,
    "InventoryLevel": 25,
    "ProductUpsert": 5,
    "CustomerUpsert": 8,
    "Touchpoint": 14,
    "CampaignProductLink": 2,
    "CircuitBreakerAction": 4,
    "AttributionScore": 10,
    "RawWebhook": 12,
}
"""Events of each record per 100 (orders: 80% placed, 20% later changes of a placed order)."""

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class SinksReport:
    commit: str
    batch_size: int
    events: int
    events_by_record: dict[str, int]
    mapped_rows: int
    """Rows ``rows_for`` gives for the events, before collapsing to one per key."""
    rows: int
    """Rows in the sink's tables once it caught up (one per key: changes of a key merge)."""
    rows_by_table: dict[str, int]
    sink_first_batch_rows: int
    sink_seconds: float
    sink_rows_per_s: float
    sink_events_per_s: float
    copy_rows: int
    copy_seconds: float
    copy_rows_per_s: float
    ratio: float
    ledger_entries: int
    ledger_appended: int
    ledger_first_batch_entries: int
    ledger_seconds: float
    ledger_entries_per_s: float
    sink_log_problems: list[str] = field(default_factory=list)


# -- events ------------------------------------------------------------------------------------


def _money(minor: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount_minor": minor, "currency": currency}


def _envelope(
    event_id: str,
    at: datetime,
    store: str,
    source: str = "webhook",
    caused_by: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "store_id": store,
        "platform": "shopify",
        "occurred_at": at,
        "received_at": at + timedelta(milliseconds=120),
        "source": source,
        "caused_by": caused_by or [],
    }


def _key(store: str, n: int) -> str:
    """A customer key, shaped like the salted hashes the normalizer writes."""
    return hashlib.sha256(f"{store}/{n}".encode()).hexdigest()[:32]


@dataclass
class _Store:
    products: list[tuple[str, list[str]]] = field(default_factory=list)
    """(product id, variant ids)."""
    customers: list[int] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    scores: list[tuple[str, str, int]] = field(default_factory=list)
    """(score event id, order id, incremental minor) of gains not yet reversed."""


class Shops:
    """A handful of stores' catalogues, customers and orders, growing as events are made."""

    def __init__(self, stores: int, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311  # a benchmark's inputs, not secrets
        self.stores = [f"bench-{chr(ord('a') + n)}" for n in range(stores)]
        self.state = {s: _Store() for s in self.stores}
        self.n = 0

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def events(self, count: int) -> Iterator[Event]:
        """``count`` events of :data:`MIX`, a second apart in event time. Each store starts with
        a few products and customers, so every kind has something to refer to."""
        records, weights = list(MIX), list(MIX.values())
        for store in self.stores:
            for _ in range(5):
                yield self.product(store, T0)
                yield self.customer(store, T0)
        made = 10 * len(self.stores)
        for n in range(count - made):
            at = T0 + timedelta(seconds=n)
            store = self.rng.choice(self.stores)
            record = self.rng.choices(records, weights)[0]
            yield getattr(self, _MAKERS[record])(store, at)

    # one maker per record ------------------------------------------------------------------

    def product(self, store: str, at: datetime) -> Event:
        shop, rng = self.state[store], self.rng
        if shop.products and rng.random() < 0.2:  # a new version of a known product
            product_id, variants = rng.choice(shop.products)
        else:
            product_id = self._id("p")
            variants = [f"{product_id}-v{k}" for k in range(rng.randint(1, 4))]
            shop.products.append((product_id, variants))
        title = f"Merino Beanie {product_id}"
        return "ProductUpsert", {
            "envelope": _envelope(self._id("ev-p"), at, store),
            "product_id": product_id,
            "title": title,
            "handle": title.lower().replace(" ", "-"),
            "status": "active",
            "vendor": "Northwind",
            "product_type": "Hats",
            "tags": ["wool", "winter"],
            "variants": [
                {
                    "variant_id": v,
                    "sku": f"SKU-{v}",
                    "title": f"Size {k}",
                    "price": _money(rng.randrange(1500, 9000)),
                    "inventory_item_id": f"item-{v}",
                    "inventory_quantity": None,
                }
                for k, v in enumerate(variants)
            ],
        }

    def level(self, store: str, at: datetime) -> Event:
        rng = self.rng
        product_id, variants = rng.choice(self.state[store].products)
        variant = rng.choice(variants)
        relative = rng.random() < 0.1  # BigCommerce-style adjustments
        return "InventoryLevel", {
            "envelope": _envelope(self._id("ev-l"), at, store),
            "inventory_item_id": f"item-{variant}",
            "location_id": rng.choice(("loc-1", "loc-2")),
            "method": "relative" if relative else "absolute",
            "quantity": rng.randint(-3, -1) if relative else rng.randrange(0, 40),
            "product_id": product_id,
            "variant_id": variant,
            "sku": f"SKU-{variant}",
        }

    def customer(self, store: str, at: datetime) -> Event:
        shop, rng = self.state[store], self.rng
        if shop.customers and rng.random() < 0.15:
            n = rng.choice(shop.customers)
        else:
            n = self.n + 1
            self.n += 1
            shop.customers.append(n)
        return "CustomerUpsert", {
            "envelope": _envelope(self._id("ev-c"), at, store),
            "customer_id": f"c{n}",
            "customer_key": _key(store, n),
            "email": f"customer{n}@example.com",
            "accepts_marketing": rng.random() < 0.6,
            "orders_count": rng.randint(0, 5),
            "total_spent": _money(rng.randrange(0, 50_000)),
            "created_at": T0,
            "tags": [],
        }

    def order(self, store: str, at: datetime) -> Event:
        shop, rng = self.state[store], self.rng
        if shop.orders and rng.random() < 0.2:  # paid or fulfilled later
            placed = rng.choice(shop.orders)
            value = {
                **placed,
                "envelope": _envelope(self._id("ev-o"), at, store),
                "kind": "updated",
                "fulfillment_status": "fulfilled",
            }
            return "OrderEvent", value
        order_id = self._id("o")
        n = rng.choice(shop.customers)
        lines: list[dict[str, Any]] = []
        for k in range(rng.randint(1, 3)):
            product_id, variants = rng.choice(shop.products)
            variant, quantity, price = (
                rng.choice(variants),
                rng.randint(1, 3),
                rng.randrange(1500, 9000),
            )
            lines.append(
                {
                    "line_item_id": f"{order_id}-l{k}",
                    "product_id": product_id,
                    "variant_id": variant,
                    "sku": f"SKU-{variant}",
                    "title": f"Merino Beanie {product_id}",
                    "quantity": quantity,
                    "unit_price": _money(price),
                    "total": _money(price * quantity),
                }
            )
        subtotal = sum(line["total"]["amount_minor"] for line in lines)
        value = {
            "envelope": _envelope(self._id("ev-o"), at, store),
            "kind": "created",
            "order_id": order_id,
            "order_number": f"#{order_id}",
            "customer_id": f"c{n}",
            "customer_key": _key(store, n),
            "currency": "USD",
            "total": _money(subtotal + 500),
            "subtotal": _money(subtotal),
            "total_tax": _money(300),
            "total_discounts": _money(0),
            "total_shipping": _money(200),
            "financial_status": "paid",
            "fulfillment_status": None,
            "placed_at": None,
            "cancelled_at": None,
            "line_items": lines,
            "refund": None,
            "attribution_hints": {},
        }
        shop.orders.append(value)
        return "OrderEvent", value

    def touchpoint(self, store: str, at: datetime) -> Event:
        shop, rng = self.state[store], self.rng
        product_id, _ = rng.choice(shop.products)
        return "Touchpoint", {
            "envelope": _envelope(self._id("ev-t"), at, store, source="api"),
            "touchpoint_id": self._id("t"),
            "kind": "ad_click",
            "channel": rng.choice(("meta", "google", "tiktok")),
            "customer_key": _key(store, rng.choice(shop.customers)),
            "campaign_id": f"cmp{rng.randrange(40)}",
            "ad_id": f"ad{rng.randrange(400)}",
            "content_id": None,
            "product_ids": [product_id],
            "click_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "landing_url": f"https://{store}.example/products/{product_id}?utm_source=meta",
            "cost": _money(rng.randrange(20, 400)),
        }

    def link(self, store: str, at: datetime) -> Event:
        rng = self.rng
        product_id, _ = rng.choice(self.state[store].products)
        return "CampaignProductLink", {
            "envelope": _envelope(self._id("ev-k"), at, store, source="api"),
            "campaign_id": f"cmp{rng.randrange(40)}",
            "product_id": product_id,
            "channel": "meta",
            "active": rng.random() < 0.8,
        }

    def action(self, store: str, at: datetime) -> Event:
        rng = self.rng
        product_id, _ = rng.choice(self.state[store].products)
        kind = rng.choice(("pause", "resume"))
        available = 0 if kind == "pause" else rng.randint(1, 20)
        campaigns = [f"cmp{rng.randrange(40)}" for _ in range(rng.randint(1, 3))]
        return "CircuitBreakerAction", {
            "envelope": _envelope(
                self._id("ev-a"), at, store, source="derived", caused_by=[self._id("ev-l")]
            ),
            "action": kind,
            "product_id": product_id,
            "variant_id": None,
            "campaign_ids": campaigns,
            "campaigns": [{"campaign_id": c, "channel": "meta"} for c in campaigns],
            "available": available,
            "previous_available": 3,
            "reason": f"{kind}: {available} available",
        }

    def score(self, store: str, at: datetime) -> Event:
        shop, rng = self.state[store], self.rng
        if shop.scores and rng.random() < 0.1:  # a refund's share reversed
            reversed_id, order_id, gained = shop.scores.pop(rng.randrange(len(shop.scores)))
            placed = next(o for o in reversed(shop.orders) if o["order_id"] == order_id)
            return "AttributionScore", self._score(store, at, placed, -gained, reversed_id)
        placed = rng.choice(shop.orders) if shop.orders else self.order(store, at)[1]
        gained = rng.randrange(500, placed["total"]["amount_minor"] + 1)
        value = self._score(store, at, placed, gained, None)
        shop.scores.append((value["envelope"]["event_id"], placed["order_id"], gained))
        return "AttributionScore", value

    def _score(
        self, store: str, at: datetime, placed: dict[str, Any], amount: int, reverses: str | None
    ) -> dict[str, Any]:
        rng = self.rng
        split = [amount // 2, amount - amount // 2] if rng.random() < 0.3 else [amount]
        return {
            "envelope": _envelope(
                self._id("ev-s"),
                at,
                store,
                source="derived",
                caused_by=[placed["envelope"]["event_id"]],
            ),
            "order_id": placed["order_id"],
            "customer_key": placed["customer_key"],
            "confidence_bp": rng.randrange(4000, 10_001),
            "is_incremental": True,
            "model": "last_click",
            "order_total": placed["total"],
            "incremental_revenue": _money(amount),
            "credits": [
                {
                    "touchpoint_id": f"t-credit-{k}",
                    "campaign_id": f"cmp{rng.randrange(40)}",
                    "channel": "meta",
                    "weight_bp": 10_000 // len(split),
                    "amount": _money(share),
                }
                for k, share in enumerate(split)
            ],
            "signals": ["touchpoint_in_window", "acquired_via_campaign"],
            "holdout": False,
            "reverses": reverses,
        }

    def webhook(self, store: str, at: datetime) -> Event:
        rng = self.rng
        event_id = self._id("ev-w")
        return "RawWebhook", {
            "envelope": _envelope(event_id, at, store),
            "topic": rng.choice(("orders/create", "orders/updated", "inventory_levels/update")),
            "delivery_id": f"d-{event_id}",
            "content_type": "application/json",
            "headers": {"x-shopify-topic": "orders/create", "x-shopify-shop-domain": store},
            "body": rng.randbytes(rng.randrange(600, 3000)),
        }


_MAKERS = {
    "OrderEvent": "order",
    "InventoryLevel": "level",
    "ProductUpsert": "product",
    "CustomerUpsert": "customer",
    "Touchpoint": "touchpoint",
    "CampaignProductLink": "link",
    "CircuitBreakerAction": "action",
    "AttributionScore": "score",
    "RawWebhook": "webhook",
}


def ledger_events(count: int, stores: int, seed: int) -> Iterator[Event]:
    """``count`` LedgerEntry values, as the worker books them (``score_entries``) from
    attribution scores over ``stores`` stores and a few months: mostly gains, a tenth reversals
    of an earlier gain of the same store."""
    rng = random.Random(seed)  # noqa: S311
    names = [f"bench-{chr(ord('a') + n)}" for n in range(stores)]
    gains: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for n in range(count):
        store = rng.choice(names)
        at = T0 + timedelta(minutes=3 * n)
        reverses, amount = None, rng.randrange(500, 20_000)
        if gains[store] and rng.random() < 0.1:
            reverses, gained = gains[store].pop(rng.randrange(len(gains[store])))
            amount = -rng.randint(1, gained)
        event_id = f"ev-ls{n}"
        if reverses is None:
            gains[store].append((event_id, amount))
        score = {
            "envelope": _envelope(event_id, at, store, source="derived"),
            "order_id": f"o{n}",
            "incremental_revenue": _money(amount),
            "holdout": False,
            "reverses": reverses,
        }
        for entry in score_entries(score):
            yield "LedgerEntry", entry_value(entry)


# -- the stack ---------------------------------------------------------------------------------


@contextmanager
def scratch_database(settings: Settings, label: str) -> Iterator[str]:
    """A new database on the stack's server, migrated to the newest revision; dropped after."""
    name = f"bench_sinks_{label}_{uuid.uuid4().hex[:8]}"
    base, _, _ = settings.dsn.rpartition("/")
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = f"{base}/{name}"
        upgrade(dsn)
        yield dsn
    finally:
        with psycopg.connect(settings.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def publish(settings: Settings, serde: AvroSerde, events: Sequence[Event]) -> list[bytes]:
    """Produce ``events`` to their catalogue topics; their encoded values, in order."""
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    encoded = []
    for record, value in events:
        catalogued = topic_for_record(E + record)
        data = serde.encode(E + record, value)
        encoded.append(data)
        produce(producer, settings.topic_name(catalogued), catalogued.message_key(value), data)
    if producer.flush(120):
        raise RuntimeError("Kafka did not acknowledge every event in 120 s")
    return encoded


def topic_ends(settings: Settings) -> dict[tuple[str, int], int]:
    reader = Consumer(consumer_config(settings, f"bench-ends-{uuid.uuid4().hex[:6]}"))
    try:
        return {
            (settings.topic_prefix + name, p): end
            for name in SINK_TOPICS
            for p, end in high_watermarks(reader, settings.topic_prefix + name).items()
            if end
        }
    finally:
        reader.close()


def _count_sql(tables: Sequence[str]) -> sql.Composed:
    """The newest batch's time, the records read by then (the topics start at offset 0) and
    the rows per table: one statement, one snapshot."""
    counts = [sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(name)) for name in tables]
    return sql.SQL(
        "SELECT (SELECT max(updated_at) FROM kafka_offsets WHERE group_id = %(group)s),"
        " (SELECT sum(next_offset) FROM kafka_offsets WHERE group_id = %(group)s), {}"
    ).format(sql.SQL(", ").join(counts))


@dataclass(frozen=True)
class Timed:
    first_rows: int
    """Rows committed as of the first batch seen (before the clock started)."""
    first_records: int
    """Records those batches read."""
    rows_by_table: dict[str, int]
    seconds: float
    """From the first batch's offsets to the last's (``kafka_offsets.updated_at``)."""
    wall_seconds: float
    """The same, by this process's clock between the two observations (a cross-check)."""


def time_sink(
    dsn: str,
    group: str,
    ends: dict[tuple[str, int], int],
    tables: Sequence[str],
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float = 900.0,
) -> Timed:
    """From the sink's first committed batch until its offsets reach ``ends``."""
    statement = _count_sql(tables)
    deadline = time.monotonic() + timeout

    def alive() -> None:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the sink exited with {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sink did not catch up in {timeout:.0f} s (see {log_path})")

    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            alive()
            found = conn.execute(statement, {"group": group}).fetchone()
            if found is not None and found[0] is not None:
                first_wall = time.perf_counter()
                first_at, first_records, first_rows = found[0], int(found[1]), sum(found[2:])
                break
            time.sleep(0.005)
        while True:
            alive()
            stored = {
                (t, p): o
                for t, p, o in conn.execute(
                    "SELECT topic, partition, next_offset FROM kafka_offsets WHERE group_id = %s",
                    (group,),
                )
            }
            if all(stored.get(key, 0) >= end for key, end in ends.items()):
                last_wall = time.perf_counter()
                break
            time.sleep(0.02)
        found = conn.execute(statement, {"group": group}).fetchone()
        assert found is not None
    return Timed(
        first_rows=first_rows,
        first_records=first_records,
        rows_by_table=dict(zip(tables, found[2:], strict=True)),
        seconds=(found[0] - first_at).total_seconds(),
        wall_seconds=last_wall - first_wall,
    )


@contextmanager
def sink_process(
    settings: Settings, dsn: str, group: str, state_dir: Path, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DATABASE_URL": dsn,
        "REVLOOP_TOPIC_PREFIX": settings.topic_prefix,
        "REVLOOP_STATE_DIR": str(state_dir),
        "REVLOOP_SINK_GROUP_ID": group,
        "REVLOOP_SINK_BATCH_SIZE": str(settings.sink_batch_size),
    }
    if settings.schema_registry_url:
        env["SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    argv = [sys.executable, "-P", "-m", "revloop", "sink", "postgres"]
    with child_process(argv, env, log_path) as process:
        yield process


@contextmanager
def py_spy(pid: int, output: Path | None) -> Iterator[None]:
    """``py-spy record`` of ``pid`` into ``output`` (raw collapsed stacks, idle frames kept:
    time waiting on Postgres or Kafka shows) while the block runs; nothing without ``output``."""
    if output is None:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    argv = [str(spy), "record", "--idle", "--rate", "200", "--format", "raw"]
    recorder = subprocess.Popen(
        [*argv, "-o", str(output), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


def log_problems(log_path: Path) -> list[str]:
    """The sink log's warnings and errors (dead letters, failed batches)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if " WARNING " in line or " ERROR " in line][:20]


# -- the ceiling -------------------------------------------------------------------------------

_JSON = {
    (table.name, column.name)
    for table in Base.metadata.tables.values()
    for column in table.columns
    if isinstance(column.type, postgresql.JSONB)
}


def table_rows(serde: AvroSerde, encoded: Sequence[bytes]) -> dict[str, list[Row]]:
    """The rows the sink ends with for these events: decoded as it decodes them, mapped with
    its ``rows_for``, collapsed to one per key with its writer's rule. Per table, in the
    writer's order."""
    published = datetime.now(UTC)
    grouped: dict[str, list[tuple[Row, Any]]] = defaultdict(list)
    for data in encoded:
        decoded = serde.decode(data)
        for row in rows_for(decoded.record_name.rsplit(".", 1)[-1], decoded.value, published):
            grouped[row.table].append((row, None))
    return {
        name: [row for row, _ in collapse(TABLES[name], grouped[name])]
        for name in TABLES
        if name in grouped
    }


def copy_ceiling(dsn: str, rows: dict[str, list[Row]]) -> float:
    """Seconds to COPY ``rows`` into their tables and commit, one transaction. The values are
    prepared before the clock starts."""
    prepared: list[tuple[sql.Composed, list[list[Any]]]] = []
    for name, table_rows_ in rows.items():
        by_columns: dict[tuple[str, ...], list[list[Any]]] = defaultdict(list)
        for row in table_rows_:
            columns = tuple(row.values)
            by_columns[columns].append(
                [Jsonb(row.values[c]) if (name, c) in _JSON else row.values[c] for c in columns]
            )
        for columns, values in by_columns.items():
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            prepared.append((statement, values))
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        began = time.perf_counter()
        with conn.cursor() as cur:
            for statement, values in prepared:
                with cur.copy(statement) as copy:
                    for value in values:
                        copy.write_row(value)
        conn.commit()
        return time.perf_counter() - began


# -- the run -----------------------------------------------------------------------------------


def run_bench(
    settings: Settings,
    events: int,
    ledger_entries: int,
    stores: int,
    seed: int,
    profile: Path | None,
    progress: Callable[[str], None],
) -> SinksReport:
    tag = f"bench-sinks-{uuid.uuid4().hex[:6]}."
    base = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{tag}"})
    rows_settings = base.model_copy(update={"topic_prefix": f"{base.topic_prefix}rows."})
    ledger_settings = base.model_copy(update={"topic_prefix": f"{base.topic_prefix}ledger."})
    serde = serde_for(settings)
    log_path = settings.state_dir / "bench-sinks.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    progress(f"the sink's log: {log_path}")
    group = f"bench-sink-{uuid.uuid4().hex[:6]}"
    try:
        with ExitStack() as stack:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="revloop-")))
            for s in (rows_settings, ledger_settings):
                ensure_topics(s, prefixed(s.topic_prefix))

            # 1. the sink's rows/s
            made = list(Shops(stores, seed).events(events))
            by_record = Counter(record for record, _ in made)
            progress(f"publishing {len(made):,} events ({_mix(by_record)})")
            encoded = publish(rows_settings, serde, made)
            ends = topic_ends(rows_settings)
            dsn = stack.enter_context(scratch_database(settings, "rows"))
            progress(
                f"`revloop sink postgres` (batches of {settings.sink_batch_size:,}) from the "
                "topics' start into a fresh database"
            )
            with sink_process(rows_settings, dsn, group, state_dir, log_path) as process:
                progress(f"  sink pid {process.pid}")
                if profile is not None:
                    time.sleep(1.0)  # its interpreter up before py-spy attaches
                with py_spy(process.pid, profile):
                    timed = time_sink(
                        dsn,
                        rows_settings.topic_prefix + group,
                        ends,
                        list(TABLES),
                        process,
                        log_path,
                    )
            rows = sum(timed.rows_by_table.values())
            progress(
                f"  caught up: {rows:,} rows, {timed.seconds:.2f} s from the first batch "
                f"({timed.wall_seconds:.2f} s by the bench's clock)"
            )

            # 2. the COPY ceiling
            progress(
                "the ceiling: the same rows (rows_for, collapsed) by COPY into a fresh database"
            )
            built = table_rows(serde, encoded)
            copy_rows = sum(map(len, built.values()))
            mapped = sum(
                len(rows_for(r, v, T0)) for r, v in made
            )  # before collapsing to one per key
            ceiling_dsn = stack.enter_context(scratch_database(settings, "copy"))
            copy_seconds = copy_ceiling(ceiling_dsn, built)

            # 3. the ledger's entries/s
            entries = list(ledger_events(ledger_entries, stores, seed + 1))
            progress(f"publishing {len(entries):,} ledger entries over {stores} stores")
            publish(ledger_settings, serde, entries)
            ledger_ends = topic_ends(ledger_settings)
            ledger_dsn = stack.enter_context(scratch_database(settings, "ledger"))
            progress("`revloop sink postgres` appending them into ledger_entries")
            ledger_profile = profile.with_suffix(".ledger.txt") if profile else None
            with sink_process(ledger_settings, ledger_dsn, group, state_dir, log_path) as process:
                if ledger_profile is not None:
                    time.sleep(1.0)
                with py_spy(process.pid, ledger_profile):
                    ledger = time_sink(
                        ledger_dsn,
                        ledger_settings.topic_prefix + group,
                        ledger_ends,
                        ["ledger_entries"],
                        process,
                        log_path,
                    )
    finally:
        names = admin_client(settings).list_topics(timeout=10).topics
        delete_topics(settings, [n for n in names if tag in n])
    appended = ledger.rows_by_table["ledger_entries"]
    sink_rate = (rows - timed.first_rows) / timed.seconds
    copy_rate = copy_rows / copy_seconds
    return SinksReport(
        commit=git_commit(),
        batch_size=settings.sink_batch_size,
        events=len(made),
        events_by_record=dict(by_record.most_common()),
        mapped_rows=mapped,
        rows=rows,
        rows_by_table={k: v for k, v in timed.rows_by_table.items() if v},
        sink_first_batch_rows=timed.first_rows,
        sink_seconds=round(timed.seconds, 3),
        sink_rows_per_s=round(sink_rate),
        sink_events_per_s=round((len(made) - timed.first_records) / timed.seconds),
        copy_rows=copy_rows,
        copy_seconds=round(copy_seconds, 3),
        copy_rows_per_s=round(copy_rate),
        ratio=round(sink_rate / copy_rate, 3),
        ledger_entries=len(entries),
        ledger_appended=appended,
        ledger_first_batch_entries=ledger.first_rows,
        ledger_seconds=round(ledger.seconds, 3),
        ledger_entries_per_s=round((appended - ledger.first_rows) / ledger.seconds),
        sink_log_problems=log_problems(log_path),
    )


def _mix(counts: Counter[str]) -> str:
    return ", ".join(f"{record} {n:,}" for record, n in counts.most_common())


def sinks_command(
    events: int = typer.Option(100_000, help="Canonical and derived events.", min=1000),
    ledger_entries: int = typer.Option(50_000, help="Ledger entries.", min=100),
    stores: int = typer.Option(5, help="Stores the events are spread over.", min=1, max=26),
    seed: int = typer.Option(7, help="Seed of the generated events."),
    profile: Path | None = typer.Option(  # noqa: B008
        None,
        help="py-spy record the sink into this file (raw collapsed stacks, idle frames kept; "
        "the ledger run's beside it as *.ledger.txt). Sampling slows the sink: not for figures.",
    ),
    json_path: Path | None = typer.Option(  # noqa: B008
        None, "--json", help="Also write the figures as JSON to this file."
    ),
) -> None:
    """`revloop sink postgres` rows/s against a bare COPY of the same rows into the same
    tables, and its ledger entries/s, on topics and databases of the run's own."""
    console = Console()
    report = run_bench(
        get_settings(),
        events,
        ledger_entries,
        stores,
        seed,
        profile,
        lambda m: console.print(f"  {m}"),
    )
    rows_ok = report.sink_rows_per_s >= TARGET_ROWS and report.ratio >= TARGET_RATIO
    ledger_ok = report.ledger_entries_per_s >= TARGET_LEDGER
    counted = report.rows - report.sink_first_batch_rows
    console.print()
    console.print(
        f"[bold]revloop bench sinks[/] at {report.commit}: {report.events:,} events, "
        f"batches of {report.batch_size:,}"
    )
    console.print(
        f"  rows: {report.mapped_rows:,} mapped by rows_for, {report.rows:,} in the tables (one "
        f"per key: {', '.join(f'{t} {n:,}' for t, n in report.rows_by_table.items())})"
    )
    console.print(
        f"  sink (COPY to staging, INSERT .. ON CONFLICT, follow-ups, offsets; one transaction "
        f"per batch): {report.sink_rows_per_s:,.0f} rows/s ({report.sink_events_per_s:,.0f} "
        f"events/s): {counted:,} rows in {report.sink_seconds:.2f} s from its first committed "
        f"batch to caught up (the first batch's {report.sink_first_batch_rows:,} not counted)"
    )
    console.print(
        f"  ceiling (COPY of the same {report.copy_rows:,} rows into the same tables, one "
        f"transaction): {report.copy_rows_per_s:,.0f} rows/s ({report.copy_seconds:.2f} s)"
    )
    console.print(
        f"  ratio {report.ratio:.3f} of the COPY rate "
        f"({'meets' if rows_ok else 'misses'} the targets {TARGET_ROWS:,} rows/s and "
        f"{TARGET_RATIO})"
    )
    if report.copy_rows != report.rows:
        console.print(
            f"  [yellow]note[/]: the sink's tables hold {report.rows:,} rows, the COPY "
            f"{report.copy_rows:,}"
        )
    console.print(
        f"  ledger: {report.ledger_entries_per_s:,.0f} entries/s: "
        f"{report.ledger_appended - report.ledger_first_batch_entries:,} of "
        f"{report.ledger_appended:,} entries appended to {report.ledger_entries:,} published, in "
        f"{report.ledger_seconds:.2f} s from the first committed batch "
        f"({'meets' if ledger_ok else 'misses'} the target {TARGET_LEDGER:,}/s)"
    )
    console.print(
        "    from the ledger topic: the worker books a score's entries in the score's own Kafka "
        "transaction, so 'from the scores topic' starts here"
    )
    if report.sink_log_problems:
        console.print(f"  [yellow]the sink logged {len(report.sink_log_problems)} problem(s)[/]:")
        for line in report.sink_log_problems:
            console.print(f"    {line}")
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
