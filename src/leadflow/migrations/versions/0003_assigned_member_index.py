"""index for open leads per team member (routing capacity)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index("idx_assigned_member", ["assigned_member_id", "status"], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "mysql":
        # MySQL let the new index replace the foreign key's own one; give the key an index back first.
        op.create_index("ix_leads_assigned_member_id", "leads", ["assigned_member_id"])
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("idx_assigned_member")
