"""The connector of each ``deliver`` job as a column, indexed: the integrations page's look-ups.

The page showed each connector's last success and dead jobs by matching ``dedup_key LIKE
'deliver:<name>:%'``, which no index serves (and which missed correction deliveries, keyed
``correct:<name>:...``): a scan of every done job, per connector, per page view. Existing ``deliver``
jobs get their connector from the dedup key (``deliver:<name>:<id>`` or ``correct:<name>:...``).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 08:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("connector", sa.String(50), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        name = "split_part(dedup_key, ':', 2)"
    elif dialect == "sqlite":
        rest = "substr(dedup_key, instr(dedup_key, ':') + 1)"
        name = f"substr({rest}, 1, instr({rest}, ':') - 1)"
    else:  # MySQL / MariaDB
        name = "SUBSTRING_INDEX(SUBSTRING_INDEX(dedup_key, ':', 2), ':', -1)"
    op.execute(
        f"UPDATE jobs SET connector = {name} "  # noqa: S608 - a constant expression per dialect
        "WHERE kind = 'deliver' AND (dedup_key LIKE 'deliver:%:%' OR dedup_key LIKE 'correct:%:%')"
    )
    op.create_index("idx_jobs_connector", "jobs", ["connector", "status", "finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("idx_jobs_connector", table_name="jobs")
    op.drop_column("jobs", "connector")
