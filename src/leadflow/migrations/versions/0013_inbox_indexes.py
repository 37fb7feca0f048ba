"""Indexes for the workspace inbox: open leads in grade-then-age order, and due follow-ups.

``idx_grade_age`` lets the inbox walk leads in its order (best grade, then oldest) and stop after a
page instead of sorting every open lead; ``idx_follow_up`` finds the follow-ups due by a time.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 22:35:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_grade_age", "leads", ["lead_grade", "created_at", "id"], unique=False)
    op.create_index("idx_follow_up", "leads", ["follow_up_date"], unique=False)


def downgrade() -> None:
    op.drop_index("idx_follow_up", table_name="leads")
    op.drop_index("idx_grade_age", table_name="leads")
