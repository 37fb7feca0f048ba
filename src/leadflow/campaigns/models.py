"""The campaigns table (spec columns plus capture protection and the campaign's service list)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, Integer, Numeric, String, Text, true
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

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
