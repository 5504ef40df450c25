"""The topic catalogue: the one place that says which topics exist and what they carry.

Each entry gives the topic's name, message key, value schemas, partitions, cleanup policy,
retention, and who produces and consumes it. ``revloop topics ensure`` makes the broker match it;
docs/architecture.md renders it for people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = -1


class Cleanup(StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class Topic:
    name: str
    key: tuple[str, ...]
    """Value fields (dotted paths) joined with '/' to make the UTF-8 message key. Events of one
    entity share a key, hence a partition, hence an order."""
    values: tuple[str, ...]
    """Avro record full names this topic may carry."""
    partitions: int
    cleanup: Cleanup
    retention_ms: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    description: str
    extra_config: Mapping[str, str] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, str]:
        """Topic configs revloop owns; the broker keeps its own value for anything else."""
        config = {"cleanup.policy": self.cleanup.value, "retention.ms": str(self.retention_ms)}
        if self.cleanup is Cleanup.COMPACT:
            # Keep a few minutes of history so consumers that are slightly behind see every change.
            config["min.compaction.lag.ms"] = str(5 * 60 * 1000)
        config.update(self.extra_config)
        return config

    def message_key(self, value: Mapping[str, Any]) -> bytes:
        return "/".join(_key_part(_lookup(value, path)) for path in self._key_paths).encode()

    @cached_property
    def _key_paths(self) -> tuple[tuple[str, ...], ...]:
        # Split once: every produced record needs its key.
        return tuple(tuple(dotted.split(".")) for dotted in self.key)


def _lookup(value: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = value
    for part in path:
        current = current[part]
    return current


def _key_part(part: Any) -> str:
    # Shop-wide events (e.g. a shop redaction) have no entity id; '*' keeps them keyed per store.
    return "*" if part is None else str(part)


E = "dev.revloop.events."

TOPICS: tuple[Topic, ...] = (
    Topic(
        name="raw.webhooks.v1",
        key=("envelope.store_id",),
        values=(E + "RawWebhook",),
        partitions=6,
        cleanup=Cleanup.DELETE,
        retention_ms=30 * DAY_MS,
        producers=("ingest",),
        consumers=("streams.normalizer", "replay.redrive"),
        description="Every verified delivery, body bytes as signed. Bodies hold PII, so retention "
        "is 30 days (inside Shopify's redaction deadline); canonical topics keep the history.",
        # Room for a 1 MiB body plus its envelope and headers.
        extra_config={"max.message.bytes": str(2 * 1024 * 1024)},
    ),
    Topic(
        name="commerce.orders.v1",
        key=("envelope.store_id", "order_id"),
        values=(E + "OrderEvent",),
        partitions=6,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=(
            "streams.normalizer",
            "connectors.hydrator",
            "connectors.backfill",
            "connectors.reconcile",
        ),
        consumers=("streams.attribution", "streams.lifecycle", "sinks.postgres"),
        description="Order lifecycle: created, updated, paid, cancelled, fulfilled, refunded.",
    ),
    Topic(
        name="commerce.products.v1",
        key=("envelope.store_id", "product_id"),
        values=(E + "ProductUpsert", E + "ProductDelete"),
        partitions=3,
        cleanup=Cleanup.COMPACT,
        retention_ms=FOREVER,
        producers=(
            "streams.normalizer",
            "connectors.hydrator",
            "connectors.backfill",
            "connectors.reconcile",
        ),
        consumers=("streams.circuit_breaker", "streams.attribution", "sinks.postgres"),
        description="Latest state of each product and its variants; a delete is the last word.",
    ),
    Topic(
        name="commerce.inventory-levels.v1",
        key=("envelope.store_id", "inventory_item_id"),
        values=(E + "InventoryLevel",),
        partitions=6,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=(
            "streams.normalizer",
            "connectors.hydrator",
            "connectors.backfill",
            "connectors.reconcile",
        ),
        consumers=("streams.inventory", "sinks.postgres"),
        description="Stock changes per item and location. Keyed by item (not location) so one "
        "worker sees every location of an item and can total them.",
    ),
    Topic(
        name="commerce.customers.v1",
        key=("envelope.store_id", "customer_id"),
        values=(E + "CustomerUpsert", E + "CustomerRedact"),
        partitions=3,
        cleanup=Cleanup.COMPACT,
        retention_ms=FOREVER,
        producers=(
            "streams.normalizer",
            "connectors.hydrator",
            "connectors.backfill",
            "connectors.reconcile",
        ),
        consumers=("streams.lifecycle", "sinks.postgres"),
        description="Latest customer state. The only topic an email may appear on: compaction "
        "lets a CustomerRedact replace it.",
    ),
    Topic(
        name="marketing.touchpoints.v1",
        key=("envelope.store_id", "customer_key"),
        values=(E + "Touchpoint",),
        partitions=6,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("ingest.api",),
        consumers=("streams.attribution", "sinks.postgres"),
        description="Ad clicks, views, engaged views and content views, keyed by hashed customer.",
    ),
    Topic(
        name="marketing.campaign-product-links.v1",
        key=("envelope.store_id", "campaign_id", "product_id"),
        values=(E + "CampaignProductLink",),
        partitions=3,
        cleanup=Cleanup.COMPACT,
        retention_ms=FOREVER,
        producers=("ingest.api",),
        consumers=("streams.circuit_breaker", "streams.attribution"),
        description="Which campaign promotes which product; latest state per pair.",
    ),
    Topic(
        name="marketing.campaign-spend.v1",
        key=("envelope.store_id", "channel", "campaign_id"),
        values=(E + "CampaignSpend",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("ingest.api",),
        consumers=("streams.ledger", "sinks.postgres"),
        description="Each campaign's spend per day as the store's feed reports it; the newest "
        "report of a day restates it. Billing's ROAS plan counts it.",
    ),
    Topic(
        name="ingest.hydration-requests.v1",
        key=("envelope.store_id", "resource", "resource_id"),
        values=(E + "HydrationRequest",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=14 * DAY_MS,
        producers=("streams.normalizer",),
        consumers=("connectors.hydrator",),
        description="Thin deliveries (BigCommerce sends ids only) waiting for a connector to "
        "fetch the full resource.",
    ),
    Topic(
        name="actions.circuit-breaker.v1",
        key=("envelope.store_id", "product_id"),
        values=(E + "CircuitBreakerAction",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("streams.circuit_breaker",),
        consumers=("connectors.ad_platforms", "sinks.postgres"),
        description="Pause and resume commands for the ads of a product.",
    ),
    Topic(
        name="alerts.low-stock.v1",
        key=("envelope.store_id", "product_id"),
        values=(E + "LowStockWarning",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=90 * DAY_MS,
        producers=("streams.circuit_breaker",),
        consumers=("connectors.notifications", "sinks.postgres"),
        description="Products whose stock fell below their store's low-stock threshold: "
        "warnings for merchants, apart from the ad commands so no executor mistakes one.",
    ),
    Topic(
        name="analytics.attribution-scores.v1",
        key=("envelope.store_id", "order_id"),
        values=(E + "AttributionScore",),
        partitions=6,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("streams.attribution",),
        consumers=("sinks.postgres", "sinks.ledger"),
        description="Each order's attribution confidence, incremental revenue and credit split.",
    ),
    Topic(
        name="lifecycle.triggers.v1",
        key=("envelope.store_id", "customer_id"),
        values=(E + "LifecycleTrigger",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("streams.lifecycle",),
        consumers=("connectors.messaging", "sinks.postgres"),
        description="Customer lifecycle flows to start.",
    ),
    Topic(
        name="billing.ledger-entries.v1",
        key=("envelope.store_id",),
        values=(E + "LedgerEntry",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("streams.ledger",),
        consumers=("sinks.postgres",),
        description="Immutable double-entry postings. Keyed by store so a store's ledger is one "
        "ordered sequence (its hash chain depends on that order).",
    ),
    Topic(
        name="ops.connector-calls.v1",
        key=("envelope.store_id", "action_id"),
        values=(E + "ConnectorCall",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("connectors.ad_platforms",),
        consumers=("sinks.postgres", "ops"),
        description="Every call the ad executor made for a breaker action, and its answer: "
        "ad platform status changes and the merchant's notifications.",
    ),
    Topic(
        name="ops.connector-checkpoints.v1",
        key=("envelope.store_id", "job", "resource"),
        values=(E + "ConnectorCheckpoint",),
        partitions=1,
        cleanup=Cleanup.COMPACT,
        retention_ms=FOREVER,
        producers=("connectors.backfill", "connectors.reconcile"),
        consumers=("connectors.backfill", "connectors.reconcile"),
        description="How far each backfill and reconciliation has read, per store and "
        "resource; committed with the events of each page, so a killed job resumes exactly.",
    ),
    Topic(
        name="ops.dead-letters.v1",
        key=("envelope.store_id", "envelope.event_id"),
        values=(E + "DeadLetter",),
        partitions=3,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("streams.normalizer", "streams", "sinks"),
        consumers=("dlq.redrive", "ops"),
        description="What could not be processed: the reason and a reference to the original "
        "record (topic, partition, offset, event id), never a copy of it, since letters are kept "
        "forever. `revloop dlq redrive` reads the original from its topic.",
    ),
    Topic(
        name="ops.dead-letter-redrives.v1",
        key=("letter_id",),
        values=(E + "DeadLetterRedrive",),
        partitions=1,
        cleanup=Cleanup.DELETE,
        retention_ms=FOREVER,
        producers=("dlq.redrive",),
        consumers=("dlq.redrive", "ops"),
        description="A marker per redrive of a dead letter, written in the transaction that "
        "redrove it, so a letter goes back through the pipeline once; the newest counts (a "
        "connector letter written again after its redrive is redriven again). A few bytes "
        "per letter, kept forever.",
    ),
)

_BY_NAME = {t.name: t for t in TOPICS}


def prefixed(prefix: str, topics: Sequence[Topic] = TOPICS) -> tuple[Topic, ...]:
    """The catalogue under another name, for an environment sharing a cluster
    (``REVLOOP_TOPIC_PREFIX``), a benchmark run, or a test that owns its topics."""
    return tuple(replace(t, name=prefix + t.name) for t in topics)


def records_produced_by(*apps: str, topics: Sequence[Topic] = TOPICS) -> tuple[str, ...]:
    """Every record these apps write, as the catalogue names its producers."""
    names = {record for t in topics if set(apps) & set(t.producers) for record in t.values}
    return tuple(sorted(names))


def topic(name: str) -> Topic:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the topic catalogue") from None


def topic_for_record(record_name: str) -> Topic:
    """The topic a record type is published to (each record type has exactly one)."""
    matches = [t for t in TOPICS if record_name in t.values]
    if len(matches) != 1:
        raise KeyError(f"{record_name} is carried by {len(matches)} topics, expected 1")
    return matches[0]


@dataclass(frozen=True)
class ExistingTopic:
    name: str
    partitions: int
    config: Mapping[str, str]
    """Every config's value in force, whatever set it."""
    overrides: frozenset[str] = frozenset()
    """The configs set on the topic itself (the rest come from the broker or Kafka's defaults)."""


