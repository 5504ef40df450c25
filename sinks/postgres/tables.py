"""The tables `revloop sink postgres` writes, as SQLAlchemy 2 models: the one home of the
database schema. Alembic migrations (sinks/postgres/migrations/) create them; the sink writes
them with COPY and ``INSERT … ON CONFLICT`` (sinks/postgres/writer.py).

Conventions (docs/sinks.md):
- money is ``*_minor`` (BIGINT, the currency's minor units) beside a ``currency`` (ISO 4217);
- platform ids are TEXT;
- a table that holds an entity's latest state carries ``source_at`` and ``source_event_id``,
  the event time and id of the change it shows: an older event never overwrites it;
- a table of facts (actions, scores, triggers, deliveries) has one row per event, keyed by its
  ``event_id``, and never changes, except where a redaction blanks personal data.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "pk": "%(table_name)s_pkey",
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        list[str]: ARRAY(Text),
    }


def _text(primary: bool = False, nullable: bool = False) -> Any:
    return mapped_column(Text, primary_key=primary, nullable=nullable)


class _Versioned:
    """The latest state of an entity: the event time and id of the change it shows."""

    source_at: Mapped[datetime]
    source_event_id: Mapped[str] = mapped_column(Text)


# -- the store and its catalogue --------------------------------------------------------------


class StoreRow(Base):
    __tablename__ = "stores"
    store_id: Mapped[str] = _text(primary=True)
    platform: Mapped[str] = _text()
    identity: Mapped[str] = _text()
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(Text, server_default="active")
    baseline_monthly_revenue_minor: Mapped[int | None] = mapped_column(BigInteger)
    baseline_currency: Mapped[str | None] = mapped_column(String(3))
    baseline_roas_bp: Mapped[int | None] = mapped_column(Integer)
    baseline_source: Mapped[str | None] = _text(nullable=True)
    """Who set the baseline: ``manual`` (`revloop stores baseline set`) or ``backfill``."""
    baseline_set_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class ProductRow(Base):
    __tablename__ = "products"
    store_id: Mapped[str] = _text(primary=True)
    product_id: Mapped[str] = _text(primary=True)
    title: Mapped[str | None] = _text(nullable=True)
    handle: Mapped[str | None] = _text(nullable=True)
    status: Mapped[str | None] = _text(nullable=True)
    vendor: Mapped[str | None] = _text(nullable=True)
    product_type: Mapped[str | None] = _text(nullable=True)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    url_path: Mapped[str | None] = _text(nullable=True)
    source_at: Mapped[datetime | None]
    """The newest upsert's time; null for a product known only by its deletion."""
    source_event_id: Mapped[str | None] = _text(nullable=True)
    deleted_at: Mapped[datetime | None]
    """The newest deletion's time: the product is deleted when this is after ``source_at``."""


class VariantRow(_Versioned, Base):
    __tablename__ = "variants"
    store_id: Mapped[str] = _text(primary=True)
    variant_id: Mapped[str] = _text(primary=True)
    product_id: Mapped[str] = _text()
    sku: Mapped[str | None] = _text(nullable=True)
    title: Mapped[str | None] = _text(nullable=True)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    inventory_item_id: Mapped[str | None] = _text(nullable=True)
    removed_at: Mapped[datetime | None]
    """Set when a newer version of its product no longer lists it (or the product is deleted)."""

    __table_args__ = (Index(None, "store_id", "product_id"),)


class InventorySnapshotRow(_Versioned, Base):
    """The newest absolute level per item and location (``inventory_levels``, a view, adds the
    adjustments after it)."""

    __tablename__ = "inventory_snapshots"
    store_id: Mapped[str] = _text(primary=True)
    inventory_item_id: Mapped[str] = _text(primary=True)
    location_id: Mapped[str] = _text(primary=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    product_id: Mapped[str | None] = _text(nullable=True)
    variant_id: Mapped[str | None] = _text(nullable=True)


class InventoryAdjustmentRow(Base):
    """A relative change of a level (BigCommerce): one row per event."""

    __tablename__ = "inventory_adjustments"
    store_id: Mapped[str] = _text(primary=True)
    inventory_item_id: Mapped[str] = _text(primary=True)
    location_id: Mapped[str] = _text(primary=True)
    event_id: Mapped[str] = _text(primary=True)
    delta: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    product_id: Mapped[str | None] = _text(nullable=True)
    variant_id: Mapped[str | None] = _text(nullable=True)


# ``inventory_levels`` is a view over these two (migration 0001): each level is its newest
# absolute snapshot plus the adjustments after it (one older than the snapshot is counted in
# it), the stream processors' fold, whatever order the events arrived in.


# -- customers and orders -----------------------------------------------------------------------


class CustomerRow(_Versioned, Base):
    __tablename__ = "customers"
    store_id: Mapped[str] = _text(primary=True)
    customer_id: Mapped[str] = _text(primary=True)
    customer_key: Mapped[str | None] = _text(nullable=True)
    email: Mapped[str | None] = _text(nullable=True)
    """Personal data: kept only until the customer is redacted."""
    accepts_marketing: Mapped[bool] = mapped_column(Boolean)
    orders_count: Mapped[int | None] = mapped_column(BigInteger)
    total_spent_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    acquisition_source: Mapped[str | None] = _text(nullable=True)
    """The campaign credited on the customer's first order when attribution found them acquired
    through one; 'organic' when their first order was scored without."""
    created_at: Mapped[datetime | None]
    redacted_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "store_id", "customer_key"),)


