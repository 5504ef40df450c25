"""`revloop connect hydrate`: thin webhooks made whole (docs/connectors.md, "Hydration").

BigCommerce's webhooks carry ids only, and WooCommerce's variable products name their
variations without them; the normalizer turns both into ``ingest.hydration-requests.v1``. The
hydrator reads each request, fetches the resource from the store's platform API and publishes
the canonical events a full webhook would have made, with the same event ids: the platform
module derives them from the resource's version (``platforms.events.Version``), so a request for
the same version, a backfill or a reconciliation read of it make no second event.

It runs in the exactly-once loop (:mod:`revloop.exactly_once`): the events of a batch commit
with its offsets, so a process killed mid-batch publishes each event once. A request the store
cannot answer (no connection, a platform error after the client's retries) goes to
``ops.dead-letters.v1`` with the store, the call and why, and the others flow on. A resource
deleted since the webhook is skipped (its deletion arrives as its own webhook).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer
from confluent_kafka import Message, TopicPartition
from prometheus_client import Counter

from connectors.dead_letters import dead_letter
from connectors.http import ApiError
from connectors.metrics import ConnectorMetrics
from connectors.multichannel import journal_of
from connectors.store_apis.base import Resource, StoreApi
from connectors.store_apis.connect import NotConnected, store_api
from connectors.store_apis.woocommerce import WooCommerceApi
from platforms import bigcommerce, woocommerce
from platforms.events import Emit, NormalizeContext, RawDelivery
from platforms.payloads import NotNormalizable
from revloop.crypto import CryptoError, SecretBox
from revloop.exactly_once import ExactlyOnceLoop, LoopOptions, Output
from revloop.kafka import serde_for
from revloop.metrics import serve_metrics
from revloop.settings import Settings, get_settings
from revloop.stores import LiveCurrencies, LiveStoreRegistry
from revloop.watchdog import Watchdog, stop_on_signals
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import TOPICS, topic, topic_for_record

log = logging.getLogger(__name__)

REQUESTS = "ingest.hydration-requests.v1"
PRODUCER = "connectors.hydrator"

Reader = Callable[[StoreApi, Mapping[str, Any], RawDelivery, NormalizeContext], "list[Emit]"]


def _bigcommerce(
    api: StoreApi, request: Mapping[str, Any], raw: RawDelivery, context: NormalizeContext
) -> list[Emit]:
    resource, resource_id, scope = request["resource"], request["resource_id"], request["scope"]
    if "/inventory/" in scope:
        return _bigcommerce_stock(api, request, raw, context)
    reads = {"order": Resource.ORDERS, "product": Resource.PRODUCTS, "customer": Resource.CUSTOMERS}
    if resource not in reads:
        raise NotNormalizable("unknown_resource", f"no hydration for {resource!r}")
    record = api.get(reads[resource], resource_id)
    if record is None:
        return []
    return bigcommerce.resource_events(raw, context, resource, record, scope=scope)


def _bigcommerce_stock(
    api: StoreApi, request: Mapping[str, Any], raw: RawDelivery, context: NormalizeContext
) -> list[Emit]:
    """A stock webhook: the level it announces (absolute), or the levels read now (relative).
    A SKU webhook names its variant; a product's names the product, whose variants are read."""
    details: Mapping[str, str] = request["details"]
    product_id = details.get("inventory.product_id") or request["resource_id"]
    if request["resource"] == "sku" and details.get("inventory.variant_id"):
        variants = [details["inventory.variant_id"]]
    else:
        product = api.get(Resource.PRODUCTS, product_id)
        if product is None:
            return []
        variants = [str(v["id"]) for v in product.get("variants") or []]
    occurred_at = request["envelope"]["occurred_at"]
    if len(variants) == 1:
        announced = bigcommerce.announced_level(
            raw, context, variants[0], product_id, details, occurred_at
        )
        if announced is not None:
            return [announced]
    events: list[Emit] = []
    for variant_id in variants:
        level = api.get(Resource.INVENTORY_LEVELS, variant_id)
        if level is not None:
            events += bigcommerce.resource_events(
                raw, context, "inventory", level, scope=request["scope"]
            )
    return events


