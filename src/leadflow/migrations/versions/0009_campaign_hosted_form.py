"""campaign fields for the hosted form (/f/{campaign_id}) and the no-JS form endpoint

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (
    ("form_title", sa.String(255)),
    ("form_intro", sa.Text()),
    ("thank_you_url", sa.Text()),
    ("consent_text", sa.Text()),
    ("privacy_notice_url", sa.Text()),
    ("privacy_notice_version", sa.String(50)),
    ("frame_ancestors", sa.JSON()),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("campaigns", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