class OrderRow(_Versioned, Base):
    __tablename__ = "orders"
    store_id: Mapped[str] = _text(primary=True)
    order_id: Mapped[str] = _text(primary=True)
    order_number: Mapped[str | None] = _text(nullable=True)
    customer_id: Mapped[str | None] = _text(nullable=True)
    customer_key: Mapped[str | None] = _text(nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    subtotal_minor: Mapped[int | None] = mapped_column(BigInteger)
    tax_minor: Mapped[int | None] = mapped_column(BigInteger)
    discounts_minor: Mapped[int | None] = mapped_column(BigInteger)
    shipping_minor: Mapped[int | None] = mapped_column(BigInteger)
    financial_status: Mapped[str | None] = _text(nullable=True)
    fulfillment_status: Mapped[str | None] = _text(nullable=True)
    placed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # Attribution, from analytics.attribution-scores.v1: the standing score.
    confidence_bp: Mapped[int | None] = mapped_column(Integer)
    is_incremental: Mapped[bool | None] = mapped_column(Boolean)
    attribution_model: Mapped[str | None] = _text(nullable=True)
    incremental_minor: Mapped[int | None] = mapped_column(BigInteger)
    """The sum of the order's scores and reversals: what stands to be billed on."""
    holdout: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (Index(None, "store_id", "customer_key"), Index(None, "placed_at"))


class OrderItemRow(_Versioned, Base):
    __tablename__ = "order_items"
    store_id: Mapped[str] = _text(primary=True)
    order_id: Mapped[str] = _text(primary=True)
    line_item_id: Mapped[str] = _text(primary=True)
    product_id: Mapped[str | None] = _text(nullable=True)
    variant_id: Mapped[str | None] = _text(nullable=True)
    sku: Mapped[str | None] = _text(nullable=True)
    title: Mapped[str | None] = _text(nullable=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class RefundRow(Base):
    __tablename__ = "refunds"
    store_id: Mapped[str] = _text(primary=True)
    order_id: Mapped[str] = _text(primary=True)
    refund_id: Mapped[str] = _text(primary=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_at: Mapped[datetime]
    event_id: Mapped[str] = _text()


# -- marketing ----------------------------------------------------------------------------------


class TouchpointRow(Base):
    __tablename__ = "touchpoints"
    store_id: Mapped[str] = _text(primary=True)
    touchpoint_id: Mapped[str] = _text(primary=True)
    event_id: Mapped[str] = _text()
    occurred_at: Mapped[datetime]
    kind: Mapped[str] = _text()
    channel: Mapped[str] = _text()
    customer_key: Mapped[str | None] = _text(nullable=True)
    campaign_id: Mapped[str | None] = _text(nullable=True)
    ad_id: Mapped[str | None] = _text(nullable=True)
    content_id: Mapped[str | None] = _text(nullable=True)
    product_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    click_id: Mapped[str | None] = _text(nullable=True)
    landing_url: Mapped[str | None] = _text(nullable=True)
    cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    cost_currency: Mapped[str | None] = mapped_column(String(3))

    __table_args__ = (Index(None, "store_id", "customer_key"), Index(None, "campaign_id"))


class CampaignProductRow(_Versioned, Base):
    __tablename__ = "campaign_products"
    store_id: Mapped[str] = _text(primary=True)
    campaign_id: Mapped[str] = _text(primary=True)
    product_id: Mapped[str] = _text(primary=True)
    channel: Mapped[str] = _text()
    active: Mapped[bool] = mapped_column(Boolean)


class CampaignSpendRow(_Versioned, Base):
    """Each campaign's spend per day, as the newest report says (ROAS plans, analysts)."""

    __tablename__ = "campaign_spend"
    store_id: Mapped[str] = _text(primary=True)
    channel: Mapped[str] = _text(primary=True)
    campaign_id: Mapped[str] = _text(primary=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    spend_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


# -- the ad executors' bookkeeping (connectors/ad_platforms/, docs/connectors.md) --------------


class AdHoldRow(Base):
    """An ad object revloop paused: the breakers holding it, and its status before."""

    __tablename__ = "ad_holds"
    store_id: Mapped[str] = _text(primary=True)
    channel: Mapped[str] = _text(primary=True)
    object_id: Mapped[str] = _text(primary=True)
    campaign_id: Mapped[str] = _text()
    holders: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status_before: Mapped[str] = _text()
    updated_at: Mapped[datetime]


class InventoryLockRow(Base):
    """An item on another of the store's channels held at 0 by the multichannel lock."""

    __tablename__ = "inventory_locks"
    store_id: Mapped[str] = _text(primary=True)
    channel: Mapped[str] = _text(primary=True)
    item_id: Mapped[str] = _text(primary=True)
    location_id: Mapped[str] = _text(primary=True)
    """'' where the channel keeps one stock per item."""
    sku: Mapped[str] = _text()
    holders: Mapped[list[str]] = mapped_column(ARRAY(Text))
    level_before: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class AdActionRow(Base):
    """Each breaker action the executors finished: done once, whatever is redelivered."""

    __tablename__ = "ad_actions"
    action_id: Mapped[str] = _text(primary=True)
    store_id: Mapped[str] = _text()
    product_id: Mapped[str] = _text()
    holder: Mapped[str] = _text()
    action: Mapped[str] = _text()
    outcome: Mapped[str] = _text()
    """``applied``, or why not (no account connected; failed, with the call)."""
    calls: Mapped[int] = mapped_column(Integer)
    changes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    """The status changes it made: ``meta:<ad set> PAUSED``, ``google:<campaign> ENABLED``."""
    done_at: Mapped[datetime]


class BaselineOrderRow(Base):
    """One order a backfill read: what the store's baseline is computed from."""

    __tablename__ = "baseline_orders"
    store_id: Mapped[str] = _text(primary=True)
    order_id: Mapped[str] = _text(primary=True)
    placed_at: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger)
    customer_key: Mapped[str | None] = _text(nullable=True)
    cancelled: Mapped[bool]


class StoreBaselineRow(Base):
    """A store's baseline as its last backfill computed it (revloop/baseline.py)."""

    __tablename__ = "store_baselines"
    store_id: Mapped[str] = _text(primary=True)
    computed_at: Mapped[datetime]
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    revenue_minor: Mapped[int] = mapped_column(BigInteger)
    orders: Mapped[int] = mapped_column(Integer)
    average_order_minor: Mapped[int] = mapped_column(BigInteger)
    unique_customers: Mapped[int] = mapped_column(Integer)
    repeat_customers: Mapped[int] = mapped_column(Integer)
    repeat_rate_bp: Mapped[int] = mapped_column(Integer)
    monthly_revenue_minor: Mapped[int] = mapped_column(BigInteger)
    months: Mapped[list[dict[str, object]]] = mapped_column(JSONB)
    """[{month, start, end, revenue_minor, orders}], oldest first."""
    source: Mapped[str] = _text()


# -- what the pipeline derived ------------------------------------------------------------------


class _Fact:
    """One row per derived event, never changed (a redaction may blank personal data)."""

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    store_id: Mapped[str] = _text()
    occurred_at: Mapped[datetime]
    caused_by: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")


class ConnectorCallRow(_Fact, Base):
    """Each call the ad executor made for a breaker action, and its answer."""

    __tablename__ = "connector_calls"
    action_id: Mapped[str] = _text()
    channel: Mapped[str] = _text()
    call: Mapped[str] = _text()
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = _text()
    error: Mapped[str | None] = _text(nullable=True)
    elapsed_ms: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "store_id", "action_id"),)


class CircuitBreakerActionRow(_Fact, Base):
    __tablename__ = "circuit_breaker_actions"
    product_id: Mapped[str] = _text()
    variant_id: Mapped[str | None] = _text(nullable=True)
    action: Mapped[str] = _text()
    campaign_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    available: Mapped[int] = mapped_column(BigInteger)
    previous_available: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = _text()
    published_at: Mapped[datetime]
    """When the worker published it (the record's Kafka timestamp): ``occurred_at`` is the
    sell-out's or restock's own time, so the difference is how long the loop took."""

    __table_args__ = (Index(None, "store_id", "product_id", "occurred_at"),)


class LowStockWarningRow(_Fact, Base):
    __tablename__ = "low_stock_warnings"
    product_id: Mapped[str] = _text()
    variant_id: Mapped[str | None] = _text(nullable=True)
    available: Mapped[int] = mapped_column(BigInteger)
    threshold: Mapped[int] = mapped_column(BigInteger)
    campaign_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    reason: Mapped[str] = _text()
    published_at: Mapped[datetime]


class AttributionScoreRow(_Fact, Base):
    __tablename__ = "attribution_scores"
    order_id: Mapped[str] = _text()
    customer_key: Mapped[str | None] = _text(nullable=True)
    confidence_bp: Mapped[int] = mapped_column(Integer)
    is_incremental: Mapped[bool] = mapped_column(Boolean)
    model: Mapped[str] = _text()
    order_total_minor: Mapped[int] = mapped_column(BigInteger)
    incremental_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    credits: Mapped[Any] = mapped_column(JSONB)
    """Per credited touch: touchpoint_id, campaign_id, channel, weight_bp, amount_minor."""
    signals: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    holdout: Mapped[bool] = mapped_column(Boolean)
    reverses: Mapped[str | None] = _text(nullable=True)

    __table_args__ = (
        Index(None, "store_id", "order_id"),
        Index(None, "store_id", "customer_key"),  # a customer's scores (acquisition, redaction)
    )


class LifecycleTriggerRow(_Fact, Base):
    __tablename__ = "lifecycle_triggers"
    trigger_id: Mapped[str] = _text()
    flow: Mapped[str] = _text()
    customer_id: Mapped[str | None] = _text(nullable=True)
    customer_key: Mapped[str | None] = _text(nullable=True)
    order_id: Mapped[str | None] = _text(nullable=True)
    product_id: Mapped[str | None] = _text(nullable=True)
    due_at: Mapped[datetime | None]


class WebhookLogRow(Base):
    """A raw delivery's metadata, never its body: what arrived when, for debugging. Rows older
    than ``sink_webhook_log_days`` are deleted by the sink."""

    __tablename__ = "webhook_log"
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    store_id: Mapped[str] = _text()
    platform: Mapped[str] = _text()
    topic: Mapped[str] = _text()
    delivery_id: Mapped[str | None] = _text(nullable=True)
    content_type: Mapped[str] = _text()
    body_bytes: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]

    __table_args__ = (Index(None, "received_at"),)