def _woocommerce(
    api: StoreApi, request: Mapping[str, Any], raw: RawDelivery, context: NormalizeContext
) -> list[Emit]:
    if request["resource"] != "product_variations" or not isinstance(api, WooCommerceApi):
        raise NotNormalizable("unknown_resource", f"no hydration for {request['resource']!r}")
    product = api.get(Resource.PRODUCTS, request["resource_id"])
    variations = api.variations(request["resource_id"]) if product is not None else None
    if product is None or variations is None:
        return []
    return woocommerce.variations_events(raw, context, product, variations)


READERS: Mapping[str, Reader] = {"bigcommerce": _bigcommerce, "woocommerce": _woocommerce}
"""Per platform: what a hydration request reads and the events the read makes."""


def requesting_delivery(request: Mapping[str, Any]) -> RawDelivery:
    """The raw delivery a request came from, as far as the events derived from it need: they
    name it as their cause, and its store, platform and times."""
    envelope = request["envelope"]
    return RawDelivery(
        event_id=request["raw_event_id"],
        store_id=envelope["store_id"],
        platform=envelope["platform"],
        topic=request["scope"],
        occurred_at=envelope["occurred_at"],
        received_at=envelope["received_at"],
        headers={},
        body=b"",
    )


class HydratorMetrics(ConnectorMetrics):
    """The connectors' counters (``connector="hydrate"``) and the hydrator's own."""

    def __init__(self) -> None:
        super().__init__("hydrate")
        self.requests = Counter(
            "revloop_hydrator_requests",
            "Hydration requests by platform and outcome (hydrated, gone, dead_lettered).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.platform_calls = Counter(
            "revloop_hydrator_platform_calls",
            "Platform API calls made, retries included.",
            ["platform"],
            registry=self.registry,
        )


