"""The multichannel lock's bookkeeping: which breakers hold an item at 0 on another channel,
and its level before.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inventory_locks",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("holders", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("level_before", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "store_id", "channel", "item_id", "location_id", name=op.f("inventory_locks_pkey")
        ),
    )


def downgrade() -> None:
    op.drop_table("inventory_locks")