# -- the sink's own bookkeeping ----------------------------------------------------------------


class RedactionRow(Base):
    """Each CustomerRedact applied: the record that the data is gone, and what keeps it gone
    when an older event of the customer arrives after it."""

    __tablename__ = "redactions"
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    store_id: Mapped[str] = _text()
    scope: Mapped[str] = _text()
    customer_id: Mapped[str | None] = _text(nullable=True)
    customer_key: Mapped[str | None] = _text(nullable=True)
    orders: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    request_id: Mapped[str | None] = _text(nullable=True)
    requested_at: Mapped[datetime]


class KafkaOffsetRow(Base):
    """Where the sink's group has read to, committed in the same transaction as the rows."""

    __tablename__ = "kafka_offsets"
    cluster_id: Mapped[str] = _text(primary=True)
    """Offsets mean nothing on another cluster (a test's broker, a rebuilt one)."""
    group_id: Mapped[str] = _text(primary=True)
    topic: Mapped[str] = _text(primary=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


# -- the billing ledger ---------------------------------------------------------------------------


class LedgerEntryRow(Base):
    """One immutable posting (docs/ledger.md). The database refuses UPDATE, DELETE and TRUNCATE
    (a trigger, migration 0003); each store's entries form a hash chain in ``seq`` order."""

    __tablename__ = "ledger_entries"
    entry_id: Mapped[str] = mapped_column(Text, primary_key=True)
    store_id: Mapped[str] = _text()
    seq: Mapped[int] = mapped_column(BigInteger)
    """The entry's place in its store's chain: 1, 2, 3, …"""
    ledger: Mapped[str] = _text()
    debit_account: Mapped[str] = _text()
    credit_account: Mapped[str] = _text()
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    code: Mapped[str] = _text()
    reverses_entry_id: Mapped[str | None] = _text(nullable=True)
    order_id: Mapped[str | None] = _text(nullable=True)
    period: Mapped[str] = mapped_column(String(7))
    """The period the entry belongs to by its time."""
    booked_period: Mapped[str] = mapped_column(String(7))
    """The period it is billed in: its own, or the first open one after it when that was
    already settled (an adjustment)."""
    occurred_at: Mapped[datetime]
    caused_by: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("store_id", "seq", name="ledger_entries_store_id_seq_key"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
        CheckConstraint("debit_account <> credit_account", name="two_accounts"),
        Index(None, "store_id", "booked_period"),
        Index(None, "order_id"),
    )


class BillingPeriodRow(Base):
    """A store's settled periods: an entry of a settled period is booked in the next open one."""

    __tablename__ = "billing_periods"
    store_id: Mapped[str] = _text(primary=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[datetime]


class InvoiceRow(Base):
    """A settled period's invoice, per store and currency, as `revloop settle` computed it from
    the ledger (``document``, the invoice JSON; the proof is recomputed from the same entries)."""

    __tablename__ = "invoices"
    store_id: Mapped[str] = _text(primary=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    plan: Mapped[str] = _text()
    document: Mapped[Any] = mapped_column(JSONB)
    settled_at: Mapped[datetime]
