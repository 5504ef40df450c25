"""A seeded day of trading at three demo stores, as the HTTP requests their platforms and ad tools
would send to ingest (`revloop demo`, docs/demo.md).

Pure: no clock, no network, no files. Everything follows from ``seed`` and ``now``. The story
(which products sell out, which orders are refunded) depends on the seed alone, and ``now``
places it in time and makes its ids new, so that repeated runs are not dropped as
duplicates of earlier ones.

One store per platform, each with a few products and a stock level per variant:

1. products are created, with their stock; customers register;
2. each store's ad tool links campaigns to products (``POST /events/campaigns``) and reports ad
   clicks, ad views and content views of the customers (``POST /events/touchpoints``);
3. orders draw the stock down, each change followed by the platform's inventory webhook. Every
   store sells at least one variant out, and restocks every sold-out variant later on;
4. a few orders are refunded, and two deliveries are sent twice, as a platform's retry would.

Payloads follow the platforms' documented samples (docs/platform-payloads.md, and the fixtures
under tests/fixtures): Shopify ids as JSON integers (some above 2^53), money as decimal strings,
WooCommerce ``*_gmt`` times without an offset, BigCommerce's thin envelope. Signatures come from
each platform module's ``signed_headers``. :func:`expected_outcome` says what the pipeline should
make of the requests, using the same pure functions as ingest and the normalizer.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

from ingest import bigcommerce, feeds, shopify, woocommerce
from ingest.canonical import NormalizeContext, RawDelivery
from ingest.normalize import SeenEvents, first_sightings, normalize_delivery
from ingest.stores import Store, StoreRegistry, api_key_digest
from ingest.webhooks import Rejected
from revloop.crypto import Secret
from schemas.topics import topic_for_record

__all__ = [
    "MAX_ORDERS",
    "MIN_ORDERS",
    "STORE_SPECS",
    "DemoRequest",
    "DemoStore",
    "Expectation",
    "Simulation",
    "StockMoment",
    "StoreSpec",
    "demo_registry",
    "expected_outcome",
    "run_simulation",
    "simulate",
]

MIN_ORDERS: Final = 3
"""One order per store at least: every store has to sell something out."""
MAX_ORDERS: Final = 2000
"""Ids are ``run * 10_000 + n``; this keeps ``n`` below 10 000 for every kind of resource."""
_RUN_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)
_SHOP_TZ: Final = ZoneInfo("America/New_York")
_WOO_TZ: Final = ZoneInfo("Europe/Berlin")
_CENT: Final = Decimal("0.01")
_NY_TAX: Final = Decimal("0.08875")
_DE_VAT: Final = Decimal("0.19")
_WOO_VERSION: Final = "9.7.1"
_WOO_USER_AGENT: Final = f"WooCommerce/{_WOO_VERSION} Hookshot (WordPress/6.8.1)"
_SHOPIFY_LOCATION: Final = 71234567890
_BC_STORE_NUMBER: Final = "1009876543"
_FEED_BATCH: Final = 10
"""Touchpoints a store's ad tool collects before it posts them."""


@dataclass(frozen=True)
class StoreSpec:
    store_id: str
    platform: str
    identity: str
    """As the platform names the store: shop domain, home URL (with its slash), producer."""
    currency: str
    name: str


STORE_SPECS: Final = (
    StoreSpec(
        "demo-shopify", "shopify", "northwind-demo.myshopify.com", "USD", "Northwind Outfitters"
    ),
    StoreSpec(
        "demo-woo", "woocommerce", "https://alpenglow-demo.example.org/", "EUR", "Alpenglow Coffee"
    ),
    StoreSpec("demo-bigcommerce", "bigcommerce", "stores/h4rb0r7d", "USD", "Harbor Home Goods"),
)


@dataclass(frozen=True)
class DemoStore:
    """A demo store with its credentials: the webhook secret (Shopify's app secret, the
    WooCommerce webhook secret, the BigCommerce client secret) and the feed API key."""

    spec: StoreSpec
    secret: bytes = field(repr=False)
    api_key: str = field(repr=False)

    @property
    def store_id(self) -> str:
        return self.spec.store_id

    @property
    def platform(self) -> str:
        return self.spec.platform


def demo_registry(stores: Iterable[DemoStore]) -> StoreRegistry:
    """The registry ingest needs for these stores: secrets, currencies, one API key each."""
    return StoreRegistry(
        Store(
            store_id=s.store_id,
            platform=s.platform,
            identity=s.spec.identity,
            secrets=(Secret(s.secret),),
            api_key_hashes=(api_key_digest(s.api_key),),
            currency=s.spec.currency,
        )
        for s in stores
    )


