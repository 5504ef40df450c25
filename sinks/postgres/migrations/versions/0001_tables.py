"""The sink's tables (sinks/postgres/tables.py as first released) and inventory_levels.

Revision ID: 0001
Revises:
Create Date: 2026-12-02 10:05:57.858929
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


INVENTORY_LEVELS = """
CREATE VIEW inventory_levels AS
SELECT k.store_id, k.inventory_item_id, k.location_id,
       COALESCE(s.quantity, 0) + COALESCE(later.delta, 0) AS available,
       s.source_at AS snapshot_at,
       GREATEST(s.source_at, later.newest) AS source_at,
       COALESCE(s.product_id, later.product_id) AS product_id,
       COALESCE(s.variant_id, later.variant_id) AS variant_id
FROM (
    SELECT store_id, inventory_item_id, location_id FROM inventory_snapshots
    UNION
    SELECT store_id, inventory_item_id, location_id FROM inventory_adjustments
) k
LEFT JOIN inventory_snapshots s USING (store_id, inventory_item_id, location_id)
LEFT JOIN LATERAL (
    SELECT sum(a.delta)::bigint AS delta, max(a.occurred_at) AS newest,
           max(a.product_id) AS product_id, max(a.variant_id) AS variant_id
    FROM inventory_adjustments a
    WHERE a.store_id = k.store_id AND a.inventory_item_id = k.inventory_item_id
      AND a.location_id = k.location_id
      AND (s.source_at IS NULL
           OR (a.occurred_at, a.event_id) > (s.source_at, s.source_event_id))
) later ON TRUE
"""


def upgrade() -> None:
    op.create_table(
        "attribution_scores",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("confidence_bp", sa.Integer(), nullable=False),
        sa.Column("is_incremental", sa.Boolean(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("order_total_minor", sa.BigInteger(), nullable=False),
        sa.Column("incremental_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("credits", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("signals", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("reverses", sa.Text(), nullable=True),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caused_by", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("attribution_scores_pkey")),
    )
    op.create_index(
        op.f("ix_attribution_scores_store_id_order_id"),
        "attribution_scores",
        ["store_id", "order_id"],
        unique=False,
    )
    op.create_table(
        "campaign_products",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "store_id", "campaign_id", "product_id", name=op.f("campaign_products_pkey")
        ),
    )
    op.create_table(
        "circuit_breaker_actions",
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("variant_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("campaign_ids", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("previous_available", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caused_by", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("circuit_breaker_actions_pkey")),
    )
    op.create_index(
        op.f("ix_circuit_breaker_actions_store_id_product_id_occurred_at"),
        "circuit_breaker_actions",
        ["store_id", "product_id", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "customers",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("accepts_marketing", sa.Boolean(), nullable=False),
        sa.Column("orders_count", sa.BigInteger(), nullable=True),
        sa.Column("total_spent_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("acquisition_source", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "customer_id", name=op.f("customers_pkey")),
    )
    op.create_index(
        op.f("ix_customers_store_id_customer_key"),
        "customers",
        ["store_id", "customer_key"],
        unique=False,
    )
    op.create_table(
        "inventory_adjustments",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("inventory_item_id", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("variant_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(
            "store_id",
            "inventory_item_id",
            "location_id",
            "event_id",
            name=op.f("inventory_adjustments_pkey"),
        ),
    )
    op.create_table(
        "inventory_snapshots",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("inventory_item_id", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("variant_id", sa.Text(), nullable=True),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "store_id", "inventory_item_id", "location_id", name=op.f("inventory_snapshots_pkey")
        ),
    )
    op.create_table(
        "kafka_offsets",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", name=op.f("kafka_offsets_pkey")),
    )
    op.create_table(
        "lifecycle_triggers",
        sa.Column("trigger_id", sa.Text(), nullable=False),
        sa.Column("flow", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caused_by", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("lifecycle_triggers_pkey")),
    )
    op.create_table(
        "low_stock_warnings",
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("variant_id", sa.Text(), nullable=True),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("campaign_ids", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caused_by", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("low_stock_warnings_pkey")),
    )
    op.create_table(
        "order_items",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("line_item_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("variant_id", sa.Text(), nullable=True),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "store_id", "order_id", "line_item_id", name=op.f("order_items_pkey")
        ),
    )
    op.create_table(
        "orders",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("order_number", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=True),
        sa.Column("tax_minor", sa.BigInteger(), nullable=True),
        sa.Column("discounts_minor", sa.BigInteger(), nullable=True),
        sa.Column("shipping_minor", sa.BigInteger(), nullable=True),
        sa.Column("financial_status", sa.Text(), nullable=True),
        sa.Column("fulfillment_status", sa.Text(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confidence_bp", sa.Integer(), nullable=True),
        sa.Column("is_incremental", sa.Boolean(), nullable=True),
        sa.Column("attribution_model", sa.Text(), nullable=True),
        sa.Column("incremental_minor", sa.BigInteger(), nullable=True),
        sa.Column("holdout", sa.Boolean(), nullable=True),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "order_id", name=op.f("orders_pkey")),
    )
    op.create_index(op.f("ix_orders_placed_at"), "orders", ["placed_at"], unique=False)
    op.create_index(
        op.f("ix_orders_store_id_customer_key"),
        "orders",
        ["store_id", "customer_key"],
        unique=False,
    )
    op.create_table(
        "products",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("handle", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("vendor", sa.Text(), nullable=True),
        sa.Column("product_type", sa.Text(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("url_path", sa.Text(), nullable=True),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_event_id", sa.Text(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("store_id", "product_id", name=op.f("products_pkey")),
    )
    op.create_table(
        "redactions",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("orders", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("redactions_pkey")),
    )
    op.create_table(
        "refunds",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("refund_id", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "order_id", "refund_id", name=op.f("refunds_pkey")),
    )
    op.create_table(
        "stores",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("baseline_monthly_revenue_minor", sa.BigInteger(), nullable=True),
        sa.Column("baseline_roas_bp", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store_id", name=op.f("stores_pkey")),
    )
    op.create_table(
        "touchpoints",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("touchpoint_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("campaign_id", sa.Text(), nullable=True),
        sa.Column("ad_id", sa.Text(), nullable=True),
        sa.Column("content_id", sa.Text(), nullable=True),
        sa.Column("product_ids", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("click_id", sa.Text(), nullable=True),
        sa.Column("landing_url", sa.Text(), nullable=True),
        sa.Column("cost_minor", sa.BigInteger(), nullable=True),
        sa.Column("cost_currency", sa.String(length=3), nullable=True),
        sa.PrimaryKeyConstraint("store_id", "touchpoint_id", name=op.f("touchpoints_pkey")),
    )
    op.create_index(
        op.f("ix_touchpoints_campaign_id"), "touchpoints", ["campaign_id"], unique=False
    )
    op.create_index(
        op.f("ix_touchpoints_store_id_customer_key"),
        "touchpoints",
        ["store_id", "customer_key"],
        unique=False,
    )
    op.create_table(
        "variants",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("variant_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("inventory_item_id", sa.Text(), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "variant_id", name=op.f("variants_pkey")),
    )
    op.create_index(
        op.f("ix_variants_store_id_product_id"),
        "variants",
        ["store_id", "product_id"],
        unique=False,
    )
    op.create_table(
        "webhook_log",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("webhook_log_pkey")),
    )
    op.create_index(
        op.f("ix_webhook_log_received_at"), "webhook_log", ["received_at"], unique=False
    )

    op.execute(INVENTORY_LEVELS)


def downgrade() -> None:
    op.execute("DROP VIEW inventory_levels")
    op.drop_index(op.f("ix_webhook_log_received_at"), table_name="webhook_log")
    op.drop_table("webhook_log")
    op.drop_index(op.f("ix_variants_store_id_product_id"), table_name="variants")
    op.drop_table("variants")
    op.drop_index(op.f("ix_touchpoints_store_id_customer_key"), table_name="touchpoints")
    op.drop_index(op.f("ix_touchpoints_campaign_id"), table_name="touchpoints")
    op.drop_table("touchpoints")
    op.drop_table("stores")
    op.drop_table("refunds")
    op.drop_table("redactions")
    op.drop_table("products")
    op.drop_index(op.f("ix_orders_store_id_customer_key"), table_name="orders")
    op.drop_index(op.f("ix_orders_placed_at"), table_name="orders")
    op.drop_table("orders")
    op.drop_table("order_items")
    op.drop_table("low_stock_warnings")
    op.drop_table("lifecycle_triggers")
    op.drop_table("kafka_offsets")
    op.drop_table("inventory_snapshots")
    op.drop_table("inventory_adjustments")
    op.drop_index(op.f("ix_customers_store_id_customer_key"), table_name="customers")
    op.drop_table("customers")
    op.drop_index(
        op.f("ix_circuit_breaker_actions_store_id_product_id_occurred_at"),
        table_name="circuit_breaker_actions",
    )
    op.drop_table("circuit_breaker_actions")
    op.drop_table("campaign_products")
    op.drop_index(op.f("ix_attribution_scores_store_id_order_id"), table_name="attribution_scores")
    op.drop_table("attribution_scores")
