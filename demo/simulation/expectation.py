"""What the pipeline should make of a simulation's requests, worked out with the same pure
functions as ingest and the normalizer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from demo.simulation.world import DemoRequest
from ingest import feeds
from platforms import bigcommerce, shopify, woocommerce
from platforms.dispatch import normalize_delivery
from platforms.events import NormalizeContext, RawDelivery
from platforms.webhooks import Rejected
from revloop.stores import StoreRegistry
from schemas.topics import topic_for_record
from streams.normalizer.dedupe import SeenEvents, first_sightings


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
