"""The billing ledger: append-only entries (the database refuses UPDATE, DELETE and TRUNCATE)
and the settled periods.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:20:56.752911
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


IMMUTABLE = """
CREATE FUNCTION ledger_entries_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'correct an entry with a new entry that reverses it';
END
$$;
CREATE TRIGGER ledger_entries_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_refuse_change();
"""


def upgrade() -> None:
    op.create_table(
        "billing_periods",
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "period", name=op.f("billing_periods_pkey")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("entry_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ledger", sa.Text(), nullable=False),
        sa.Column("debit_account", sa.Text(), nullable=False),
        sa.Column("credit_account", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("reverses_entry_id", sa.Text(), nullable=True),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("booked_period", sa.String(length=7), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caused_by", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_ledger_entries_positive_amount")),
        sa.CheckConstraint(
            "debit_account <> credit_account", name=op.f("ck_ledger_entries_two_accounts")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("ledger_entries_pkey")),
        sa.UniqueConstraint("store_id", "seq", name="ledger_entries_store_id_seq_key"),
    )
    op.create_index(
        op.f("ix_ledger_entries_order_id"), "ledger_entries", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_entries_store_id_booked_period"),
        "ledger_entries",
        ["store_id", "booked_period"],
        unique=False,
    )
    op.execute(IMMUTABLE)


def downgrade() -> None:
    op.execute("DROP TABLE ledger_entries")  # with its indexes and triggers
    op.execute("DROP FUNCTION ledger_entries_refuse_change()")
    op.drop_table("billing_periods")