@dataclass
class Hydrator:
    """The :class:`~revloop.exactly_once.Processor` over hydration requests."""

    settings: Settings
    stores: LiveStoreRegistry
    context: NormalizeContext
    serde: AvroSerde
    instance_id: str = field(default_factory=socket.gethostname)
    watchdog: Watchdog = field(default_factory=lambda: Watchdog("hydrate"))
    metrics: HydratorMetrics = field(default_factory=HydratorMetrics)
    _apis: dict[str, tuple[object, StoreApi]] = field(default_factory=dict, init=False)

    @property
    def input_topic(self) -> str:
        return self.settings.topic_name(topic(REQUESTS))

    def loop_options(self) -> LoopOptions:
        return LoopOptions(
            group_id=self.settings.hydrator_group_id,
            instance_id=self.instance_id,
            batch_size=self.settings.hydrator_batch_size,
            batch_wait_seconds=0.2,
            session_timeout_ms=self.settings.normalizer_session_timeout_ms,
            max_poll_interval_ms=self.settings.stream_max_poll_interval_ms,
        )

    def run(self, stop: threading.Event) -> None:
        try:
            ExactlyOnceLoop(self.settings, self, self.loop_options(), self.watchdog).run(stop)
        finally:
            for _, api in self._apis.values():
                api.close()

    def prepare(self) -> None:
        """Resolve every schema the hydrator writes now: a registry that is down stops it at
        start rather than dead-lettering requests."""
        for catalogued in TOPICS:
            if PRODUCER in catalogued.producers:
                for record in catalogued.values:
                    self.serde.writer(record)

    def restore(self, committed: Sequence[TopicPartition]) -> None:
        """Stateless: nothing to rebuild."""

    def forget(self, partitions: Sequence[int]) -> None:
        """Stateless: nothing to drop."""

    def batch_done(self) -> None:
        """No gauges to update."""

    def process(self, message: Message) -> list[Output]:
        try:
            request = self.serde.decode(message.value() or b"").value
        except SerdeError as exc:
            log.error("offset %s of %s does not decode: %s", message.offset(), REQUESTS, exc)
            return []
        envelope = request["envelope"]
        platform = envelope["platform"]
        try:
            events = self._hydrate(request)
        except NotConnected as exc:
            return [self._dead(message, envelope, "not_connected", str(exc))]
        except ApiError as exc:
            return [self._dead(message, envelope, "platform_call_failed", str(exc))]
        except NotNormalizable as exc:
            return [self._dead(message, envelope, exc.reason, str(exc)[:500])]
        except (LookupError, TypeError, ValueError, ArithmeticError) as exc:
            # A resource shape nobody expected: only the type is kept (the message could
            # quote personal data, and dead letters outlive it).
            return [self._dead(message, envelope, "unexpected_shape", type(exc).__name__)]
        self.metrics.requests.labels(platform, "hydrated" if events else "gone").inc()
        return [self._encode(event) for event in events]

    def _hydrate(self, request: Mapping[str, Any]) -> list[Emit]:
        envelope = request["envelope"]
        reader = READERS.get(envelope["platform"])
        if reader is None:
            raise NotNormalizable("unknown_platform", f"no hydration for {envelope['platform']}")
        api = self._api(envelope["store_id"])
        before = getattr(api, "calls", 0)
        try:
            return reader(api, request, requesting_delivery(request), self.context)
        finally:
            calls = getattr(api, "calls", 0) - before
            self.metrics.platform_calls.labels(envelope["platform"]).inc(max(calls, 0))
            self.metrics.tried(envelope["platform"], journal_of(api))

    def _api(self, store_id: str) -> StoreApi:
        """The store's client, made again when its registry entry changed (new credentials)."""
        self.stores.refresh()
        store = self.stores.get(store_id)
        if store is None:
            raise NotConnected(f"store {store_id} is not registered")
        cached = self._apis.get(store_id)
        if cached is not None and cached[0] is store:
            return cached[1]
        if cached is not None:
            cached[1].close()
        api = store_api(self.settings, store_id, store.connection(store.platform))
        client = getattr(api, "client", None)
        if client is not None:
            client.journal = []  # each try recorded, for revloop_connector_calls_total
        self._apis[store_id] = (store, api)
        return api

    def _dead(self, message: Message, envelope: Mapping[str, Any], kind: str, why: str) -> Output:
        self.metrics.requests.labels(envelope["platform"], "dead_lettered").inc()
        self.metrics.dead_lettered()
        log.warning("hydration of %s failed: %s", envelope["event_id"], why)
        name, key, value = dead_letter(
            self.settings,
            self.serde,
            message,
            envelope,
            stage="connect.hydrate",
            error_type=kind,
            why=why,
        )
        return Output(name, key, value)

    def _encode(self, event: Emit) -> Output:
        catalogued = topic_for_record(event.record)
        return Output(
            self.settings.topic_name(catalogued),
            catalogued.message_key(event.value),
            self.serde.encode(event.record, event.value),
        )


def build_hydrator(settings: Settings) -> Hydrator:
    return Hydrator(
        settings=settings,
        stores=LiveStoreRegistry(settings.stores_file, SecretBox.from_settings(settings)),
        context=NormalizeContext(
            customer_salt=settings.customer_salt,
            store_currency=LiveCurrencies(settings.stores_file, settings.stores_check_seconds),
            source="hydration",
        ),
        serde=serde_for(settings, "connectors.hydrator"),
    )


def hydrate_command(
    metrics_port: int | None = typer.Option(
        None,
        help="Serve Prometheus metrics on this port, 0 for none "
        "(default: REVLOOP_HYDRATOR_METRICS_PORT, 9404).",
    ),
    instance_id: str | None = typer.Option(
        None,
        help="Stable id of this instance (default: the host name); a restart with the same id "
        "aborts what the previous run left open.",
    ),
) -> None:
    """Complete thin webhooks (BigCommerce's, WooCommerce's variable products) from the store
    platform APIs and publish the canonical events, until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    stop = threading.Event()
    watchdog = Watchdog("hydrate")
    stop_on_signals(stop, watchdog, settings.shutdown_seconds)
    try:
        hydrator = build_hydrator(settings)
    except (ValueError, CryptoError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    hydrator.watchdog = watchdog
    if instance_id:
        hydrator.instance_id = instance_id
    port = settings.hydrator_metrics_port if metrics_port is None else metrics_port
    serve_metrics(hydrator.metrics.registry, port, settings.metrics_host, process="connect-hydrate")
    hydrator.run(stop)
