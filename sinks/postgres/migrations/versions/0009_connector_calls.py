"""Every call the ad executor made for a breaker action, and its answer (ops.connector-calls.v1).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_calls",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caused_by", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("action_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("call", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("elapsed_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("connector_calls_pkey")),
    )
    op.create_index(
        op.f("ix_connector_calls_store_id_action_id"),
        "connector_calls",
        ["store_id", "action_id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_connector_calls_store_id_action_id"), table_name="connector_calls")
    op.drop_table("connector_calls")