@dataclass(frozen=True)
class DemoRequest:
    """One HTTP request as the platform (or ad tool) would send it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    platform: str
    topic: str
    """The webhook topic, or the feed (``touchpoints``, ``campaigns``)."""
    store_id: str
    at: datetime
    """When it happens in the simulated day (BigCommerce signs with ``now`` regardless)."""
    retry: bool = False
    """A second delivery of an earlier request, byte for byte (the platform's retry)."""

    @property
    def label(self) -> str:
        return f"{self.platform} {self.topic}"

    @property
    def is_feed(self) -> bool:
        return self.path.startswith("/events/")


@dataclass(frozen=True)
class StockMoment:
    """A variant selling out, or coming back."""

    store_id: str
    product: str
    sku: str
    kind: str  # "sold_out" or "restocked"
    at: datetime
    level: int
    cause: str
    """The order that took the last unit, or ``restock``."""


@dataclass(frozen=True)
class Simulation:
    seed: int
    start: datetime
    end: datetime
    requests: tuple[DemoRequest, ...]
    stock: tuple[StockMoment, ...]
    orders: Mapping[str, int]
    refunds: Mapping[str, int]


def simulate(
    seed: int, orders: int, *, stores: Sequence[DemoStore], now: datetime
) -> list[DemoRequest]:
    """The requests of one simulated day (see :func:`run_simulation`)."""
    return list(run_simulation(seed, orders, stores=stores, now=now).requests)


def run_simulation(
    seed: int, orders: int, *, stores: Sequence[DemoStore], now: datetime
) -> Simulation:
    """A day of trading that ends just before ``now`` (aware). ``stores`` holds one store per
    platform (see :data:`STORE_SPECS`); BigCommerce deliveries are signed for ``now``, since
    BigCommerce stamps each delivery when it sends it and ingest refuses stamps over 5 minutes
    old."""
    if not MIN_ORDERS <= orders <= MAX_ORDERS:
        raise ValueError(f"orders must be between {MIN_ORDERS} and {MAX_ORDERS}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    by_platform = {s.platform: s for s in stores}
    if sorted(by_platform) != sorted(s.platform for s in STORE_SPECS) or len(stores) != 3:
        raise ValueError("expected exactly one store per platform")
    return _Day(seed, orders, by_platform, now.astimezone(UTC)).run()


# --- the simulated world -----------------------------------------------------------------------


@dataclass(frozen=True)
class _VariantSpec:
    title: str | None
    sku: str
    price: str
    stock: int


@dataclass(frozen=True)
class _ProductSpec:
    title: str
    handle: str
    category: str
    tags: tuple[str, ...]
    variants: tuple[_VariantSpec, ...]


def _v(title: str | None, sku: str, price: str, stock: int) -> _VariantSpec:
    return _VariantSpec(title, sku, price, stock)


CATALOGUES: Final[Mapping[str, tuple[_ProductSpec, ...]]] = {
    "shopify": (
        _ProductSpec(
            "Ridgeline Rain Jacket",
            "ridgeline-rain-jacket",
            "Jackets",
            ("outerwear", "rain"),
            (
                _v("S", "RRJ-NVY-S", "129.99", 3),
                _v("M", "RRJ-NVY-M", "129.99", 5),
                _v("L", "RRJ-NVY-L", "134.99", 4),
            ),
        ),
        _ProductSpec(
            "Alpine Wool Socks",
            "alpine-wool-socks",
            "Socks",
            ("wool",),
            (_v(None, "AWS-GRY-OS", "18.50", 12),),
        ),
        _ProductSpec(
            "Summit Daypack 22L",
            "summit-daypack-22l",
            "Bags",
            ("hiking", "bags"),
            (_v("Slate", "SDP-SLT", "89.00", 4), _v("Moss", "SDP-MOS", "89.00", 6)),
        ),
    ),
    "woocommerce": (
        _ProductSpec(
            "Trail Mug", "trail-mug", "Mugs", ("camp",), (_v(None, "TM-ENAMEL", "14.99", 6),)
        ),
        _ProductSpec(
            "Merino Beanie",
            "merino-beanie",
            "Accessories",
            ("merino",),
            (_v(None, "MB-CHAR", "19.99", 4),),
        ),
        _ProductSpec(
            "Espresso Blend 500 g",
            "espresso-blend-500g",
            "Coffee",
            ("coffee",),
            (_v(None, "EB-500", "16.90", 10),),
        ),
        _ProductSpec(
            "Pour-Over Kettle",
            "pour-over-kettle",
            "Brewing",
            ("coffee",),
            (_v(None, "POK-STL", "49.00", 3),),
        ),
    ),
    "bigcommerce": (
        _ProductSpec(
            "Linen Throw",
            "linen-throw",
            "Living",
            ("linen",),
            (_v("Sand", "LT-SND", "59.00", 4), _v("Slate", "LT-SLT", "59.00", 5)),
        ),
        _ProductSpec(
            "Stoneware Bowl Set",
            "stoneware-bowl-set",
            "Kitchen",
            ("stoneware",),
            (_v(None, "SBS-4", "42.00", 5),),
        ),
        _ProductSpec(
            "Beeswax Candle",
            "beeswax-candle",
            "Living",
            ("candles",),
            (_v(None, "BWC-01", "14.00", 9),),
        ),
    ),
}

# Made-up people; every address is on example.com or example.org (RFC 2606).
PEOPLE: Final = (
    ("Maya", "Lindqvist"),
    ("Lena", "Hoffmann"),
    ("Ravi", "Menon"),
    ("Ana", "Souza"),
    ("Tom", "Becker"),
    ("Yuki", "Tanaka"),
    ("Omar", "Haddad"),
    ("Chloe", "Martin"),
    ("Jonas", "Berg"),
    ("Priya", "Nair"),
    ("Sam", "Okafor"),
    ("Ines", "Duarte"),
    ("Leo", "Rossi"),
    ("Mia", "Novak"),
)
_CUSTOMERS_PER_STORE: Final = 6
_CHANNELS: Final = ("meta", "google", "tiktok")


def _email(first: str, last: str, index: int) -> str:
    domain = "example.com" if index % 2 == 0 else "example.org"
    return f"{first}.{last}@{domain}".lower()


@dataclass
class _Product:
    spec: _ProductSpec
    product_id: int
    created_at: datetime
    variants: list[_Variant] = field(default_factory=list)
    updated_at: datetime | None = None


@dataclass
class _Variant:
    product: _Product
    spec: _VariantSpec
    variant_id: int
    item_id: int
    """Shopify's inventory item id; BigCommerce's SKU id; WooCommerce's product id."""
    level: int

    @property
    def label(self) -> str:
        if self.spec.title:
            return f"{self.product.spec.title} ({self.spec.title})"
        return self.product.spec.title


@dataclass
class _Customer:
    first: str
    last: str
    email: str
    customer_id: int
    created_at: datetime


@dataclass
class _Line:
    line_id: int
    variant: _Variant
    quantity: int


@dataclass
class _Order:
    order_id: int
    number: int
    customer: _Customer
    guest: bool
    lines: list[_Line]
    placed_at: datetime
    arrival: dict[str, str] | None
    """utm_* parameters and click id of the ad click that brought the shopper, if any."""
    updated_at: datetime
    status: str = "processing"
    paid_at: datetime | None = None
    completed_at: datetime | None = None
    refunds: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Pending:
    due: int
    seq: int
    kind: str  # "restock", "refund", "complete", "retry"
    store: str
    subject: Any


class _Ids:
    """Resource ids: ``base + run * 10_000 + n`` per kind, so a run never reuses an id of an
    earlier run (refund ids and BigCommerce hashes are how duplicates are recognised)."""

    def __init__(self, run: int) -> None:
        self._run = run
        self._next: Counter[str] = Counter()

    def next(self, kind: str, base: int = 0) -> int:
        self._next[kind] += 1
        return base + self._run * 10_000 + self._next[kind]


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _php_json(document: Any) -> bytes:
    # WooCommerce sends wp_json_encode output: ASCII only, and '/' escaped as '\/'.
    return json.dumps(document, separators=(",", ":")).replace("/", "\\/").encode()


def _iso_z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shop_time(at: datetime) -> str:
    return at.astimezone(_SHOP_TZ).isoformat(timespec="seconds")


def _woo_local(at: datetime) -> str:
    return at.astimezone(_WOO_TZ).replace(tzinfo=None).isoformat(timespec="seconds")


def _woo_gmt(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _money_set(amount: str, currency: str) -> dict[str, Any]:
    return {
        "shop_money": {"amount": amount, "currency_code": currency},
        "presentment_money": {"amount": amount, "currency_code": currency},
    }


class _Day:
    def __init__(
        self, seed: int, orders: int, stores: Mapping[str, DemoStore], now: datetime
    ) -> None:
        self.seed = seed
        self.order_count = orders
        self.stores = stores
        self.now = now.replace(microsecond=0)
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        # Delivery ids must differ between runs, the story must not: a second generator.
        self.tokens = random.Random(f"{seed}/{self.now.isoformat()}")  # noqa: S311
        self.ids = _Ids(max(1, int((self.now - _RUN_EPOCH).total_seconds())))
        self.requests: list[DemoRequest] = []
        self.stock: list[StockMoment] = []
        self.products: dict[str, list[_Product]] = {}
        self.customers: dict[str, list[_Customer]] = {}
        self.placed: dict[str, list[_Order]] = {p: [] for p in stores}
        self.refunded: Counter[str] = Counter()
        self.pending: list[_Pending] = []
        self.seq = 0
        self.touch_buffer: dict[str, list[dict[str, Any]]] = {p: [] for p in stores}
        self.retried: set[str] = set()
        self.sold_out_once: set[str] = set()
        self.middle: dict[str, int] = {}

    # --- the timeline ---------------------------------------------------------------------

    def run(self) -> Simulation:
        rng = self.rng
        gaps = [rng.randint(300, 900) for _ in range(self.order_count)]
        setup = timedelta(minutes=45)
        tail = timedelta(minutes=30)
        start = self.now - setup - timedelta(seconds=sum(gaps)) - tail - timedelta(minutes=5)
        platforms = [s.platform for s in STORE_SPECS]
        for index, platform in enumerate(platforms):
            self._create_products(platform, start + timedelta(minutes=index * 3))
        for index, platform in enumerate(platforms):
            self._create_customers(platform, start + timedelta(minutes=15 + index * 3))
        for index, platform in enumerate(platforms):
            self._link_campaigns(platform, start + timedelta(minutes=30 + index))
        turns = [platforms[i % len(platforms)] for i in range(self.order_count)]
        rng.shuffle(turns)
        for platform in platforms:
            mine = [i for i, p in enumerate(turns) if p == platform]
            self.middle[platform] = mine[len(mine) // 2]
        at = start + setup
        for index, (gap, platform) in enumerate(zip(gaps, turns, strict=True)):
            previous, at = at, at + timedelta(seconds=gap)
            self._run_pending(index, previous, at)
            self._order(platform, index, at)
        end = at + tail
        self._finish(at, end)
        return Simulation(
            seed=self.seed,
            start=start,
            end=max(r.at for r in self.requests),
            requests=tuple(self.requests),
            stock=tuple(self.stock),
            orders={p: len(o) for p, o in self.placed.items()},
            refunds=dict(self.refunded),
        )

    def _schedule(self, due: int, kind: str, store: str, subject: Any) -> None:
        self.seq += 1
        self.pending.append(_Pending(due, self.seq, kind, store, subject))

    def _run_pending(self, index: int, after: datetime, before: datetime) -> None:
        due = sorted((p for p in self.pending if p.due <= index), key=lambda p: (p.due, p.seq))
        if not due:
            return
        self.pending = [p for p in self.pending if p.due > index]
        step = (before - after) / (len(due) + 1)
        for n, item in enumerate(due, start=1):
            self._do(item, (after + step * n).replace(microsecond=0))

    def _finish(self, last_order: datetime, end: datetime) -> None:
        # Every store refunds something, and everything sold out comes back before the end.
        for platform, placed in self.placed.items():
            planned = any(p.kind == "refund" and p.store == platform for p in self.pending)
            if placed and not self.refunded[platform] and not planned:
                self._schedule(self.order_count, "refund", platform, placed[0])
        self._run_pending(self.order_count + 10, last_order, end)  # everything still due
        for platform in self.stores:
            self._flush_touchpoints(platform, end)

    def _do(self, item: _Pending, at: datetime) -> None:
        if item.kind == "restock":
            self._restock(item.store, item.subject, at)
        elif item.kind == "refund":
            self._refund(item.store, item.subject, at)
        elif item.kind == "complete":
            self._complete(item.store, item.subject, at)
        else:
            original: DemoRequest = item.subject
            self.requests.append(
                DemoRequest(
                    original.method,
                    original.path,
                    original.headers,
                    original.body,
                    original.platform,
                    original.topic,
                    original.store_id,
                    at,
                    retry=True,
                )
            )

    # --- setup ----------------------------------------------------------------------------

    def _create_products(self, platform: str, at: datetime) -> None:
        products = []
        for n, spec in enumerate(CATALOGUES[platform]):
            created = at + timedelta(seconds=40 * n)
            product = _Product(spec, self._product_id(platform), created)
            for variant_spec in spec.variants:
                variant_id, item_id = self._variant_ids(platform, product)
                product.variants.append(
                    _Variant(product, variant_spec, variant_id, item_id, variant_spec.stock)
                )
            products.append(product)
            if platform == "shopify":
                self._shopify("products/create", self._shopify_product(product), created)
                for k, variant in enumerate(product.variants, start=1):
                    self._shopify_level(variant, created + timedelta(seconds=k))
            elif platform == "woocommerce":
                product.updated_at = created
                self._woo("product.created", self._woo_product(product), created)
            else:
                self._bigcommerce(
                    "store/product/created", {"type": "product", "id": product.product_id}, created
                )
        self.products[platform] = products

    def _product_id(self, platform: str) -> int:
        if platform == "shopify":
            return self.ids.next("product", 8_800_000_000_000)
        if platform == "woocommerce":
            return self.ids.next("post")  # products, orders and refunds are all WordPress posts
        return self.ids.next("product")

    def _variant_ids(self, platform: str, product: _Product) -> tuple[int, int]:
        if platform == "shopify":
            # Above 2**53, as real ones are: a parser that goes through doubles breaks them.
            return (
                self.ids.next("variant", 9_007_199_254_740_993),
                self.ids.next("item", 9_100_000_000_000_000),
            )
        if platform == "woocommerce":
            return product.product_id, product.product_id
        return self.ids.next("variant"), self.ids.next("sku")

    def _create_customers(self, platform: str, at: datetime) -> None:
        people = self.rng.sample(range(len(PEOPLE)), _CUSTOMERS_PER_STORE)
        customers = []
        for n, person in enumerate(people):
            first, last = PEOPLE[person]
            created = at + timedelta(seconds=25 * n)
            customer = _Customer(
                first, last, _email(first, last, person), self._customer_id(platform), created
            )
            customers.append(customer)
            if platform == "shopify":
                self._shopify("customers/create", self._shopify_customer(customer), created)
            elif platform == "woocommerce":
                self._woo("customer.created", self._woo_customer(customer), created)
            else:
                self._bigcommerce(
                    "store/customer/created",
                    {"type": "customer", "id": customer.customer_id},
                    created,
                )
        self.customers[platform] = customers

    def _customer_id(self, platform: str) -> int:
        if platform == "shopify":
            return self.ids.next("customer", 7_600_000_000_000)
        return self.ids.next("customer")

    def _link_campaigns(self, platform: str, at: datetime) -> None:
        store = self.stores[platform]
        links = []
        for channel, product in zip(_CHANNELS, self.products[platform], strict=False):
            for campaign, products in self._campaigns(platform, channel, product).items():
                for linked in products:
                    links.append(
                        {
                            "campaign_id": campaign,
                            "product_id": str(linked.product_id),
                            "channel": channel,
                            "active": True,
                            "occurred_at": _iso_z(at),
                        }
                    )
        self._feed(store, "campaigns", {"links": links}, at)

    def _campaigns(
        self, platform: str, channel: str, product: _Product
    ) -> dict[str, list[_Product]]:
        # One campaign per channel, each promoting its product and, sometimes, a second one.
        others = [p for p in self.products[platform] if p is not product]
        extra = [self.rng.choice(others)] if others and self.rng.random() < 0.5 else []
        number = CATALOGUES[platform].index(product.spec) + 1
        campaign = f"{channel}-{platform[:4]}-{self.seed % 1000:03d}{number}"
        return {campaign: [product, *extra]}

    def _campaign_of(self, platform: str, product: _Product) -> tuple[str, str] | None:
        index = CATALOGUES[platform].index(product.spec)
        if index >= len(_CHANNELS):
            return None
        channel = _CHANNELS[index]
        return channel, f"{channel}-{platform[:4]}-{self.seed % 1000:03d}{index + 1}"

    # --- orders ---------------------------------------------------------------------------

    def _order(self, platform: str, index: int, at: datetime) -> None:
        rng = self.rng
        in_stock = [v for p in self.products[platform] for v in p.variants if v.level > 0]
        if not in_stock:
            for variant in self._variants(platform):
                self._restock(platform, variant, at - timedelta(seconds=30))
            in_stock = self._variants(platform)
        guest = platform == "woocommerce" and rng.random() < 0.15
        if guest:
            person = rng.randrange(len(PEOPLE))
            first, last = PEOPLE[person]
            customer = _Customer(first, last, _email(first, last, person), 0, at)
        else:
            customer = rng.choice(self.customers[platform])
        chosen = rng.sample(in_stock, min(len(in_stock), rng.choice((1, 1, 1, 2, 2, 3))))
        lines = [(variant, min(variant.level, rng.choice((1, 1, 1, 2)))) for variant in chosen]
        # The store's middle order clears a variant's shelf if nothing has sold out there yet,
        # so that every store's story has a sell-out and a restock, however few orders it has.
        if index == self.middle[platform] and platform not in self.sold_out_once:
            lowest = min(in_stock, key=lambda v: (v.level, v.spec.sku))
            lines = [(v, q) for v, q in lines if v is not lowest] + [(lowest, lowest.level)]
        arrival = self._touchpoints(platform, customer, [v for v, _ in lines], at)
        order = _Order(
            order_id=self._order_id(platform),
            number=1000 + len(self.placed[platform]) + 1,
            customer=customer,
            guest=guest,
            lines=[
                _Line(self._line_id(platform), variant, quantity) for variant, quantity in lines
            ],
            placed_at=at,
            arrival=arrival,
            updated_at=at,
        )
        self.placed[platform].append(order)
        if platform == "shopify":
            self._shopify_order(order, index)
        elif platform == "woocommerce":
            self._woo_order(order, index)
        else:
            self._bigcommerce_order(order, index)
        if rng.random() < 0.15:
            self._schedule(index + rng.randint(2, 5), "refund", platform, order)

    def _variants(self, platform: str) -> list[_Variant]:
        return [v for p in self.products[platform] for v in p.variants]

    def _order_id(self, platform: str) -> int:
        if platform == "shopify":
            return self.ids.next("order", 5_980_000_000_000_000_000)
        if platform == "woocommerce":
            return self.ids.next("post")
        return self.ids.next("order")

    def _line_id(self, platform: str) -> int:
        if platform == "shopify":
            return self.ids.next("line", 15_000_000_000_000)
        return self.ids.next("line")

    def _take(self, platform: str, order: _Order, index: int) -> list[_Variant]:
        """Draws the order's lines from stock; schedules restocks for what sold out."""
        changed = []
        for line in order.lines:
            variant = line.variant
            variant.level -= line.quantity
            assert variant.level >= 0, "orders only take what is on the shelf"
            changed.append(variant)
            if variant.level == 0:
                self.sold_out_once.add(platform)
                self.stock.append(
                    StockMoment(
                        self.stores[platform].store_id,
                        variant.label,
                        variant.spec.sku,
                        "sold_out",
                        order.placed_at,
                        0,
                        f"order #{order.number}",
                    )
                )
                self._schedule(index + self.rng.randint(2, 4), "restock", platform, variant)
        return changed

    def _restock(self, platform: str, variant: _Variant, at: datetime) -> None:
        if variant.level > 0:
            return
        variant.level = variant.spec.stock + self.rng.randint(3, 8)
        self.stock.append(
            StockMoment(
                self.stores[platform].store_id,
                variant.label,
                variant.spec.sku,
                "restocked",
                at,
                variant.level,
                "restock",
            )
        )
        if platform == "shopify":
            self._shopify_level(variant, at)
        elif platform == "woocommerce":
            variant.product.updated_at = at
            self._woo("product.updated", self._woo_product(variant.product), at)
        else:
            self._bigcommerce_stock(variant, at)

    def _refund(self, platform: str, order: _Order, at: datetime) -> None:
        self.refunded[platform] += 1
        line = order.lines[0]
        if platform == "shopify":
            self._shopify_refund(order, line, at)
        elif platform == "woocommerce":
            if order.completed_at is None:
                self._complete(platform, order, at - timedelta(seconds=60))
            self._woo_refund(order, line, at)
        else:
            refund_id = self.ids.next("refund")
            order.refunds.append({"refund_id": refund_id})
            self._bigcommerce(
                "store/order/refund/created",
                {"type": "order", "id": order.order_id, "refund": {"refund_id": refund_id}},
                at,
            )

    def _complete(self, platform: str, order: _Order, at: datetime) -> None:
        if order.completed_at is not None:
            return
        order.status = "completed"
        order.completed_at = order.updated_at = at
        self._woo("order.updated", self._woo_order_body(order), at)

    # --- touchpoints ----------------------------------------------------------------------

    def _touchpoints(
        self, platform: str, customer: _Customer, bought: Sequence[_Variant], at: datetime
    ) -> dict[str, str] | None:
        """What the ad tools saw of this shopper before the order; the utm parameters of the
        click that brought them, if the last touch was one."""
        rng = self.rng
        arrival = None
        if rng.random() < 0.3:
            self._flush_if_full(platform, at)
            return None
        touches = rng.randint(1, 3)
        times = sorted(at - timedelta(minutes=rng.randint(2, 180)) for _ in range(touches))
        product = bought[0].product
        for n, when in enumerate(times):
            last = n == touches - 1
            kind = (
                "ad_click"
                if last or rng.random() < 0.4
                else rng.choice(("ad_view", "content_view"))
            )
            campaign = self._campaign_of(platform, product)
            if kind != "content_view" and campaign is None:
                kind = "content_view"
            item = self._touchpoint(platform, customer, product, kind, campaign, when)
            if kind == "ad_click" and last and campaign is not None:
                arrival = {
                    "utm_source": campaign[0],
                    "utm_medium": "cpc",
                    "utm_campaign": campaign[1],
                    "click_id": item["click_id"],
                }
        self._flush_if_full(platform, at)
        return arrival

    def _touchpoint(
        self,
        platform: str,
        customer: _Customer,
        product: _Product,
        kind: str,
        campaign: tuple[str, str] | None,
        when: datetime,
    ) -> dict[str, Any]:
        store = self.stores[platform]
        run = self.ids.next("touchpoint")
        item: dict[str, Any] = {
            "touchpoint_id": f"demo-{kind.replace('_', '-')}-{run}",
            "kind": kind,
            "channel": "blog" if kind == "content_view" else campaign[0] if campaign else "meta",
            "occurred_at": _iso_z(when),
            "email": customer.email,
            "product_ids": [str(product.product_id)],
        }
        if kind == "content_view":
            item["content_id"] = f"guide-{product.spec.handle}"
            item["landing_url"] = f"https://{_host(store)}/blog/{product.spec.handle}-guide"
        elif campaign is not None:
            channel, campaign_id = campaign
            item["campaign_id"] = campaign_id
            item["ad_id"] = f"{campaign_id}-ad{self.rng.randint(1, 3)}"
            # What an impression or a click cost, in integer minor units.
            cents = self.rng.randint(40, 260) if kind == "ad_click" else self.rng.randint(1, 6)
            item["cost"] = {"amount_minor": cents, "currency": store.spec.currency}
            if kind == "ad_click":
                click_id = self.tokens.getrandbits(96).to_bytes(12, "big").hex()
                item["click_id"] = click_id
                item["landing_url"] = (
                    f"https://{_host(store)}/products/{product.spec.handle}"
                    f"?utm_source={channel}&utm_medium=cpc&utm_campaign={campaign_id}"
                )
        self.touch_buffer[platform].append(item)
        return item

    def _flush_if_full(self, platform: str, at: datetime) -> None:
        if len(self.touch_buffer[platform]) >= _FEED_BATCH:
            self._flush_touchpoints(platform, at)

    def _flush_touchpoints(self, platform: str, at: datetime) -> None:
        batch = self.touch_buffer[platform]
        if batch:
            self.touch_buffer[platform] = []
            self._feed(self.stores[platform], "touchpoints", {"touchpoints": batch}, at)

    def _feed(self, store: DemoStore, feed: str, document: Any, at: datetime) -> None:
        self.requests.append(
            DemoRequest(
                "POST",
                f"/events/{feed}",
                {"authorization": f"Bearer {store.api_key}", "content-type": "application/json"},
                _compact(document),
                store.platform,
                feed,
                store.store_id,
                at,
            )
        )

    # --- Shopify --------------------------------------------------------------------------

    def _shopify(self, topic: str, document: Any, at: datetime) -> DemoRequest:
        store = self.stores["shopify"]
        body = _compact(document)
        headers = shopify.signed_headers(
            body,
            store.secret,
            shop_domain=store.spec.identity,
            topic=topic,
            webhook_id=str(uuid.UUID(int=self.tokens.getrandbits(128), version=4)),
            triggered_at=at,
        )
        request = DemoRequest(
            "POST", "/webhooks/shopify", headers, body, "shopify", topic, store.store_id, at
        )
        self.requests.append(request)
        return request

    def _shopify_product(self, product: _Product) -> dict[str, Any]:
        created = _shop_time(product.created_at)
        spec = product.spec
        return {
            "admin_graphql_api_id": f"gid://shopify/Product/{product.product_id}",
            "body_html": f"<p>{spec.title}.</p>",
            "created_at": created,
            "handle": spec.handle,
            "id": product.product_id,
            "product_type": spec.category,
            "published_at": created,
            "template_suffix": None,
            "title": spec.title,
            "updated_at": created,
            "vendor": "Northwind",
            "status": "active",
            "published_scope": "global",
            "tags": ", ".join(spec.tags),
            "variants": [
                {
                    "admin_graphql_api_id": f"gid://shopify/ProductVariant/{v.variant_id}",
                    "barcode": None,
                    "compare_at_price": None,
                    "created_at": created,
                    "id": v.variant_id,
                    "inventory_policy": "deny",
                    "position": n,
                    "price": v.spec.price,
                    "product_id": product.product_id,
                    "sku": v.spec.sku,
                    "taxable": True,
                    "title": v.spec.title or "Default Title",
                    "updated_at": created,
                    "option1": v.spec.title or "Default Title",
                    "option2": None,
                    "option3": None,
                    "image_id": None,
                    "inventory_item_id": v.item_id,
                    "inventory_quantity": v.level,
                    "old_inventory_quantity": v.level,
                }
                for n, v in enumerate(product.variants, start=1)
            ],
            "options": [
                {
                    "name": "Size" if product.variants[0].spec.title else "Title",
                    "id": product.product_id + 1,
                    "product_id": product.product_id,
                    "position": 1,
                    "values": [v.spec.title or "Default Title" for v in product.variants],
                }
            ],
            "images": [],
            "image": None,
            "media": [],
            "variant_gids": [
                {
                    "admin_graphql_api_id": f"gid://shopify/ProductVariant/{v.variant_id}",
                    "updated_at": product.created_at.astimezone(UTC).strftime(
                        "%Y-%m-%dT%H:%M:%S.000Z"
                    ),
                }
                for v in product.variants
            ],
            "has_variants_that_requires_components": False,
            "category": None,
        }

    def _shopify_level(self, variant: _Variant, at: datetime) -> None:
        self._shopify(
            "inventory_levels/update",
            {
                "inventory_item_id": variant.item_id,
                "location_id": _SHOPIFY_LOCATION,
                "available": variant.level,
                "updated_at": _shop_time(at),
                "admin_graphql_api_id": (
                    f"gid://shopify/InventoryLevel/{_SHOPIFY_LOCATION}"
                    f"?inventory_item_id={variant.item_id}"
                ),
            },
            at,
        )

    def _shopify_address(self, customer: _Customer) -> dict[str, Any]:
        return {
            "first_name": customer.first,
            "last_name": customer.last,
            "company": None,
            "address1": f"{100 + len(customer.last) * 7} Larkspur Lane",
            "address2": None,
            "city": "Brooklyn",
            "province": "New York",
            "country": "United States",
            "zip": "11215",
            "phone": None,
            "name": f"{customer.first} {customer.last}",
            "province_code": "NY",
            "country_code": "US",
        }

    def _shopify_customer(self, customer: _Customer) -> dict[str, Any]:
        created = _shop_time(customer.created_at)
        address = {
            "id": customer.customer_id + 2_000_000_000_000,
            "customer_id": customer.customer_id,
            **self._shopify_address(customer),
            "country_name": "United States",
            "default": True,
        }
        return {
            "id": customer.customer_id,
            "created_at": created,
            "updated_at": created,
            "first_name": customer.first,
            "last_name": customer.last,
            "state": "disabled",
            "note": None,
            "verified_email": True,
            "multipass_identifier": None,
            "tax_exempt": False,
            "email": customer.email,
            "phone": None,
            "currency": "USD",
            "addresses": [address],
            "tax_exemptions": [],
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer.customer_id}",
            "default_address": address,
        }

    def _shopify_order(self, order: _Order, index: int) -> None:
        self._shopify("orders/create", self._shopify_order_body(order), order.placed_at)
        for k, variant in enumerate(self._take("shopify", order, index), start=1):
            self._shopify_level(variant, order.placed_at + timedelta(seconds=2 + k))
        order.status = "paid"
        order.paid_at = order.updated_at = order.placed_at + timedelta(seconds=45)
        paid = self._shopify("orders/paid", self._shopify_order_body(order), order.paid_at)
        if "shopify" not in self.retried:
            # Shopify did not get our 200 in time (say) and delivers the same webhook again.
            self.retried.add("shopify")
            self._schedule(index + 2, "retry", "shopify", paid)

    def _shopify_totals(self, order: _Order) -> dict[str, Decimal]:
        subtotal = sum(
            (Decimal(line.variant.spec.price) * line.quantity for line in order.lines), Decimal(0)
        )
        tax = sum((self._shopify_line_tax(line) for line in order.lines), Decimal(0))
        shipping = Decimal("0.00") if subtotal >= 100 else Decimal("8.00")
        return {
            "subtotal": subtotal,
            "tax": tax,
            "shipping": shipping,
            "total": subtotal + tax + shipping,
        }

    @staticmethod
    def _shopify_line_tax(line: _Line) -> Decimal:
        amount = Decimal(line.variant.spec.price) * line.quantity * _NY_TAX
        return amount.quantize(_CENT, rounding=ROUND_HALF_UP)

    def _shopify_order_body(self, order: _Order) -> dict[str, Any]:
        totals = self._shopify_totals(order)
        refunded = sum(
            (Decimal(t["amount"]) for r in order.refunds for t in r["transactions"]), Decimal(0)
        )
        usd = "USD"
        store = self.stores["shopify"]
        landing = "/"
        if order.arrival:
            landing = (
                f"/products/{order.lines[0].variant.product.spec.handle}"
                f"?utm_source={order.arrival['utm_source']}&utm_medium=cpc"
                f"&utm_campaign={order.arrival['utm_campaign']}"
                f"&{'fbclid' if order.arrival['utm_source'] == 'meta' else 'gclid'}="
                f"{order.arrival['click_id']}"
            )
        financial = order.status
        if order.refunds:
            financial = "partially_refunded"
        customer = self._shopify_customer(order.customer)
        return {
            "id": order.order_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
            "app_id": 580111,
            "browser_ip": "203.0.113.47",
            "buyer_accepts_marketing": False,
            "cancel_reason": None,
            "cancelled_at": None,
            "checkout_token": f"{order.order_id:x}",
            "closed_at": None,
            "confirmation_number": f"D{order.number}X",
            "confirmed": True,
            "contact_email": order.customer.email,
            "created_at": _shop_time(order.placed_at),
            "currency": usd,
            "current_subtotal_price": _money(totals["subtotal"]),
            "current_total_price": _money(totals["total"] - refunded),
            "current_total_tax": _money(totals["tax"]),
            "customer_locale": "en-US",
            "discount_codes": [],
            "email": order.customer.email,
            "estimated_taxes": False,
            "financial_status": financial,
            "fulfillment_status": None,
            "landing_site": landing,
            "landing_site_ref": None,
            "name": f"#{order.number}",
            "note": None,
            "note_attributes": [],
            "number": order.number - 1000,
            "order_number": order.number,
            "order_status_url": f"https://{store.spec.identity}/orders/{order.order_id:x}/authenticate",
            "presentment_currency": usd,
            "processed_at": _shop_time(order.placed_at),
            "referring_site": "https://www.example.com/" if order.arrival else None,
            "source_name": "web",
            "subtotal_price": _money(totals["subtotal"]),
            "subtotal_price_set": _money_set(_money(totals["subtotal"]), usd),
            "tags": "",
            "tax_lines": [
                {
                    "price": _money(totals["tax"]),
                    "rate": float(_NY_TAX),
                    "title": "NY State + City Tax",
                    "price_set": _money_set(_money(totals["tax"]), usd),
                    "channel_liable": False,
                }
            ],
            "taxes_included": False,
            "test": False,
            "token": f"{order.order_id:x}",
            "total_discounts": "0.00",
            "total_discounts_set": _money_set("0.00", usd),
            "total_line_items_price": _money(totals["subtotal"]),
            "total_line_items_price_set": _money_set(_money(totals["subtotal"]), usd),
            "total_outstanding": "0.00" if order.paid_at else _money(totals["total"]),
            "total_price": _money(totals["total"]),
            "total_price_set": _money_set(_money(totals["total"]), usd),
            "total_shipping_price_set": _money_set(_money(totals["shipping"]), usd),
            "total_tax": _money(totals["tax"]),
            "total_tax_set": _money_set(_money(totals["tax"]), usd),
            "total_tip_received": "0.00",
            "updated_at": _shop_time(order.updated_at),
            "user_id": None,
            "billing_address": self._shopify_address(order.customer),
            "customer": {
                key: customer[key]
                for key in (
                    "id",
                    "created_at",
                    "updated_at",
                    "first_name",
                    "last_name",
                    "state",
                    "email",
                    "phone",
                    "currency",
                    "tax_exemptions",
                    "admin_graphql_api_id",
                    "default_address",
                )
            },
            "line_items": [self._shopify_line(line) for line in order.lines],
            "refunds": order.refunds,
            "shipping_address": self._shopify_address(order.customer),
            "shipping_lines": [
                {
                    "id": order.order_id % 10**13 + 1,
                    "code": "Standard",
                    "discounted_price": _money(totals["shipping"]),
                    "price": _money(totals["shipping"]),
                    "price_set": _money_set(_money(totals["shipping"]), usd),
                    "source": "shopify",
                    "title": "Standard",
                    "tax_lines": [],
                    "discount_allocations": [],
                }
            ],
        }

    def _shopify_line(self, line: _Line) -> dict[str, Any]:
        variant = line.variant
        tax = _money(self._shopify_line_tax(line))
        return {
            "id": line.line_id,
            "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
            "current_quantity": line.quantity,
            "fulfillable_quantity": line.quantity,
            "fulfillment_service": "manual",
            "fulfillment_status": None,
            "gift_card": False,
            "grams": 500,
            "name": variant.label.replace(" (", " - ").rstrip(")"),
            "price": variant.spec.price,
            "price_set": _money_set(variant.spec.price, "USD"),
            "product_exists": True,
            "product_id": variant.product.product_id,
            "properties": [],
            "quantity": line.quantity,
            "requires_shipping": True,
            "sales_line_item_group_id": None,
            "sku": variant.spec.sku,
            "taxable": True,
            "title": variant.product.spec.title,
            "total_discount": "0.00",
            "total_discount_set": _money_set("0.00", "USD"),
            "variant_id": variant.variant_id,
            "variant_inventory_management": "shopify",
            "variant_title": variant.spec.title,
            "vendor": "Northwind",
            "tax_lines": [
                {
                    "channel_liable": False,
                    "price": tax,
                    "price_set": _money_set(tax, "USD"),
                    "rate": float(_NY_TAX),
                    "title": "NY State + City Tax",
                }
            ],
            "duties": [],
            "discount_allocations": [],
        }

    def _shopify_refund(self, order: _Order, line: _Line, at: datetime) -> None:
        """One unit of the first line back to the shopper, without a restock (it arrived
        damaged), then the order update that repeats the refund."""
        refund_id = self.ids.next("refund", 1_020_000_000_000_000_000)
        transaction_id = self.ids.next("transaction", 7_010_000_000_000)
        unit = Decimal(line.variant.spec.price)
        tax = (unit * _NY_TAX).quantize(_CENT, rounding=ROUND_HALF_UP)
        when = _shop_time(at)
        refund = {
            "id": refund_id,
            "order_id": order.order_id,
            "created_at": when,
            "note": "Arrived damaged",
            "user_id": 93456789012,
            "processed_at": when,
            "duties": [],
            "total_duties_set": _money_set("0.00", "USD"),
            "return": None,
            "refund_shipping_lines": [],
            "restock": False,
            "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
            "order_adjustments": [],
            "refund_line_items": [
                {
                    "id": refund_id % 10**13,
                    "quantity": 1,
                    "line_item_id": line.line_id,
                    "location_id": None,
                    "restock_type": "no_restock",
                    # Shopify writes these two as JSON numbers; the *_set strings are exact.
                    "subtotal": float(unit),
                    "total_tax": float(tax),
                    "subtotal_set": _money_set(_money(unit), "USD"),
                    "total_tax_set": _money_set(_money(tax), "USD"),
                    "line_item": self._shopify_line(line),
                }
            ],
            "transactions": [
                {
                    "id": transaction_id,
                    "order_id": order.order_id,
                    "kind": "refund",
                    "gateway": "shopify_payments",
                    "status": "success",
                    "message": "Transaction approved",
                    "created_at": when,
                    "test": False,
                    "parent_id": transaction_id - 1,
                    "processed_at": when,
                    "amount": _money(unit + tax),
                    "currency": "USD",
                    "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{transaction_id}",
                }
            ],
        }
        self._shopify("refunds/create", refund, at)
        order.refunds.append(refund)
        order.updated_at = at + timedelta(seconds=2)
        self._shopify("orders/updated", self._shopify_order_body(order), order.updated_at)

    # --- WooCommerce ----------------------------------------------------------------------

    def _woo(self, topic: str, document: Any, at: datetime) -> None:
        store = self.stores["woocommerce"]
        body = _php_json(document)
        headers = woocommerce.signed_headers(
            body,
            store.secret,
            source=store.spec.identity,
            topic=topic,
            webhook_id=str(_WOO_WEBHOOK_IDS[topic]),
            delivery_id=self.tokens.getrandbits(128).to_bytes(16, "big").hex(),
        )
        headers["user-agent"] = _WOO_USER_AGENT
        self.requests.append(
            DemoRequest(
                "POST",
                "/webhooks/woocommerce",
                headers,
                body,
                "woocommerce",
                topic,
                store.store_id,
                at,
            )
        )

    def _woo_product(self, product: _Product) -> dict[str, Any]:
        (variant,) = product.variants  # the demo's WooCommerce products are simple
        spec = product.spec
        home = self.stores["woocommerce"].spec.identity
        modified = product.updated_at or product.created_at
        return {
            "id": product.product_id,
            "name": spec.title,
            "slug": spec.handle,
            "permalink": f"{home}product/{spec.handle}/",
            "date_created": _woo_local(product.created_at),
            "date_created_gmt": _woo_gmt(product.created_at),
            "date_modified": _woo_local(modified),
            "date_modified_gmt": _woo_gmt(modified),
            "type": "simple",
            "status": "publish",
            "featured": False,
            "catalog_visibility": "visible",
            "description": f"<p>{spec.title}.</p>",
            "short_description": "",
            "sku": variant.spec.sku,
            "price": variant.spec.price,
            "regular_price": variant.spec.price,
            "sale_price": "",
            "on_sale": False,
            "purchasable": True,
            "total_sales": 0,
            "virtual": False,
            "downloadable": False,
            "tax_status": "taxable",
            "tax_class": "",
            "manage_stock": True,
            "stock_quantity": variant.level,
            "backorders": "no",
            "backorders_allowed": False,
            "backordered": False,
            "low_stock_amount": None,
            "sold_individually": False,
            "parent_id": 0,
            "categories": [{"id": 18, "name": spec.category, "slug": spec.category.lower()}],
            "tags": [{"id": 40 + n, "name": tag, "slug": tag} for n, tag in enumerate(spec.tags)],
            "images": [],
            "attributes": [],
            "default_attributes": [],
            "variations": [],
            "grouped_products": [],
            "menu_order": 0,
            "meta_data": [],
            "stock_status": "instock" if variant.level > 0 else "outofstock",
            "has_options": False,
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/products/{product.product_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/products"}],
            },
        }

    def _woo_address(self, customer: _Customer, with_email: bool) -> dict[str, Any]:
        address = {
            "first_name": customer.first,
            "last_name": customer.last,
            "company": "",
            "address_1": "Gartenweg 9",
            "address_2": "",
            "city": "Leipzig",
            "state": "",
            "postcode": "04109",
            "country": "DE",
        }
        if with_email:
            address["email"] = customer.email
        address["phone"] = ""
        return address

    def _woo_customer(self, customer: _Customer) -> dict[str, Any]:
        home = self.stores["woocommerce"].spec.identity
        return {
            "id": customer.customer_id,
            "date_created": _woo_local(customer.created_at),
            "date_created_gmt": _woo_gmt(customer.created_at),
            "date_modified": _woo_local(customer.created_at),
            "date_modified_gmt": _woo_gmt(customer.created_at),
            "email": customer.email,
            "first_name": customer.first,
            "last_name": customer.last,
            "role": "customer",
            "username": f"{customer.first}.{customer.last}".lower(),
            "billing": self._woo_address(customer, with_email=True),
            "shipping": self._woo_address(customer, with_email=False),
            "is_paying_customer": False,
            "avatar_url": "https://secure.gravatar.com/avatar/?s=96&d=mm&r=g",
            "meta_data": [],
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/customers/{customer.customer_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/customers"}],
            },
        }

    def _woo_order(self, order: _Order, index: int) -> None:
        order.paid_at = order.placed_at
        self._woo("order.created", self._woo_order_body(order), order.placed_at)
        for k, variant in enumerate(self._take("woocommerce", order, index), start=1):
            variant.product.updated_at = order.placed_at + timedelta(seconds=1 + k)
            self._woo(
                "product.updated", self._woo_product(variant.product), variant.product.updated_at
            )
        # Shipped (status completed) a little later.
        self._schedule(index + self.rng.randint(1, 2), "complete", "woocommerce", order)

    @staticmethod
    def _woo_line_amounts(line: _Line) -> tuple[Decimal, Decimal, Decimal]:
        """Net total (2 dp), its tax (2 dp) and the unrounded tax: prices include 19 % VAT."""
        gross = Decimal(line.variant.spec.price) * line.quantity
        exact_net = gross / (1 + _DE_VAT)
        net = exact_net.quantize(_CENT, rounding=ROUND_HALF_UP)
        return net, gross - net, gross - exact_net

    def _woo_order_body(self, order: _Order) -> dict[str, Any]:
        home = self.stores["woocommerce"].spec.identity
        lines = []
        cart_net = cart_tax = Decimal(0)
        gross_total = Decimal(0)
        for line in order.lines:
            net, tax, exact_tax = self._woo_line_amounts(line)
            cart_net += net
            cart_tax += tax
            gross_total += net + tax
            lines.append(
                {
                    "id": line.line_id,
                    "name": line.variant.product.spec.title,
                    "product_id": line.variant.product.product_id,
                    "variation_id": 0,
                    "quantity": line.quantity,
                    "tax_class": "",
                    "subtotal": _money(net),
                    "subtotal_tax": _money(tax),
                    "total": _money(net),
                    "total_tax": _money(tax),
                    "taxes": [
                        {
                            "id": 1,
                            "total": f"{exact_tax:.6f}",
                            "subtotal": f"{exact_tax:.6f}",
                        }
                    ],
                    "meta_data": [],
                    "sku": line.variant.spec.sku,
                    # A JSON number, unrounded, as WooCommerce sends it.
                    "price": float(net / line.quantity),
                    "image": {"id": "", "src": ""},
                    "parent_name": None,
                }
            )
        free = gross_total >= 50
        shipping, shipping_tax = (
            (Decimal(0), Decimal(0))
            if free
            else (
                Decimal("4.20"),
                Decimal("0.80"),
            )
        )
        total = gross_total + shipping + shipping_tax
        meta: list[dict[str, Any]] = [{"id": 90211, "key": "is_vat_exempt", "value": "no"}]
        if order.arrival:
            product = order.lines[0].variant.product.spec.handle
            entry = (
                f"{home}product/{product}/?utm_source={order.arrival['utm_source']}"
                f"&utm_medium=cpc&utm_campaign={order.arrival['utm_campaign']}"
            )
            attribution = {
                "source_type": "utm",
                "utm_source": order.arrival["utm_source"],
                "utm_medium": "cpc",
                "utm_campaign": order.arrival["utm_campaign"],
                "session_entry": entry,
                "referrer": "https://www.example.com/",
            }
            meta += [
                {"id": 90300 + n, "key": f"_wc_order_attribution_{key}", "value": value}
                for n, (key, value) in enumerate(attribution.items())
            ]
        customer_id = 0 if order.guest else order.customer.customer_id
        return {
            "id": order.order_id,
            "parent_id": 0,
            "status": order.status,
            "currency": "EUR",
            "version": _WOO_VERSION,
            "prices_include_tax": True,
            "date_created": _woo_local(order.placed_at),
            "date_modified": _woo_local(order.updated_at),
            "discount_total": "0.00",
            "discount_tax": "0.00",
            "shipping_total": _money(shipping),
            "shipping_tax": _money(shipping_tax),
            "cart_tax": _money(cart_tax),
            "total": _money(total),
            "total_tax": _money(cart_tax + shipping_tax),
            "customer_id": customer_id,
            "order_key": f"wc_order_{order.order_id:x}",
            "billing": self._woo_address(order.customer, with_email=True),
            "shipping": self._woo_address(order.customer, with_email=False),
            "payment_method": "stripe",
            "payment_method_title": "Credit Card (Stripe)",
            "transaction_id": f"pi_demo{order.order_id}",
            "customer_ip_address": "198.51.100.77",
            "customer_user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Firefox/124.0",
            "created_via": "checkout",
            "customer_note": "",
            "date_completed": _woo_local(order.completed_at) if order.completed_at else None,
            "date_paid": _woo_local(order.paid_at) if order.paid_at else None,
            "cart_hash": f"{order.order_id:032x}",
            "number": str(order.order_id),
            "meta_data": meta,
            "line_items": lines,
            "tax_lines": [
                {
                    "id": 1,
                    "rate_code": "DE-MWST-1",
                    "rate_id": 1,
                    "label": "MwSt.",
                    "compound": False,
                    "tax_total": _money(cart_tax),
                    "shipping_tax_total": _money(shipping_tax),
                    "rate_percent": 19,
                    "meta_data": [],
                }
            ],
            "shipping_lines": [
                {
                    "id": order.order_id + 1,
                    "method_title": "Free shipping" if free else "Flat rate",
                    "method_id": "free_shipping" if free else "flat_rate",
                    "instance_id": "3",
                    "total": _money(shipping),
                    "total_tax": _money(shipping_tax),
                    "taxes": [],
                    "meta_data": [],
                }
            ],
            "fee_lines": [],
            "coupon_lines": [],
            "refunds": [
                {"id": r["id"], "reason": r["reason"], "total": r["total"]} for r in order.refunds
            ],
            "payment_url": f"{home}checkout/order-pay/{order.order_id}/?pay_for_order=true",
            "is_editable": False,
            "needs_payment": False,
            "needs_processing": order.status == "processing",
            "date_created_gmt": _woo_gmt(order.placed_at),
            "date_modified_gmt": _woo_gmt(order.updated_at),
            "date_completed_gmt": _woo_gmt(order.completed_at) if order.completed_at else None,
            "date_paid_gmt": _woo_gmt(order.paid_at) if order.paid_at else None,
            "currency_symbol": "\u20ac",
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/orders/{order.order_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/orders"}],
            },
        }

    def _woo_refund(self, order: _Order, line: _Line, at: datetime) -> None:
        """One unit of the first line back; WooCommerce says so in the next order.updated."""
        unit = Decimal(line.variant.spec.price)  # prices include tax: this is what was paid
        order.refunds.insert(
            0, {"id": self.ids.next("post"), "reason": "Arrived chipped", "total": f"-{unit}"}
        )
        order.updated_at = at
        self._woo("order.updated", self._woo_order_body(order), at)

    # --- BigCommerce ----------------------------------------------------------------------

    def _bigcommerce(self, scope: str, data: dict[str, Any], at: datetime) -> DemoRequest:
        store = self.stores["bigcommerce"]
        # BigCommerce's hash is the SHA-1 of the data: the same event twice has the same hash.
        digest = hashlib.sha1(  # noqa: S324 - an identifier, as BigCommerce makes it
            json.dumps(data, separators=(",", ":")).encode()
        ).hexdigest()
        body = _compact(
            {
                "scope": scope,
                "store_id": _BC_STORE_NUMBER,
                "data": data,
                "hash": digest,
                "created_at": int(at.timestamp()),
                "producer": store.spec.identity,
            }
        )
        headers = bigcommerce.signed_headers(
            body,
            store.secret,
            webhook_id=str(uuid.UUID(int=self.tokens.getrandbits(128), version=4)),
            sent_at=self.now,
        )
        request = DemoRequest(
            "POST", "/webhooks/bigcommerce", headers, body, "bigcommerce", scope, store.store_id, at
        )
        self.requests.append(request)
        return request

    def _bigcommerce_order(self, order: _Order, index: int) -> None:
        created = self._bigcommerce(
            "store/order/created", {"type": "order", "id": order.order_id}, order.placed_at
        )
        for k, variant in enumerate(self._take("bigcommerce", order, index), start=1):
            self._bigcommerce_stock(variant, order.placed_at + timedelta(seconds=1 + k))
        self._bigcommerce(
            "store/order/statusUpdated",
            {
                "type": "order",
                "id": order.order_id,
                "status": {"previous_status_id": 1, "new_status_id": 11},
            },
            order.placed_at + timedelta(seconds=30),
        )
        if "bigcommerce" not in self.retried:
            # No 2xx seen in time: BigCommerce sends the same callback again.
            self.retried.add("bigcommerce")
            self._schedule(index + 2, "retry", "bigcommerce", created)

    def _bigcommerce_stock(self, variant: _Variant, at: datetime) -> None:
        product = variant.product
        if len(product.variants) > 1:
            # Tracked by variant: the SKU event (its id is the SKU's, not the variant's).
            self._bigcommerce(
                "store/sku/inventory/updated",
                {
                    "type": "sku",
                    "id": variant.item_id,
                    "inventory": {
                        "product_id": product.product_id,
                        "method": "absolute",
                        "value": variant.level,
                        "variant_id": variant.variant_id,
                    },
                },
                at,
            )
        else:
            # Tracked by product: the SKU event never fires for products without variants.
            self._bigcommerce(
                "store/product/inventory/updated",
                {
                    "type": "product",
                    "id": product.product_id,
                    "inventory": {
                        "product_id": product.product_id,
                        "method": "absolute",
                        "value": variant.level,
                    },
                },
                at,
            )


_WOO_WEBHOOK_IDS: Final = {
    "product.created": 31,
    "product.updated": 32,
    "customer.created": 33,
    "order.created": 34,
    "order.updated": 35,
}


def _host(store: DemoStore) -> str:
    identity = store.spec.identity
    if store.platform == "woocommerce":
        return identity.split("://", 1)[1].rstrip("/")
    if store.platform == "shopify":
        return identity.replace(".myshopify.com", ".example.com")
    return "harbor-demo.example.com"


# --- what the pipeline should make of it -------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What ingest and the normalizer should do with a simulation's requests, worked out with
    their own pure functions."""

    raw_event_ids: frozenset[str]
    """The distinct raw deliveries (a retry shares its original's id)."""
    events: Mapping[str, frozenset[str]]
    """Topic → the event ids the run should write there (feeds included)."""
    duplicates: tuple[str, ...]
    """Labels of deliveries the normalizer drops as repeats of an earlier one."""
    skipped: tuple[tuple[str, str], ...]
    """(label, reason) of verified deliveries that yield no event by design."""
    dead_letters: tuple[tuple[str, str], ...]
    """(label, reason) of deliveries that would be dead-lettered: should be empty."""
    rejected: tuple[tuple[str, str], ...]
    """(label, reason) of requests ingest would refuse: should be empty."""


def expected_outcome(
    requests: Sequence[DemoRequest],
    registry: StoreRegistry,
    customer_salt: bytes,
    received_at: datetime,
) -> Expectation:
    """Runs each request through the platform's ``authenticate`` (or the feed's validation)
    and each delivery through ``normalize`` with the normalizer's dedupe, in order."""
    modules = {"shopify": shopify, "woocommerce": woocommerce, "bigcommerce": bigcommerce}
    context = NormalizeContext(
        customer_salt=customer_salt,
        store_currency={s.store_id: s.currency for s in registry if s.currency},
    )
    seen: dict[str, SeenEvents] = {}
    raw_ids: set[str] = set()
    events: dict[str, set[str]] = {}
    duplicates: list[str] = []
    skipped: list[tuple[str, str]] = []
    dead: list[tuple[str, str]] = []
    rejected: list[tuple[str, str]] = []
    for request in requests:
        if request.is_feed:
            try:
                ids = _feed_event_ids(request, registry, customer_salt, received_at)
            except (Rejected, feeds.InvalidBatch) as exc:
                rejected.append((request.label, getattr(exc, "reason", type(exc).__name__)))
                continue
            events.setdefault(ids[0], set()).update(ids[1])
            continue
        module = modules[request.platform]
        try:
            delivery = module.authenticate(request.body, request.headers, registry, received_at)
        except Rejected as exc:
            rejected.append((request.label, exc.reason))
            continue
        raw = RawDelivery(
            event_id=delivery.event_id,
            store_id=delivery.store.store_id,
            platform=delivery.store.platform,
            topic=delivery.topic,
            occurred_at=delivery.occurred_at,
            received_at=received_at,
            headers=delivery.headers,
            body=request.body,
        )
        raw_ids.add(raw.event_id)
        outcome = normalize_delivery(raw, context)
        window = seen.setdefault(raw.store_id, SeenEvents(timedelta(hours=72)))
        is_new, fresh = first_sightings(raw, outcome.events, window)
        if not is_new:
            duplicates.append(request.label)
        elif outcome.status == "dead_lettered":
            dead.append((request.label, outcome.reason))
        elif outcome.status == "skipped":
            skipped.append((request.label, outcome.reason))
        for event in fresh:
            events.setdefault(topic_for_record(event.record).name, set()).add(event.event_id)
    return Expectation(
        raw_event_ids=frozenset(raw_ids),
        events={name: frozenset(ids) for name, ids in sorted(events.items())},
        duplicates=tuple(duplicates),
        skipped=tuple(skipped),
        dead_letters=tuple(dead),
        rejected=tuple(rejected),
    )


def _feed_event_ids(
    request: DemoRequest, registry: StoreRegistry, salt: bytes, received_at: datetime
) -> tuple[str, list[str]]:
    store = feeds.authenticate(request.headers.get("authorization"), registry)
    if request.topic == "touchpoints":
        touchpoints = feeds.parse_touchpoints(request.body, received_at)
        records = feeds.touchpoint_records(store, touchpoints, salt, received_at)
        return feeds.TOUCHPOINT_TOPIC.name, [r["envelope"]["event_id"] for r in records]
    links = feeds.parse_campaign_links(request.body, received_at)
    records = feeds.campaign_link_records(store, links, received_at)
    return feeds.CAMPAIGN_LINK_TOPIC.name, [r["envelope"]["event_id"] for r in records]
