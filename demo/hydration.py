"""The demo's store platform API: a BigCommerce emulator on loopback that holds demo-bigcommerce's
catalogue, customers and orders as the simulation made them, `revloop connect hydrate` reading
it for the store's thin webhooks, and what came of that (docs/demo.md, "Hydration").

BigCommerce's webhooks carry ids only; the normalizer turns each into a hydration request, and
the hydrator reads the resource from the store's API and publishes the complete events (source
``hydration``, caused by the webhook's raw event). Their ids name the resource's version, which
the simulation cannot foresee, so they are counted by cause: every hydration request of the run
must be answered, and every order the store holds must arrive with its total and its lines.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Set
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from emulators import BigCommerceEmulator, serve
from revloop.crypto import Secret
from revloop.stores import Connection

# Made anew by each process, as the ad platforms' tokens are: the registry and the emulator
# hold it, nothing prints it.
BIGCOMMERCE_TOKEN: Final = secrets.token_urlsafe(16)
REQUESTS_PER_WINDOW: Final = 450
"""BigCommerce's quota for a Pro plan store: 450 requests per 30 s window."""
WINDOW_MS: Final = 30_000
HYDRATOR_GROUP: Final = "revloop.demo.hydrate"
"""The demo's hydrator has a group of its own: the production hydrator's requests are other
stores', which the demo's registry could only dead-letter."""
REQUESTS: Final = "ingest.hydration-requests.v1"
HYDRATED_TOPICS: Final = (
    "commerce.orders.v1",
    "commerce.products.v1",
    "commerce.inventory-levels.v1",
    "commerce.customers.v1",
)
EXAMPLES: Final = 5
"""Orders shown in the summary."""


def store_hash(identity: str) -> str:
    """The store hash of a BigCommerce producer (``stores/h4rb0r7d`` → ``h4rb0r7d``)."""
    return identity.removeprefix("stores/")


def platform_connections(platform: str, identity: str) -> tuple[Connection, ...]:
    """A demo store's connection to its own platform's API: BigCommerce's, on the emulator (the
    other demo stores send complete webhooks and need none)."""
    if platform != "bigcommerce":
        return ()
    token = Secret(json.dumps({"token": BIGCOMMERCE_TOKEN}).encode())
    return (Connection("bigcommerce", store_hash(identity), token),)


@dataclass
class StorePlatform:
    bigcommerce: BigCommerceEmulator
    env: dict[str, str]


@contextmanager
def store_platform(identity: str, currency: str, name: str) -> Iterator[StorePlatform]:
    """The BigCommerce store ``identity`` on an emulator served on loopback, and what `revloop
    connect hydrate` needs to read it."""
    emulator = BigCommerceEmulator(
        store_hash(identity),
        BIGCOMMERCE_TOKEN,
        requests_per_window=REQUESTS_PER_WINDOW,
        window_ms=WINDOW_MS,
        name=name,
        currency=currency,
    )
    with serve(emulator.app) as served:
        env = {
            "REVLOOP_BIGCOMMERCE_API_URL": served.base_url,
            "REVLOOP_HYDRATOR_GROUP_ID": HYDRATOR_GROUP,
        }
        yield StorePlatform(emulator, env)


# --- what came of it -------------------------------------------------------------------------


@dataclass(frozen=True)
class HydratedOrder:
    order_id: str
    at: str
    """The order's version as read (its last change), ISO."""
    status: str
    total_minor: int
    currency: str
    lines: list[str]
    """``2 x Linen Throw (LT-SND)``."""
    refunded_minor: int


@dataclass
class Hydration:
    store_id: str
    requests: int
    """This run's hydration requests (one per distinct BigCommerce webhook)."""
    answered: int
    """Those that hydrated events name as their cause."""
    events: dict[str, int]
    """Topic → distinct hydrated events of the run."""
    calls: int
    """Calls the store's API (the emulator) got."""
    violations: int
    """Calls over its rate limit."""
    orders_held: int
    """Orders the store holds (the emulator)."""
    orders: list[HydratedOrder] = field(default_factory=list)
    """Every order that arrived complete, in order id order."""


