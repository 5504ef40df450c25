"""Backfill: the order facts a store's baseline is computed from, and the baselines computed.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baseline_orders",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("customer_key", sa.Text(), nullable=True),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "order_id", name=op.f("baseline_orders_pkey")),
    )
    op.create_table(
        "store_baselines",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("revenue_minor", sa.BigInteger(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("average_order_minor", sa.BigInteger(), nullable=False),
        sa.Column("unique_customers", sa.Integer(), nullable=False),
        sa.Column("repeat_customers", sa.Integer(), nullable=False),
        sa.Column("repeat_rate_bp", sa.Integer(), nullable=False),
        sa.Column("monthly_revenue_minor", sa.BigInteger(), nullable=False),
        sa.Column("months", postgresql.JSONB(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", name=op.f("store_baselines_pkey")),
    )


def downgrade() -> None:
    op.drop_table("store_baselines")
    op.drop_table("baseline_orders")
