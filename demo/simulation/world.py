"""The simulated world: the demo stores, what they sell and who buys it, the shared state of one
day (generators, ids, what has been sent, what is due later) and the stock it draws down.

The story that walks the day is in ``story.py``; each platform's webhooks are in its own module.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Protocol

from demo.ad_platforms import demo_connections
from demo.hydration import platform_connections
from revloop.crypto import Secret
from revloop.stores import SettingsVersion, Store, StoreRegistry, api_key_digest

_RUN_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)
CENT: Final = Decimal("0.01")


# --- the demo stores ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSpec:
    store_id: str
    platform: str
    identity: str
    """As the platform names the store: shop domain, home URL (with its slash), producer."""
    currency: str
    name: str
    plan: str = "attributed_incremental"
    """The billing plan of its contract (docs/ledger.md): one store on each."""


STORE_SPECS: Final = (
    StoreSpec(
        "demo-shopify",
        "shopify",
        "northwind-demo.myshopify.com",
        "USD",
        "Northwind Outfitters",
        "roas_profit_share",
    ),
    StoreSpec(
        "demo-woo",
        "woocommerce",
        "https://alpenglow-demo.example.org/",
        "EUR",
        "Alpenglow Coffee",
        "baseline_uplift",
    ),
    StoreSpec("demo-bigcommerce", "bigcommerce", "stores/h4rb0r7d", "USD", "Harbor Home Goods"),
)
CONTRACTS_FROM: Final = datetime(2026, 1, 1, tzinfo=UTC)
"""When the demo stores' contracts took effect (a settings version from then on)."""


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
    """The registry ingest needs for these stores: secrets, currencies, one API key each; their
    ad accounts, and BigCommerce's own API (for the hydrator), on the demo's emulators."""
    return StoreRegistry(
        Store(
            store_id=s.store_id,
            platform=s.platform,
            identity=s.spec.identity,
            secrets=(Secret(s.secret),),
            api_key_hashes=(api_key_digest(s.api_key),),
            currency=s.spec.currency,
            settings=(SettingsVersion(CONTRACTS_FROM, {"billing_plan": s.spec.plan}),),
            connections=(
                *demo_connections(number),
                *platform_connections(s.platform, s.spec.identity),
            ),
        )
        for number, s in enumerate(stores)
    )


# --- what is sent ------------------------------------------------------------------------------


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
    product_id: str
    variant_id: str | None
    """The platform's variant id; None for a product of one variant (its stock is the
    product's: its ads pause and resume as the product's)."""


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def compact_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# --- what the stores sell, and to whom ---------------------------------------------------------


@dataclass(frozen=True)
class VariantSpec:
    title: str | None
    sku: str
    price: str
    stock: int


@dataclass(frozen=True)
class ProductSpec:
    title: str
    handle: str
    category: str
    tags: tuple[str, ...]
    variants: tuple[VariantSpec, ...]


def _v(title: str | None, sku: str, price: str, stock: int) -> VariantSpec:
    return VariantSpec(title, sku, price, stock)


