"""alert_state (throttled alert notifications, shared by every process), the monitoring role
(tokens with only the `metrics` scope) and an index on job_attempts.started_at (recent failure
rate and the last attempt, read by the alert checks)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.kit.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('admin', 'manager', 'sales', 'analyst', 'ingest')"
NEW_ROLES = "role IN ('admin', 'manager', 'sales', 'analyst', 'ingest', 'monitoring')"


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("state IN ('firing', 'ok')", name=op.f("ck_alert_state_state")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_state")),
    )
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.create_index("idx_job_attempts_started", ["started_at"], unique=False)
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_tokens_role"), type_="check")
        batch_op.create_check_constraint(op.f("ck_api_tokens_role"), NEW_ROLES)


def downgrade() -> None:
    op.execute("DELETE FROM api_tokens WHERE role = 'monitoring'")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_tokens_role"), type_="check")
        batch_op.create_check_constraint(op.f("ck_api_tokens_role"), OLD_ROLES)
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.drop_index("idx_job_attempts_started")
    op.drop_table("alert_state")
