"""capture_claims: per-person / per-idempotency-key lock rows that serialise concurrent captures of
the same person across API processes (issue 8, item 1)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.kit.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capture_claims",
        sa.Column("claim_key", sa.String(length=64), nullable=False),
        sa.Column("touched_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("claim_key", name=op.f("pk_capture_claims")),
    )
    op.create_index("idx_capture_claims_touched", "capture_claims", ["touched_at"], unique=False)


def downgrade() -> None:
    op.drop_index("idx_capture_claims_touched", table_name="capture_claims")
    op.drop_table("capture_claims")
