"""Team members who receive leads, and ordered routing rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.kit.models import Base, BigId, UTCDateTime


class TeamMember(Base):
    __tablename__ = "team_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(255), unique=True)
    phone: Mapped[str | None] = mapped_column(String(50))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    services: Mapped[list[str] | None] = mapped_column(JSON)  # empty: any service
    regions: Mapped[list[str] | None] = mapped_column(
        JSON
    )  # ISO countries / "US-CA" subdivisions; empty: any
    capacity: Mapped[int] = mapped_column(Integer, default=50)  # open leads at most
    # {"timezone": "Europe/Berlin", "days": [0,1,2,3,4], "start": "09:00", "end": "17:00"}; null: always
    working_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RoutingRule(Base):
    """First matching active rule (by position) picks the member; conditions are ANDed."""

    __tablename__ = "routing_rules"
    __table_args__ = (Index("idx_routing_rules_position", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # {"campaign_ids": [...], "services": [...], "grades": ["A"], "min_score": 80, "countries": ["DE"]}
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON)
    member_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("team_members.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
