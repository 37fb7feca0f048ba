"""consent history (consent_events) and used one-click unsubscribe links (unsubscribe_uses)

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.kit.models import UTCDateTime

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "action IN ('grant', 'withdraw', 'do_not_sell', 'allow_sale')",
            name=op.f("ck_consent_events_consent_action"),
        ),
        sa.CheckConstraint(
            "channel IN ('api', 'cli', 'unsubscribe_link', 'one_click', 'lead_update')",
            name=op.f("ck_consent_events_consent_channel"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index("idx_consent_events_person", ["email_hash", "created_at"], unique=False)
        batch_op.create_index("idx_consent_events_created", ["created_at"], unique=False)
    op.create_table(
        "unsubscribe_uses",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_unsubscribe_uses")),
    )
    with op.batch_alter_table("unsubscribe_uses", schema=None) as batch_op:
        batch_op.create_index("idx_unsubscribe_uses_used", ["used_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("unsubscribe_uses", schema=None) as batch_op:
        batch_op.drop_index("idx_unsubscribe_uses_used")
    op.drop_table("unsubscribe_uses")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index("idx_consent_events_created")
        batch_op.drop_index("idx_consent_events_person")
    op.drop_table("consent_events")
