"""materialised daily analytics per campaign (closed days), invalidated on write; idx_analytics
ordered by (campaign_id, created_at, ...) so that a campaign's days are one range of it

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# Same columns as 0004's, with created_at second: analytics now read ranges of days, not whole campaigns.
ANALYTICS_COLUMNS = [
    "campaign_id",
    "created_at",
    "source",
    "utm_content",
    "qualification_status",
    "status",
    "lead_score",
    "deal_value",
]
ANALYTICS_COLUMNS_0004 = [
    "campaign_id",
    "source",
    "utm_content",
    "created_at",
    "qualification_status",
    "status",
    "lead_score",
    "deal_value",
]


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("idx_analytics")
        batch_op.create_index("idx_analytics", ANALYTICS_COLUMNS, unique=False)
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
    with op.batch_alter_table("analytics_daily", schema=None) as batch_op:
        batch_op.create_index("idx_analytics_daily", ["campaign_id", "day"], unique=False)
    op.create_table(
        "analytics_state",
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_analytics_state")),
    )
    op.execute("INSERT INTO analytics_state (campaign_id, version) SELECT id, 0 FROM campaigns")


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("idx_analytics")
        batch_op.create_index("idx_analytics", ANALYTICS_COLUMNS_0004, unique=False)
    op.drop_table("analytics_state")
    with op.batch_alter_table("analytics_daily", schema=None) as batch_op:
        batch_op.drop_index("idx_analytics_daily")
    op.drop_table("analytics_daily")
    op.drop_table("analytics_days")
