"""The campaigns table (spec columns plus capture protection and the campaign's service list)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.kit.models import Base, UTCDateTime

CAMPAIGN_TYPES = ("service", "product", "consultation", "assessment")
CAMPAIGN_STATUSES = ("draft", "active", "paused", "completed")


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(f"campaign_type IN {CAMPAIGN_TYPES}", name="campaign_type"),
        CheckConstraint(f"status IN {CAMPAIGN_STATUSES}", name="status"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    campaign_type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    budget: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    target_leads: Mapped[int | None] = mapped_column(Integer)
    landing_page_url: Mapped[str | None] = mapped_column(Text)

    auto_assign: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    assigned_to: Mapped[str | None] = mapped_column(String(100))
    notification_emails: Mapped[list[str] | None] = mapped_column(JSON)

    # Capture protection: SHA-256 of the campaign token (compared in constant time) and allowed origins.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    allowed_origins: Mapped[list[str] | None] = mapped_column(JSON)
    # The campaign's own service catalog, added to the global one for intent scoring.
    services: Mapped[list[str] | None] = mapped_column(JSON)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The hosted form (GET /f/{id}) and the no-JS form endpoint (migration 0009).
    form_title: Mapped[str | None] = mapped_column(String(255))
    form_intro: Mapped[str | None] = mapped_column(Text)
    thank_you_url: Mapped[str | None] = mapped_column(Text)
    consent_text: Mapped[str | None] = mapped_column(Text)
    privacy_notice_url: Mapped[str | None] = mapped_column(Text)
    privacy_notice_version: Mapped[str | None] = mapped_column(String(50))
    frame_ancestors: Mapped[list[str] | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AnalyticsDay(Base):
    """A stored slot of a campaign's analytics, with its totals and its ``facets``.

    ``part`` says which part of the UTC ``day``: 24 the whole (closed) day; on a day not closed yet,
    0-23 a closed hour, or 100 + 6 * hour + minute // 10 a closed ten minutes of an hour not closed
    yet. ``facets`` holds five parallel lists - facet, value, minutes, leads, qualified - of the slot's
    leads per ``channel``, ``source``, ``grade``, ``status``, ``content`` (``utm_content``, with
    qualified leads) and ``speed`` (``value`` the rep, ``minutes`` the capture-to-contact bucket). One
    row is one slot: it is stored or dropped whole (``campaigns.rollup``).
    """

    __tablename__ = "analytics_days"
    __table_args__ = (Index("idx_analytics_days_day", "day"),)

    campaign_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    part: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    leads: Mapped[int] = mapped_column(Integer)
    qualified: Mapped[int] = mapped_column(Integer)
    won: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[int] = mapped_column(BigInteger)
    revenue: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    facets: Mapped[list[Any]] = mapped_column(JSON)


class AnalyticsState(Base):
    """Bumped by every invalidation: a materialisation computed before a bump is not stored."""

    __tablename__ = "analytics_state"

    campaign_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
