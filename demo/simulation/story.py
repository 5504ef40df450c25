"""The day's story: stores set up, orders placed in turn, and the work they leave for later
(restocks, refunds, completions, retries), told through each platform's webhooks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from demo.simulation.bigcommerce import BackOffice, BigCommerceStore
from demo.simulation.marketing import AdTool
from demo.simulation.shopify import ShopifyStore
from demo.simulation.woocommerce import WooCommerceStore
from demo.simulation.world import (
    CATALOGUES,
    PEOPLE,
    STORE_SPECS,
    Customer,
    Day,
    DemoRequest,
    DemoStore,
    Line,
    Order,
    Pending,
    Platform,
    Product,
    StockMoment,
    Variant,
    email_of,
)

MIN_ORDERS: Final = 3
"""One order per store at least: every store has to sell something out."""
MAX_ORDERS: Final = 2000
"""Ids are ``run * 10_000 + n``; this keeps ``n`` below 10 000 for every kind of resource."""
_CUSTOMERS_PER_STORE: Final = 6


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
    seed: int,
    orders: int,
    *,
    stores: Sequence[DemoStore],
    now: datetime,
    bigcommerce: BackOffice | None = None,
) -> Simulation:
    """A day of trading that ends just before ``now`` (aware). ``stores`` holds one store per
    platform (see :data:`STORE_SPECS`); BigCommerce deliveries are signed for ``now``, since
    BigCommerce stamps each delivery when it sends it and ingest refuses stamps over 5 minutes
    old. ``bigcommerce`` gets the BigCommerce store's products, customers and orders as they
    change (its webhooks carry ids only: the hydrator reads them there); the story and the
    requests are the same with it or without."""
    if not MIN_ORDERS <= orders <= MAX_ORDERS:
        raise ValueError(f"orders must be between {MIN_ORDERS} and {MAX_ORDERS}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    by_platform = {s.platform: s for s in stores}
    if sorted(by_platform) != sorted(s.platform for s in STORE_SPECS) or len(stores) != 3:
        raise ValueError("expected exactly one store per platform")
    return _Story(seed, orders, by_platform, now.astimezone(UTC), bigcommerce).run()


class _Story:
    """Walks the day. ``stores`` keeps the caller's order: the end of the day goes through
    the stores in that order."""

    def __init__(
        self,
        seed: int,
        orders: int,
        stores: Mapping[str, DemoStore],
        now: datetime,
        bigcommerce: BackOffice | None = None,
    ) -> None:
        self.order_count = orders
        self.stores = stores
        self.day = Day(seed, now)
        self.woocommerce = WooCommerceStore(self.day, stores["woocommerce"])
        self.platforms: dict[str, Platform] = {
            "shopify": ShopifyStore(self.day, stores["shopify"]),
            "woocommerce": self.woocommerce,
            "bigcommerce": BigCommerceStore(self.day, stores["bigcommerce"], bigcommerce),
        }
        self.ad_tools = {p: AdTool(self.day, store) for p, store in stores.items()}
        self.products: dict[str, list[Product]] = {}
        self.customers: dict[str, list[Customer]] = {}
        self.placed: dict[str, list[Order]] = {p: [] for p in stores}
        self.refunded: Counter[str] = Counter()
        self.middle: dict[str, int] = {}

    # --- the timeline ---------------------------------------------------------------------

    def run(self) -> Simulation:
        rng = self.day.rng
        gaps = [rng.randint(300, 900) for _ in range(self.order_count)]
        setup = timedelta(minutes=45)
        tail = timedelta(minutes=30)
        start = self.day.now - setup - timedelta(seconds=sum(gaps)) - tail - timedelta(minutes=5)
        platforms = [s.platform for s in STORE_SPECS]
        for index, platform in enumerate(platforms):
            self._create_products(platform, start + timedelta(minutes=index * 3))
        for index, platform in enumerate(platforms):
            self._create_customers(platform, start + timedelta(minutes=15 + index * 3))
        for index, platform in enumerate(platforms):
            self.ad_tools[platform].link_campaigns(
                self.products[platform], start + timedelta(minutes=30 + index)
            )
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
        requests = self.day.requests
        return Simulation(
            seed=self.day.seed,
            start=start,
            end=max(r.at for r in requests),
            requests=tuple(requests),
            stock=tuple(self.day.stock),
            orders={p: len(o) for p, o in self.placed.items()},
            refunds=dict(self.refunded),
        )

    def _run_pending(self, index: int, after: datetime, before: datetime) -> None:
        day = self.day
        due = sorted((p for p in day.pending if p.due <= index), key=lambda p: (p.due, p.seq))
        if not due:
            return
        day.pending = [p for p in day.pending if p.due > index]
        step = (before - after) / (len(due) + 1)
        for n, item in enumerate(due, start=1):
            self._do(item, (after + step * n).replace(microsecond=0))

    def _finish(self, last_order: datetime, end: datetime) -> None:
        # Every store refunds something, and everything sold out comes back before the end.
        for platform, placed in self.placed.items():
            planned = any(p.kind == "refund" and p.store == platform for p in self.day.pending)
            if placed and not self.refunded[platform] and not planned:
                self.day.schedule(self.order_count, "refund", platform, placed[0])
        self._run_pending(self.order_count + 10, last_order, end)  # everything still due
        for platform in self.stores:
            self.ad_tools[platform].flush(end)

    def _do(self, item: Pending, at: datetime) -> None:
        if item.kind == "restock":
            self._restock(item.store, item.subject, at)
        elif item.kind == "refund":
            self._refund(item.store, item.subject, at)
        elif item.kind == "complete":
            self.woocommerce.completed(item.subject, at)  # only WooCommerce ships later
        else:
            original: DemoRequest = item.subject
            self.day.send(replace(original, at=at, retry=True))

    # --- setup ----------------------------------------------------------------------------

    def _create_products(self, platform: str, at: datetime) -> None:
        store = self.platforms[platform]
        products = []
        for n, spec in enumerate(CATALOGUES[platform]):
            created = at + timedelta(seconds=40 * n)
            product = Product(spec, store.product_id(), created)
            for variant_spec in spec.variants:
                variant_id, item_id = store.variant_ids(product)
                product.variants.append(
                    Variant(product, variant_spec, variant_id, item_id, variant_spec.stock)
                )
            products.append(product)
            store.product_created(product)
        self.products[platform] = products

    def _create_customers(self, platform: str, at: datetime) -> None:
        store = self.platforms[platform]
        people = self.day.rng.sample(range(len(PEOPLE)), _CUSTOMERS_PER_STORE)
        customers = []
        for n, person in enumerate(people):
            first, last = PEOPLE[person]
            created = at + timedelta(seconds=25 * n)
            customer = Customer(
                first, last, email_of(first, last, person), store.customer_id(), created
            )
            customers.append(customer)
            store.customer_created(customer)
        self.customers[platform] = customers

    # --- orders ---------------------------------------------------------------------------

    def _order(self, platform: str, index: int, at: datetime) -> None:
        rng = self.day.rng
        store = self.platforms[platform]
        in_stock = [v for p in self.products[platform] for v in p.variants if v.level > 0]
        if not in_stock:
            for variant in self._variants(platform):
                self._restock(platform, variant, at - timedelta(seconds=30))
            in_stock = self._variants(platform)
        guest = platform == "woocommerce" and rng.random() < 0.15
        if guest:
            person = rng.randrange(len(PEOPLE))
            first, last = PEOPLE[person]
            customer = Customer(first, last, email_of(first, last, person), 0, at)
        else:
            customer = rng.choice(self.customers[platform])
        chosen = rng.sample(in_stock, min(len(in_stock), rng.choice((1, 1, 1, 2, 2, 3))))
        lines = [(variant, min(variant.level, rng.choice((1, 1, 1, 2)))) for variant in chosen]
        # The store's middle order clears a variant's shelf if nothing has sold out there yet,
        # so that every store's story has a sell-out and a restock, however few orders it has.
        if index == self.middle[platform] and platform not in self.day.sold_out_once:
            lowest = min(in_stock, key=lambda v: (v.level, v.spec.sku))
            lines = [(v, q) for v, q in lines if v is not lowest] + [(lowest, lowest.level)]
        arrival = self.ad_tools[platform].touchpoints(customer, [v for v, _ in lines], at)
        order = Order(
            order_id=store.order_id(),
            number=1000 + len(self.placed[platform]) + 1,
            customer=customer,
            guest=guest,
            lines=[Line(store.line_id(), variant, quantity) for variant, quantity in lines],
            placed_at=at,
            arrival=arrival,
            updated_at=at,
        )
        self.placed[platform].append(order)
        store.order_placed(order, index)
        if rng.random() < 0.15:
            self.day.schedule(index + rng.randint(2, 5), "refund", platform, order)

    def _variants(self, platform: str) -> list[Variant]:
        return [v for p in self.products[platform] for v in p.variants]

    def _restock(self, platform: str, variant: Variant, at: datetime) -> None:
        if variant.level > 0:
            return
        variant.level = variant.spec.stock + self.day.rng.randint(3, 8)
        self.day.stock.append(
            StockMoment(
                self.stores[platform].store_id,
                variant.label,
                variant.spec.sku,
                "restocked",
                at,
                variant.level,
                "restock",
                *variant.ids,
            )
        )
        self.platforms[platform].stock_changed(variant, at)

    def _refund(self, platform: str, order: Order, at: datetime) -> None:
        self.refunded[platform] += 1
        self.platforms[platform].refunded(order, at)
