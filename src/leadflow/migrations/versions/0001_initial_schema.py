"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 09:50:24.985296
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.kit.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'manager', 'sales', 'analyst', 'ingest')", name=op.f("ck_api_tokens_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("campaign_type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("budget", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("target_leads", sa.Integer(), nullable=True),
        sa.Column("landing_page_url", sa.Text(), nullable=True),
        sa.Column("auto_assign", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("assigned_to", sa.String(length=100), nullable=True),
        sa.Column("notification_emails", sa.JSON(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("allowed_origins", sa.JSON(), nullable=True),
        sa.Column("services", sa.JSON(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "campaign_type IN ('service', 'product', 'consultation', 'assessment')",
            name=op.f("ck_campaigns_campaign_type"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'paused', 'completed')", name=op.f("ck_campaigns_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_table(
        "leads",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("public_id", sa.String(length=17), nullable=False),
        sa.Column("first_name", sa.LargeBinary(), nullable=False),
        sa.Column("last_name", sa.LargeBinary(), nullable=False),
        sa.Column("email", sa.LargeBinary(), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("email_domain", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("company", sa.LargeBinary(), nullable=True),
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("campaign_name", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("medium", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=50), nullable=True),
        sa.Column("utm_source", sa.String(length=255), nullable=True),
        sa.Column("utm_medium", sa.String(length=255), nullable=True),
        sa.Column("utm_campaign", sa.String(length=255), nullable=True),
        sa.Column("utm_term", sa.String(length=255), nullable=True),
        sa.Column("utm_content", sa.String(length=255), nullable=True),
        sa.Column("service_interest", sa.String(length=100), nullable=True),
        sa.Column("urgency", sa.String(length=50), nullable=True),
        sa.Column("message", sa.LargeBinary(), nullable=True),
        sa.Column("budget_range", sa.String(length=50), nullable=True),
        sa.Column("timeline", sa.String(length=50), nullable=True),
        sa.Column("visitor_id", sa.String(length=255), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("ip_address", sa.LargeBinary(), nullable=True),
        sa.Column("user_agent", sa.LargeBinary(), nullable=True),
        sa.Column("referrer_url", sa.Text(), nullable=True),
        sa.Column("landing_page_url", sa.Text(), nullable=True),
        sa.Column("time_on_page_seconds", sa.Integer(), nullable=True),
        sa.Column("visit_count", sa.Integer(), nullable=True),
        sa.Column("returning_visitor", sa.Boolean(), nullable=False),
        sa.Column("form_type", sa.String(length=50), nullable=True),
        sa.Column("form_version", sa.String(length=50), nullable=True),
        sa.Column("consent_given", sa.Boolean(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("lead_score", sa.Integer(), nullable=False),
        sa.Column("lead_grade", sa.String(length=1), nullable=False),
        sa.Column("score_breakdown", sa.JSON(), nullable=True),
        sa.Column("qualification_status", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("assigned_to", sa.String(length=100), nullable=True),
        sa.Column("follow_up_date", UTCDateTime(), nullable=True),
        sa.Column("deal_value", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("previous_lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("contacted_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("lead_grade IN ('A', 'B', 'C', 'D')", name=op.f("ck_leads_lead_grade")),
        sa.CheckConstraint(
            "qualification_status IN ('unqualified', 'marketing_qualified', 'sales_qualified', 'customer', 'lost')",
            name=op.f("ck_leads_qualification_status"),
        ),
        sa.CheckConstraint(
            "status IN ('new', 'contacted', 'qualified', 'proposal', 'closed_won', 'closed_lost')",
            name=op.f("ck_leads_status"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_leads_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint("public_id", name=op.f("uq_leads_public_id")),
        sa.UniqueConstraint("uuid", name=op.f("uq_leads_uuid")),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index("idx_assigned", ["assigned_to", "status"], unique=False)
        batch_op.create_index("idx_campaign", ["campaign_id", "created_at"], unique=False)
        batch_op.create_index("idx_created", ["created_at"], unique=False)
        batch_op.create_index("idx_email", ["email_hash", "campaign_id", "created_at"], unique=False)
        batch_op.create_index("idx_lead_score", ["lead_score"], unique=False)
        batch_op.create_index("idx_status", ["status", "created_at"], unique=False)
        batch_op.create_index("idx_visitor", ["visitor_id"], unique=False)
        batch_op.create_index("uq_leads_idempotency", ["campaign_id", "idempotency_key"], unique=True)

    op.create_table(
        "jobs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'running', 'done', 'dead')", name=op.f("ck_jobs_status")),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_jobs_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("idx_jobs_claim", ["status", "run_at"], unique=False)
        batch_op.create_index("idx_jobs_lead", ["lead_id"], unique=False)

    op.create_table(
        "lead_activities",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("activity_type", sa.String(length=50), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("performed_by", sa.String(length=100), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_lead_activities_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_activities")),
    )
    with op.batch_alter_table("lead_activities", schema=None) as batch_op:
        batch_op.create_index("idx_lead_activities", ["lead_id", "created_at"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes (MySQL refuses to drop an index a foreign key still uses).
    for table in ("lead_activities", "jobs", "leads", "campaigns", "api_tokens"):
        op.drop_table(table)
