"""Views for the common questions (docs/sinks.md): revenue and incremental revenue by store and
month, incremental revenue by campaign and month, the open circuit breakers, and how long each
sell-out took to become a pause.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = {
    # Months in UTC. Revenue is what the placed orders totalled, refunds in the month they were
    # made; incremental revenue is what the attribution scores stand at (scores in their
    # order's month, reversals in theirs).
    "revenue_by_month": """
        WITH months AS (
            SELECT store_id, currency, date_trunc('month', placed_at AT TIME ZONE 'UTC') AS month,
                   count(*) AS orders, sum(total_minor) AS revenue_minor,
                   0::bigint AS refunded_minor
            FROM orders WHERE placed_at IS NOT NULL AND total_minor IS NOT NULL
            GROUP BY 1, 2, 3
            UNION ALL
            SELECT store_id, currency, date_trunc('month', refunded_at AT TIME ZONE 'UTC'),
                   0, 0, sum(amount_minor)
            FROM refunds GROUP BY 1, 2, 3
        ), incremental AS (
            SELECT store_id, currency, date_trunc('month', occurred_at AT TIME ZONE 'UTC') AS month,
                   sum(incremental_minor) AS incremental_minor,
                   count(*) FILTER (WHERE reverses IS NULL AND is_incremental) AS incremental_orders
            FROM attribution_scores WHERE NOT holdout
            GROUP BY 1, 2, 3
        )
        SELECT coalesce(m.store_id, i.store_id) AS store_id,
               coalesce(m.month, i.month) AS month,
               coalesce(m.currency, i.currency) AS currency,
               coalesce(m.orders, 0)::bigint AS orders,
               coalesce(m.revenue_minor, 0)::bigint AS revenue_minor,
               coalesce(m.refunded_minor, 0)::bigint AS refunded_minor,
               (coalesce(m.revenue_minor, 0) - coalesce(m.refunded_minor, 0))::bigint
                   AS net_revenue_minor,
               coalesce(i.incremental_minor, 0)::bigint AS incremental_minor,
               coalesce(i.incremental_orders, 0)::bigint AS incremental_orders
        FROM (
            SELECT store_id, currency, month, sum(orders) AS orders,
                   sum(revenue_minor) AS revenue_minor, sum(refunded_minor) AS refunded_minor
            FROM months GROUP BY 1, 2, 3
        ) m
        FULL JOIN incremental i
          ON i.store_id = m.store_id AND i.currency = m.currency AND i.month = m.month
    """,
    # Each credit's share of incremental revenue, reversals included (their credits are
    # negative), in the month of its score.
    "incremental_revenue_by_campaign": """
        SELECT a.store_id,
               coalesce(credit->>'campaign_id', '(no campaign)') AS campaign_id,
               credit->>'channel' AS channel,
               date_trunc('month', a.occurred_at AT TIME ZONE 'UTC') AS month,
               a.currency,
               sum((credit->>'amount_minor')::bigint)::bigint AS incremental_minor,
               count(DISTINCT a.order_id) FILTER (WHERE a.reverses IS NULL) AS orders
        FROM attribution_scores a
        CROSS JOIN LATERAL jsonb_array_elements(a.credits) credit
        WHERE NOT a.holdout
        GROUP BY 1, 2, 3, 4, 5
    """,
    # The newest action per product and scope, where that is a pause.
    "open_circuit_breakers": """
        SELECT store_id, product_id, variant_id, occurred_at AS paused_at, published_at,
               campaign_ids, available, reason, event_id
        FROM (
            SELECT *, row_number() OVER (
                PARTITION BY store_id, product_id, coalesce(variant_id, '')
                ORDER BY occurred_at DESC, event_id DESC) AS newest
            FROM circuit_breaker_actions
        ) latest
        WHERE newest = 1 AND action = 'pause'
    """,
    # From the shop's sell-out (the inventory update's own time) to the pause on Kafka.
    "sellout_to_pause": """
        SELECT store_id, product_id, variant_id, occurred_at AS sold_out_at, published_at,
               extract(epoch FROM published_at - occurred_at) AS seconds, campaign_ids, event_id
        FROM circuit_breaker_actions
        WHERE action = 'pause'
    """,
}


def upgrade() -> None:
    for name, definition in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {definition}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