@dataclass(frozen=True)
class TopicChange:
    topic: str
    action: str  # "create", "add-partitions" or "alter-config"
    detail: str
    partitions: int | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    reset: tuple[str, ...] = ()
    """Topic-level configs the catalogue does not set, to delete (back to the broker's value)."""


class TopicDriftError(Exception):
    """The broker has a topic the catalogue can't reach by safe changes (fewer partitions)."""


def plan_topic_changes(
    desired: Sequence[Topic], existing: Mapping[str, ExistingTopic]
) -> list[TopicChange]:
    """What to change so the broker matches the catalogue. Pure; an empty plan means in sync."""
    changes: list[TopicChange] = []
    for wanted in desired:
        current = existing.get(wanted.name)
        if current is None:
            changes.append(
                TopicChange(
                    wanted.name,
                    "create",
                    f"{wanted.partitions} partitions",
                    wanted.partitions,
                    wanted.config,
                )
            )
            continue
        if current.partitions > wanted.partitions:
            raise TopicDriftError(
                f"{wanted.name} has {current.partitions} partitions but the catalogue says "
                f"{wanted.partitions}; Kafka cannot remove partitions, so fix the catalogue"
            )
        if current.partitions < wanted.partitions:
            changes.append(
                TopicChange(
                    wanted.name,
                    "add-partitions",
                    f"{current.partitions} -> {wanted.partitions} partitions",
                    partitions=wanted.partitions,
                )
            )
        differing = {k: v for k, v in wanted.config.items() if current.config.get(k) != v}
        # A setting left on the topic by an older catalogue, or by hand, is drift too.
        stale = tuple(sorted(current.overrides - wanted.config.keys()))
        if differing or stale:
            detail = ", ".join(
                [f"{k}={current.config.get(k)}->{v}" for k, v in differing.items()]
                + [f"{k}={current.config.get(k)}->broker default" for k in stale]
            )
            changes.append(
                TopicChange(wanted.name, "alter-config", detail, config=differing, reset=stale)
            )
    return changes


def catalogue_markdown(topics: Sequence[Topic] = TOPICS) -> str:
    """The catalogue as a Markdown table (docs/architecture.md embeds it; a test keeps it true)."""
    rows = [
        "| topic | key | values | partitions | cleanup | retention | producers | consumers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in topics:
        retention = "forever" if t.retention_ms < 0 else f"{t.retention_ms // DAY_MS} days"
        key = "/".join(p.removeprefix("envelope.") for p in t.key)
        values = ", ".join(v.rsplit(".", 1)[-1] for v in t.values)
        rows.append(
            f"| `{t.name}` | `{key}` | {values} | {t.partitions} | {t.cleanup.value} | {retention} "
            f"| {', '.join(t.producers)} | {', '.join(t.consumers)} |"
        )
    return "\n".join(rows) + "\n"
