"""The other billing plans' inputs: a store's baseline with its currency and where it came from,
and each campaign's spend per day (from the spend feed).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stores", sa.Column("baseline_currency", sa.String(length=3), nullable=True))
    op.add_column("stores", sa.Column("baseline_source", sa.Text(), nullable=True))
    op.add_column("stores", sa.Column("baseline_set_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "campaign_spend",
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("spend_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint(
            "store_id", "channel", "campaign_id", "day", name=op.f("campaign_spend_pkey")
        ),
    )


def downgrade() -> None:
    op.drop_table("campaign_spend")
    op.drop_column("stores", "baseline_set_at")
    op.drop_column("stores", "baseline_source")
    op.drop_column("stores", "baseline_currency")
