"""The ad executors' bookkeeping: which breakers hold which ad objects paused (and their status
before), and which actions are done.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ad_holds",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("object_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("holders", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("status_before", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "channel", "object_id", name=op.f("ad_holds_pkey")),
    )
    op.create_table(
        "ad_actions",
        sa.Column("action_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("changes", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("action_id", name=op.f("ad_actions_pkey")),
    )


def downgrade() -> None:
    op.drop_table("ad_actions")
    op.drop_table("ad_holds")
