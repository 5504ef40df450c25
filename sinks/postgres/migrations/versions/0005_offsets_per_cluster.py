"""The sink's offsets keyed by Kafka cluster too: another cluster's offsets (a test's broker, a
rebuilt one) were taken for this one's, and the records below them skipped as written. Scores
indexed by customer.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The acquisition follow-up looks up a customer's scores: without it each batch scanned the
    # store's scores (1.1 s a batch at 10,000 scores; `revloop bench sinks`).
    op.create_index(
        op.f("ix_attribution_scores_store_id_customer_key"),
        "attribution_scores",
        ["store_id", "customer_key"],
    )
    # Offsets stored before this have no cluster: '' matches none, so the sink reads from the
    # start again, which its merges make harmless.
    op.add_column(
        "kafka_offsets", sa.Column("cluster_id", sa.Text(), nullable=False, server_default="")
    )
    op.alter_column("kafka_offsets", "cluster_id", server_default=None)
    op.drop_constraint("kafka_offsets_pkey", "kafka_offsets", type_="primary")
    op.create_primary_key(
        "kafka_offsets_pkey", "kafka_offsets", ["cluster_id", "group_id", "topic", "partition"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_attribution_scores_store_id_customer_key"), "attribution_scores")
    op.drop_constraint("kafka_offsets_pkey", "kafka_offsets", type_="primary")
    op.drop_column("kafka_offsets", "cluster_id")
    op.create_primary_key("kafka_offsets_pkey", "kafka_offsets", ["group_id", "topic", "partition"])
