"""Indexes for the paged inbox (each open status's leads in the inbox's orders, all and per assignee)
and for the lead list's common filters in its order (newest or oldest first, by id).

The inbox reads one screen per open status from an index that starts with the status (all leads) or
the assignee and the status (one person's leads), in its order — best grade then oldest
(``idx_open_order``, ``idx_owner_order``), earliest follow-up (``idx_open_due``, ``idx_owner_due``) —
and merges them, so a screen costs the same at 1 000 or 1 000 000 leads. ``idx_owner_order`` starts with
``idx_assigned``'s columns, which it replaces; ``idx_grade_age`` (0013) served the inbox's order across
all statuses, which walked every closed lead before the open ones, and is dropped.

The lead list pages by id; a filter on status, status and grade, campaign or assignee (a salesperson's
whole list) reads ``idx_list_*`` in id order and stops after a page, where an index on the filter
alone made the database sort every matching lead first (SQLite chose that for ``status = 'new'`` over
99 % of the leads).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

LIST_INDEXES = {
    "idx_list_status": ["status", "id"],
    "idx_list_status_grade": ["status", "lead_grade", "id"],
    "idx_list_campaign": ["campaign_id", "id"],
    "idx_list_assigned": ["assigned_to", "id"],
}


def upgrade() -> None:
    op.create_index("idx_open_order", "leads", ["status", "lead_grade", "created_at", "id"], unique=False)
    op.create_index(
        "idx_owner_order", "leads", ["assigned_to", "status", "lead_grade", "created_at", "id"], unique=False
    )
    op.create_index("idx_open_due", "leads", ["status", "follow_up_date", "id"], unique=False)
    op.create_index("idx_owner_due", "leads", ["assigned_to", "status", "follow_up_date", "id"], unique=False)
    for name, columns in LIST_INDEXES.items():
        op.create_index(name, "leads", columns, unique=False)
    op.drop_index("idx_assigned", table_name="leads")
    op.drop_index("idx_grade_age", table_name="leads")


def downgrade() -> None:
    for name in LIST_INDEXES:
        op.drop_index(name, table_name="leads")
    op.create_index("idx_grade_age", "leads", ["lead_grade", "created_at", "id"], unique=False)
    op.create_index("idx_assigned", "leads", ["assigned_to", "status"], unique=False)
    op.drop_index("idx_owner_due", table_name="leads")
    op.drop_index("idx_open_due", table_name="leads")
    op.drop_index("idx_owner_order", table_name="leads")
    op.drop_index("idx_open_order", table_name="leads")
