"""leads.phone_hash: a blind index of the phone number (E.164), so staff find a lead by its phone
number in the workspace without any plaintext stored. Leads stored before it get theirs from
``leadflow leads index-phones`` (it needs the encryption key, which migrations do not have).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 21:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("idx_phone", ["phone_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("idx_phone")
        batch_op.drop_column("phone_hash")