def hydrated(value: Mapping[str, Any], raw_ids: Set[str]) -> bool:
    """Whether an event is a hydration of one of this run's deliveries."""
    envelope = value.get("envelope") or {}
    return envelope.get("source") == "hydration" and bool(
        set(envelope.get("caused_by") or ()) & raw_ids
    )


def hydration_outcome(
    store_id: str,
    emulator: BigCommerceEmulator,
    records: Iterable[tuple[str, dict[str, Any]]],
    raw_ids: Set[str],
) -> tuple[Hydration, list[str]]:
    """What the hydrator made of the run's requests, and what is wrong: a request nothing
    answered, or an order the store holds that did not arrive whole (its created event, with the
    store's total and one line per order product) or without its refunds."""
    requests: set[str] = set()
    events: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in HYDRATED_TOPICS}
    causes: set[str] = set()
    for name, value in records:
        if name == REQUESTS and value["envelope"]["store_id"] == store_id:
            if value["raw_event_id"] in raw_ids:
                requests.add(value["raw_event_id"])
        elif name in events and hydrated(value, raw_ids):
            events[name][value["envelope"]["event_id"]] = value
            causes.update(value["envelope"]["caused_by"])
    orders = list(events["commerce.orders.v1"].values())
    created = {o["order_id"]: o for o in orders if o["kind"] == "created"}
    refunds: dict[str, set[str]] = {}
    for order in orders:
        if order["kind"] == "refunded" and order["refund"]:
            refunds.setdefault(order["order_id"], set()).add(order["envelope"]["event_id"])
    problems = []
    unanswered = requests - causes
    if unanswered:
        problems.append(f"{store_id}: {len(unanswered)} hydration requests were not answered")
    held = _held_orders(emulator)
    complete: list[HydratedOrder] = []
    for order_id, (total_minor, lines, refund_count) in sorted(held.items()):
        event = created.get(order_id)
        if event is None:
            problems.append(f"{store_id}: order {order_id} was not hydrated")
            continue
        got = event["total"]["amount_minor"]
        items = event["line_items"]
        if got != total_minor or len(items) != lines:
            problems.append(
                f"{store_id}: order {order_id} arrived with a total of {got} and {len(items)} "
                f"lines; the store has {total_minor} and {lines}"
            )
            continue
        if len(refunds.get(order_id, ())) != refund_count:
            problems.append(
                f"{store_id}: order {order_id} has {refund_count} refunds, "
                f"{len(refunds.get(order_id, ()))} arrived"
            )
        refunded = sum(
            events["commerce.orders.v1"][i]["refund"]["amount"]["amount_minor"]
            for i in refunds.get(order_id, ())
        )
        complete.append(
            HydratedOrder(
                order_id=order_id,
                at=event["envelope"]["occurred_at"].isoformat(),
                status=event["fulfillment_status"] or "",
                total_minor=got,
                currency=event["currency"],
                lines=[f"{i['quantity']} x {i['title']} ({i['sku']})" for i in items],
                refunded_minor=refunded,
            )
        )
    outcome = Hydration(
        store_id=store_id,
        requests=len(requests),
        answered=len(requests & causes),
        events={name: len(found) for name, found in events.items()},
        calls=emulator.calls.total,
        violations=emulator.calls.violations,
        orders_held=len(held),
        orders=complete,
    )
    if emulator.calls.violations:
        problems.append("the hydrator went over the BigCommerce API's rate limit")
    return outcome, problems


def _held_orders(emulator: BigCommerceEmulator) -> dict[str, tuple[int, int, int]]:
    """Order id → (total in cents, order products, refunds), as the store holds them."""
    return {
        str(order_id): (
            int(Decimal(str(order["total_inc_tax"])).scaleb(2)),
            len(emulator.order_products.get(order_id, ())),
            len(emulator.refunds.get(order_id, ())),
        )
        for order_id, order in emulator.orders.items()
    }
