"""covering index for campaign analytics (index-only grouped scan)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 11:25:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = [
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
        batch_op.create_index("idx_analytics", COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("idx_analytics")
