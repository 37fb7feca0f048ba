"""Stored analytics for the dashboard: ``analytics_days`` holds slots (closed days, and closed hours of
the days not closed yet, and ten minutes of the hours not closed yet), each with its totals and its leads by channel, source, grade, status, content
and response time (``facets``, JSON), replacing ``analytics_daily``; ``idx_analytics`` also covers
channel, grade, assignee and first contact, so every analytics scan is index-only.

The stored sums of 0005 are dropped, not converted: they are recomputed on demand (and by the
``analytics.rollup`` job).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ANALYTICS_COLUMNS_0005 = [
    "campaign_id",
    "created_at",
    "source",
    "utm_content",
    "qualification_status",
    "status",
    "lead_score",
    "deal_value",
]
ANALYTICS_COLUMNS = [*ANALYTICS_COLUMNS_0005, "channel", "lead_grade", "assigned_to", "contacted_at"]


def upgrade() -> None:
    op.drop_index("idx_analytics", table_name="leads")
    op.create_index("idx_analytics", "leads", ANALYTICS_COLUMNS, unique=False)
    op.drop_index("idx_analytics_daily", table_name="analytics_daily")
    op.drop_table("analytics_daily")
    op.drop_table("analytics_days")
    op.create_table(
        "analytics_days",
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("part", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("leads", sa.Integer(), nullable=False),
        sa.Column("qualified", sa.Integer(), nullable=False),
        sa.Column("won", sa.Integer(), nullable=False),
        sa.Column("score_sum", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("facets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "day", "part", name=op.f("pk_analytics_days")),
    )
    op.create_index("idx_analytics_days_day", "analytics_days", ["day"], unique=False)


def downgrade() -> None:
    op.drop_index("idx_analytics_days_day", table_name="analytics_days")
    op.drop_table("analytics_days")
    op.create_table(
        "analytics_days",
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "day", name=op.f("pk_analytics_days")),
    )
    op.create_table(
        "analytics_daily",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("utm_content", sa.String(length=255), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("qualified", sa.Integer(), nullable=False),
        sa.Column("score_sum", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_daily")),
    )
    op.create_index("idx_analytics_daily", "analytics_daily", ["campaign_id", "day"], unique=False)
    op.drop_index("idx_analytics", table_name="leads")
    op.create_index("idx_analytics", "leads", ANALYTICS_COLUMNS_0005, unique=False)
