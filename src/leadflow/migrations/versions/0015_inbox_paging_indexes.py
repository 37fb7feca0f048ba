"""Indexes for the paged inbox: each open status's leads in the inbox's orders, all and per assignee.

The inbox reads one screen per open status from an index that starts with the status (all leads) or
the assignee and the status (one person's leads), in its order — best grade then oldest
(``idx_open_order``, ``idx_owner_order``), earliest follow-up (``idx_open_due``, ``idx_owner_due``) —
and merges them, so a screen costs the same at 1 000 or 1 000 000 leads. ``idx_owner_order`` starts with
``idx_assigned``'s columns, which it replaces; ``idx_grade_age`` (0013) served the inbox's order across
all statuses, which walked every closed lead before the open ones, and is dropped.

Revision ID: 0015
Revises: 0013 (re-chain onto 0014 when both are merged)
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_open_order", "leads", ["status", "lead_grade", "created_at", "id"], unique=False)
    op.create_index(
        "idx_owner_order", "leads", ["assigned_to", "status", "lead_grade", "created_at", "id"], unique=False
    )
    op.create_index("idx_open_due", "leads", ["status", "follow_up_date", "id"], unique=False)
    op.create_index("idx_owner_due", "leads", ["assigned_to", "status", "follow_up_date", "id"], unique=False)
    op.drop_index("idx_assigned", table_name="leads")
    op.drop_index("idx_grade_age", table_name="leads")


def downgrade() -> None:
    op.create_index("idx_grade_age", "leads", ["lead_grade", "created_at", "id"], unique=False)
    op.create_index("idx_assigned", "leads", ["assigned_to", "status"], unique=False)
    op.drop_index("idx_owner_due", table_name="leads")
    op.drop_index("idx_open_due", table_name="leads")
    op.drop_index("idx_owner_order", table_name="leads")
    op.drop_index("idx_open_order", table_name="leads")