CATALOGUES: Final[Mapping[str, tuple[ProductSpec, ...]]] = {
    "shopify": (
        ProductSpec(
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
        ProductSpec(
            "Alpine Wool Socks",
            "alpine-wool-socks",
            "Socks",
            ("wool",),
            (_v(None, "AWS-GRY-OS", "18.50", 12),),
        ),
        ProductSpec(
            "Summit Daypack 22L",
            "summit-daypack-22l",
            "Bags",
            ("hiking", "bags"),
            (_v("Slate", "SDP-SLT", "89.00", 4), _v("Moss", "SDP-MOS", "89.00", 6)),
        ),
    ),
    "woocommerce": (
        ProductSpec(
            "Trail Mug", "trail-mug", "Mugs", ("camp",), (_v(None, "TM-ENAMEL", "14.99", 6),)
        ),
        ProductSpec(
            "Merino Beanie",
            "merino-beanie",
            "Accessories",
            ("merino",),
            (_v(None, "MB-CHAR", "19.99", 4),),
        ),
        ProductSpec(
            "Espresso Blend 500 g",
            "espresso-blend-500g",
            "Coffee",
            ("coffee",),
            (_v(None, "EB-500", "16.90", 10),),
        ),
        ProductSpec(
            "Pour-Over Kettle",
            "pour-over-kettle",
            "Brewing",
            ("coffee",),
            (_v(None, "POK-STL", "49.00", 3),),
        ),
    ),
    "bigcommerce": (
        ProductSpec(
            "Linen Throw",
            "linen-throw",
            "Living",
            ("linen",),
            (_v("Sand", "LT-SND", "59.00", 4), _v("Slate", "LT-SLT", "59.00", 5)),
        ),
        ProductSpec(
            "Stoneware Bowl Set",
            "stoneware-bowl-set",
            "Kitchen",
            ("stoneware",),
            (_v(None, "SBS-4", "42.00", 5),),
        ),
        ProductSpec(
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


def email_of(first: str, last: str, index: int) -> str:
    domain = "example.com" if index % 2 == 0 else "example.org"
    return f"{first}.{last}@{domain}".lower()


# --- the day's products, customers and orders --------------------------------------------------


@dataclass
class Product:
    spec: ProductSpec
    product_id: int
    created_at: datetime
    variants: list[Variant] = field(default_factory=list)
    updated_at: datetime | None = None


@dataclass
class Variant:
    product: Product
    spec: VariantSpec
    variant_id: int
    item_id: int
    """Shopify's inventory item id; BigCommerce's SKU id (its stock is named by the variant id);
    WooCommerce's product id."""
    level: int

    @property
    def ids(self) -> tuple[str, str | None]:
        """(product id, variant id or None for a product of one variant), as events carry them."""
        single = len(self.product.variants) == 1
        return str(self.product.product_id), None if single else str(self.variant_id)

    @property
    def label(self) -> str:
        if self.spec.title:
            return f"{self.product.spec.title} ({self.spec.title})"
        return self.product.spec.title


@dataclass
class Customer:
    first: str
    last: str
    email: str
    customer_id: int
    created_at: datetime


@dataclass
class Line:
    line_id: int
    variant: Variant
    quantity: int


@dataclass
class Order:
    order_id: int
    number: int
    customer: Customer
    guest: bool
    lines: list[Line]
    placed_at: datetime
    arrival: dict[str, str] | None
    """utm_* parameters and click id of the ad click that brought the shopper, if any."""
    updated_at: datetime
    status: str = "processing"
    paid_at: datetime | None = None
    completed_at: datetime | None = None
    refunds: list[dict[str, Any]] = field(default_factory=list)


class Platform(Protocol):
    """A demo store as its platform runs it: the ids it gives out and the webhooks it sends
    when something happens (``shopify.py``, ``woocommerce.py``, ``bigcommerce.py``)."""

    def product_id(self) -> int: ...

    def variant_ids(self, product: Product) -> tuple[int, int]:
        """The variant's id and its item id (see :attr:`Variant.item_id`)."""
        ...

    def customer_id(self) -> int: ...

    def order_id(self) -> int: ...

    def line_id(self) -> int: ...

    def product_created(self, product: Product) -> None: ...

    def customer_created(self, customer: Customer) -> None: ...

    def order_placed(self, order: Order, index: int) -> None:
        """Sends the order's webhooks and draws its lines from stock (:meth:`Day.take`)."""
        ...

    def stock_changed(self, variant: Variant, at: datetime) -> None:
        """The platform's inventory webhook for the variant's new level."""
        ...

    def refunded(self, order: Order, at: datetime) -> None:
        """A unit of the order's first line refunded."""
        ...


# --- the state of one day ----------------------------------------------------------------------


class Ids:
    """Resource ids: ``base + run * 10_000 + n`` per kind, so a run never reuses an id of an
    earlier run (refund ids and BigCommerce hashes are how duplicates are recognised)."""

    def __init__(self, run: int) -> None:
        self._run = run
        self._next: Counter[str] = Counter()

    def next(self, kind: str, base: int = 0) -> int:
        self._next[kind] += 1
        return base + self._run * 10_000 + self._next[kind]


@dataclass
class Pending:
    due: int
    seq: int
    kind: str  # "restock", "refund", "complete", "retry"
    store: str
    subject: Any


class Day:
    """What the story and the platforms share: the random generators and ids they draw from,
    the requests sent so far, the stock moments, and the work due after a later order."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.seed = seed
        self.now = now.replace(microsecond=0)
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        # Delivery ids must differ between runs, the story must not: a second generator.
        self.tokens = random.Random(f"{seed}/{self.now.isoformat()}")  # noqa: S311
        self.ids = Ids(max(1, int((self.now - _RUN_EPOCH).total_seconds())))
        self.requests: list[DemoRequest] = []
        self.stock: list[StockMoment] = []
        self.pending: list[Pending] = []
        self.seq = 0
        self.sold_out_once: set[str] = set()

    def send(self, request: DemoRequest) -> None:
        self.requests.append(request)

    def schedule(self, due: int, kind: str, store: str, subject: Any) -> None:
        """Work to do before order ``due`` of the day (an index over every store's orders)."""
        self.seq += 1
        self.pending.append(Pending(due, self.seq, kind, store, subject))

    def take(self, store: DemoStore, order: Order, index: int) -> list[Variant]:
        """Draws the order's lines from stock; schedules restocks for what sold out."""
        changed = []
        for line in order.lines:
            variant = line.variant
            variant.level -= line.quantity
            assert variant.level >= 0, "orders only take what is on the shelf"
            changed.append(variant)
            if variant.level == 0:
                self.sold_out_once.add(store.platform)
                self.stock.append(
                    StockMoment(
                        store.store_id,
                        variant.label,
                        variant.spec.sku,
                        "sold_out",
                        order.placed_at,
                        0,
                        f"order #{order.number}",
                        *variant.ids,
                    )
                )
                self.schedule(index + self.rng.randint(2, 4), "restock", store.platform, variant)
        return changed
