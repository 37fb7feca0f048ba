"""pipeline routing privacy audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:03:58.355144
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.kit.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target_type", sa.String(length=50), nullable=True),
        sa.Column("target_id", sa.String(length=100), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("idx_audit_actor", ["actor", "created_at"], unique=False)
        batch_op.create_index("idx_audit_created", ["created_at"], unique=False)
        batch_op.create_index("idx_audit_target", ["target_type", "target_id"], unique=False)

    op.create_table(
        "maintenance_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_state")),
    )
    op.create_table(
        "privacy_tombstones",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_tombstones")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_privacy_tombstones_email_hash")),
    )
    op.create_table(
        "team_members",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("phone", sa.String(length=50), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("services", sa.JSON(), nullable=True),
        sa.Column("regions", sa.JSON(), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("working_hours", sa.JSON(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("last_assigned_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_members")),
        sa.UniqueConstraint("email", name=op.f("uq_team_members_email")),
    )
    op.create_table(
        "routing_rules",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["team_members.id"],
            name=op.f("fk_routing_rules_member_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.create_index("idx_routing_rules_position", ["position"], unique=False)

    op.create_table(
        "job_attempts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_attempts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_attempts")),
    )
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.create_index("idx_job_attempts_job", ["job_id", "attempt"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedup_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("finished_at", UTCDateTime(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_jobs_dedup_key"), ["dedup_key"])

    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_kind", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("company_domain", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("geo_country", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("geo_region", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("geo_city", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("enrichment", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("enriched_at", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "assigned_member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("privacy_regime", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("do_not_sell", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("consent_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("consent_notice_version", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("anonymized_at", UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_leads_assigned_member_id_team_members"),
            "team_members",
            ["assigned_member_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_leads_assigned_member_id_team_members"), type_="foreignkey")
        batch_op.drop_column("anonymized_at")
        batch_op.drop_column("consent_notice_version")
        batch_op.drop_column("consent_at")
        batch_op.drop_column("do_not_sell")
        batch_op.drop_column("privacy_regime")
        batch_op.drop_column("assigned_member_id")
        batch_op.drop_column("enriched_at")
        batch_op.drop_column("enrichment")
        batch_op.drop_column("geo_city")
        batch_op.drop_column("geo_region")
        batch_op.drop_column("geo_country")
        batch_op.drop_column("company_domain")
        batch_op.drop_column("email_kind")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_jobs_dedup_key"), type_="unique")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("dedup_key")

    # Dropping a table drops its indexes (MySQL refuses to drop an index a foreign key still uses).
    for table in ("job_attempts", "routing_rules", "team_members", "privacy_tombstones", "maintenance_state"):
        op.drop_table(table)
    op.drop_table("audit_log")
