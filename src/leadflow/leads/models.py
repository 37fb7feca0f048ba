"""The leads and lead_activities tables.

Personal fields are stored as AES-256-GCM ciphertext (``LargeBinary``); ``email_hash`` is the HMAC
blind index used for look-ups and de-duplication. Column names follow the spec.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.kit.models import Base, BigId, UTCDateTime

GRADES = ("A", "B", "C", "D")
QUALIFICATION_STATUSES = ("unqualified", "marketing_qualified", "sales_qualified", "customer", "lost")
STATUSES = ("new", "contacted", "qualified", "proposal", "closed_won", "closed_lost")
SOURCES = ("landing-page", "modal", "contact-form", "embed", "manual", "import")
PII_FIELDS = ("first_name", "last_name", "email", "phone", "company", "message", "ip_address", "user_agent")
# The form's optional fields: capture and the worker's re-score count those a lead filled in
# (``ScoreInput.filled_optional``); the score's form-completion rule asks for all of them.
OPTIONAL_FIELDS = ("phone", "company", "service_interest", "urgency", "message", "budget_range", "timeline")

# The columns of ``idx_analytics`` (migrations 0005 and 0014): what ``campaigns.rollup`` scans.
ANALYTICS_INDEX = (
    "campaign_id",
    "created_at",
    "source",
    "utm_content",
    "qualification_status",
    "status",
    "lead_score",
    "deal_value",
    "channel",
    "lead_grade",
    "assigned_to",
    "contacted_at",
)


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        CheckConstraint(f"lead_grade IN {GRADES}", name="lead_grade"),
        CheckConstraint(f"qualification_status IN {QUALIFICATION_STATUSES}", name="qualification_status"),
        CheckConstraint(f"status IN {STATUSES}", name="status"),
        Index("idx_campaign", "campaign_id", "created_at"),
        Index("idx_email", "email_hash", "campaign_id", "created_at"),
        Index("idx_status", "status", "created_at"),
        Index("idx_lead_score", "lead_score"),
        Index("idx_created", "created_at"),
        Index("idx_visitor", "visitor_id"),
        Index("idx_phone", "phone_hash"),
        Index("idx_follow_up", "follow_up_date"),
        # The inbox (leads/repository.py INBOX_ORDER, DUE_ORDER): one range per open status.
        Index("idx_open_order", "status", "lead_grade", "created_at", "id"),
        Index("idx_owner_order", "assigned_to", "status", "lead_grade", "created_at", "id"),
        Index("idx_open_due", "status", "follow_up_date", "id"),
        Index("idx_owner_due", "assigned_to", "status", "follow_up_date", "id"),
        # The lead list's common filters in its order (by id): it stops after a page instead of sorting.
        Index("idx_list_status", "status", "id"),
        Index("idx_list_status_grade", "status", "lead_grade", "id"),
        Index("idx_list_campaign", "campaign_id", "id"),
        Index("idx_list_assigned", "assigned_to", "id"),
        Index("idx_assigned_member", "assigned_member_id", "status"),
        # Covering index for analytics: a campaign's days are one range of it, every column the
        # analytics sums read is in it (live scans and the stored sums are index-only scans).
        Index("idx_analytics", *ANALYTICS_INDEX),
        Index("uq_leads_idempotency", "campaign_id", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    public_id: Mapped[str] = mapped_column(String(17), unique=True)

    # Contact information (encrypted)
    first_name: Mapped[bytes] = mapped_column(LargeBinary)
    last_name: Mapped[bytes] = mapped_column(LargeBinary)
    email: Mapped[bytes] = mapped_column(LargeBinary)
    email_hash: Mapped[str] = mapped_column(String(64))
    email_domain: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_hash: Mapped[str | None] = mapped_column(String(64))  # blind index of the E.164 number
    company: Mapped[bytes | None] = mapped_column(LargeBinary)

    # Campaign attribution
    campaign_id: Mapped[str] = mapped_column(String(100), ForeignKey("campaigns.id"))
    campaign_name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(100))
    medium: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(50))
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_term: Mapped[str | None] = mapped_column(String(255))
    utm_content: Mapped[str | None] = mapped_column(String(255))

    # Lead details
    service_interest: Mapped[str | None] = mapped_column(String(100))
    urgency: Mapped[str | None] = mapped_column(String(50))
    message: Mapped[bytes | None] = mapped_column(LargeBinary)
    budget_range: Mapped[str | None] = mapped_column(String(50))
    timeline: Mapped[str | None] = mapped_column(String(50))

    # Technical tracking
    visitor_id: Mapped[str | None] = mapped_column(String(255))
    session_id: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_agent: Mapped[bytes | None] = mapped_column(LargeBinary)
    referrer_url: Mapped[str | None] = mapped_column(Text)
    landing_page_url: Mapped[str | None] = mapped_column(Text)
    time_on_page_seconds: Mapped[int | None] = mapped_column(Integer)
    visit_count: Mapped[int | None] = mapped_column(Integer)
    returning_visitor: Mapped[bool] = mapped_column(Boolean, default=False)

    # Form metadata and consent
    form_type: Mapped[str | None] = mapped_column(String(50))
    form_version: Mapped[str | None] = mapped_column(String(50))
    consent_given: Mapped[bool] = mapped_column(Boolean, default=False)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Scoring
    lead_score: Mapped[int] = mapped_column(Integer, default=0)
    lead_grade: Mapped[str] = mapped_column(String(1), default="C")
    score_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    qualification_status: Mapped[str] = mapped_column(String(30), default="unqualified")

    # Processing
    status: Mapped[str] = mapped_column(String(20), default="new")
    assigned_to: Mapped[str | None] = mapped_column(String(100))
    follow_up_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deal_value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    previous_lead_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    contacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Enrichment (worker)
    email_kind: Mapped[str | None] = mapped_column(String(20))
    company_domain: Mapped[str | None] = mapped_column(String(255))
    geo_country: Mapped[str | None] = mapped_column(String(2))
    geo_region: Mapped[str | None] = mapped_column(String(100))
    geo_city: Mapped[str | None] = mapped_column(String(100))
    enrichment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enriched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assigned_member_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("team_members.id", ondelete="SET NULL")
    )

    # Privacy
    privacy_regime: Mapped[str | None] = mapped_column(String(10))  # gdpr | ccpa
    do_not_sell: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_notice_version: Mapped[str | None] = mapped_column(String(50))
    anonymized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


ActivityType = Literal[
    "created",
    "duplicate_submission",
    "previously_erased",
    "email_sent",
    "call_made",
    "meeting_scheduled",
    "proposal_sent",
    "status_changed",
    "note_added",
    "assigned",
    "follow_up_scheduled",
    "deal_value_set",
    "updated",
    "enriched",
    "scored",
    "notification_sent",
    "synced",
    "delivery_failed",
    "reminder_due",
    "anonymized",
    "consent_changed",
]
# The spec's six (email_sent … note_added) and those the system adds; written through ``leads.activities``.
ACTIVITY_TYPES: tuple[ActivityType, ...] = get_args(ActivityType)


class LeadActivity(Base):
    __tablename__ = "lead_activities"
    __table_args__ = (Index("idx_lead_activities", "lead_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("leads.id", ondelete="CASCADE")
    )
    activity_type: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    performed_by: Mapped[str | None] = mapped_column(String(100))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaptureClaim(Base):
    """A lock row per (campaign, person) and per (campaign, idempotency key) being captured.

    Capture upserts the claims of a batch, in key order, as the first statement of its transaction:
    the row locks serialise concurrent captures of the *same* person or key across processes and hosts
    (PostgreSQL, MySQL/MariaDB), while unrelated leads never wait for each other. The key is a SHA-256
    over the campaign id and the e-mail blind index (or the idempotency key): no personal data. Rows
    older than the de-duplication window are pruned by the capture writer.
    """

    __tablename__ = "capture_claims"
    __table_args__ = (Index("idx_capture_claims_touched", "touched_at"),)

    claim_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime)
