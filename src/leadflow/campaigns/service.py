"""Campaign rules: creation, updates, capture-time look-up (briefly cached) and token checks."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.campaigns import repository as repo
from leadflow.campaigns import rollup
from leadflow.campaigns.repository import CampaignRow
from leadflow.campaigns.schemas import CampaignCreate, CampaignOut, CampaignUpdate, CampaignWithToken
from leadflow.db import database_unreachable
from leadflow.errors import ApiError
from leadflow.kit.cache import SingleFlightCache
from leadflow.kit.clock import utcnow

CAMPAIGN_TOKEN_PREFIX = "lfc_"  # noqa: S105 - a prefix, not a secret


def hash_campaign_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_campaign_token() -> str:
    return CAMPAIGN_TOKEN_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class CaptureCampaign:
    """What the capture path needs to know about a campaign."""

    id: str
    name: str
    status: str
    token_hash: str | None
    allowed_origins: frozenset[str]
    services: tuple[str, ...]
    end_date: date | None = None  # the last day (UTC) it takes leads (capture.policy.campaign_closed)

    def token_ok(self, presented: str | None) -> bool:
        if self.token_hash is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(hash_campaign_token(presented), self.token_hash)

    def origin_ok(self, origin: str | None) -> bool:
        if not self.allowed_origins or origin is None:
            return True
        return origin.rstrip("/").lower() in self.allowed_origins


def to_capture(row: CampaignRow) -> CaptureCampaign:
    return CaptureCampaign(
        id=row.id,
        name=row.name,
        status=row.status,
        token_hash=row.token_hash,
        allowed_origins=frozenset(row.allowed_origins or ()),
        services=tuple(row.services or ()),
        end_date=row.end_date,
    )


class CampaignCache:
    """Per-process read-through cache for the capture path (entries live ``ttl`` seconds).

    Changes made through this process invalidate at once; other replicas see them within ``ttl``.
    On SQLite a miss is one primary-key read on the read-only point reader (no wait for the engine's
    single pooled connection, which the capture writer may hold while it commits).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        ttl: float,
        point_read: Callable[[str], CaptureCampaign | None] | None = None,
    ) -> None:
        self._engine = engine
        self._point_read = point_read  # SQLite: leads.capture.store.capture_campaign on the point reader
        self._cache: SingleFlightCache[str, CaptureCampaign | None] = SingleFlightCache(ttl, self._load)
        # The last version of each existing campaign this process loaded: capture keeps using it while
        # the database cannot be reached (leads then go to the capture spool). Bounded by the campaigns.
        self._last_known: dict[str, CaptureCampaign] = {}

    def invalidate(self, campaign_id: str | None = None) -> None:
        self._cache.invalidate(campaign_id)

    async def get(self, campaign_id: str) -> CaptureCampaign | None:
        try:
            return await self._cache.get(campaign_id)
        except Exception as exc:
            stale = self._last_known.get(campaign_id)
            if stale is None or not database_unreachable(exc):
                raise
            return stale

    async def _load(self, campaign_id: str) -> CaptureCampaign | None:
        found = await self._read(campaign_id)
        if found is not None:
            self._last_known[campaign_id] = found
        else:
            self._last_known.pop(campaign_id, None)
        return found

    async def _read(self, campaign_id: str) -> CaptureCampaign | None:
        if self._point_read is not None:
            return self._point_read(campaign_id)
        async with self._engine.connect() as conn:
            row = await repo.get(conn, campaign_id)
        return to_capture(row) if row is not None else None

    async def any_origin_allowed(self, origin: str) -> bool:
        """For CORS pre-flight (no body, so no campaign yet): is any active campaign open to ``origin``?"""
        async with self._engine.connect() as conn:
            rows = await repo.list_all(conn, status="active")
        origin = origin.rstrip("/").lower()
        return any(not row.allowed_origins or origin in row.allowed_origins for row in rows)


def to_out(row: CampaignRow) -> CampaignOut:
    data = asdict(row)
    data["notification_emails"] = data.get("notification_emails") or []
    data["allowed_origins"] = data.get("allowed_origins") or []
    data["services"] = data.get("services") or []
    data["frame_ancestors"] = data.get("frame_ancestors") or []
    data["has_token"] = data.get("token_hash") is not None
    data["integrations"] = (data.get("settings") or {}).get("integrations") or {}
    return CampaignOut.model_validate(data)


async def get_or_404(conn: AsyncConnection, campaign_id: str) -> CampaignRow:
    row = await repo.get(conn, campaign_id)
    if row is None:
        raise ApiError(404, "CAMPAIGN_NOT_FOUND", "Campaign not found", field="campaign_id")
    return row


async def create(conn: AsyncConnection, body: CampaignCreate) -> CampaignWithToken:
    if await repo.get(conn, body.id) is not None:
        raise ApiError(409, "CAMPAIGN_EXISTS", "A campaign with this id already exists", field="id")
    values = body.model_dump(exclude={"generate_token", "integrations"})
    values["settings"] = {"integrations": body.integrations or {}}
    values["status"] = values["status"] or "active"
    values["auto_assign"] = True if values["auto_assign"] is None else values["auto_assign"]
    values["notification_emails"] = [str(e) for e in body.notification_emails or []]
    token = new_campaign_token() if body.generate_token else None
    values["token_hash"] = hash_campaign_token(token) if token else None
    values["created_at"] = values["updated_at"] = utcnow()
    try:
        await repo.create(conn, values)
        await rollup.track(conn, body.id)
    except IntegrityError as exc:
        raise ApiError(409, "CAMPAIGN_EXISTS", "A campaign with this id already exists", field="id") from exc
    row = await get_or_404(conn, body.id)
    return CampaignWithToken(**to_out(row).model_dump(), token=token)


async def update(conn: AsyncConnection, campaign_id: str, body: CampaignUpdate) -> CampaignOut:
    row = await get_or_404(conn, campaign_id)
    values = body.model_dump(exclude_unset=True)
    if "integrations" in values:
        values["settings"] = {**(row.settings or {}), "integrations": values.pop("integrations") or {}}
    for required in ("name", "campaign_type", "status", "auto_assign"):
        if required in values and values[required] is None:
            raise ApiError(400, "VALIDATION_ERROR", f"{required} cannot be null", field=required)
    if "notification_emails" in values:
        values["notification_emails"] = [str(e) for e in body.notification_emails or []]
    start = values.get("start_date", row.start_date)
    end = values.get("end_date", row.end_date)
    if start and end and end < start:
        raise ApiError(400, "VALIDATION_ERROR", "end_date is before start_date", field="end_date")
    if values:
        values["updated_at"] = utcnow()
        await repo.update_fields(conn, campaign_id, values)
    return to_out(await get_or_404(conn, campaign_id))


async def set_token(conn: AsyncConnection, campaign_id: str, enabled: bool) -> CampaignWithToken:
    await get_or_404(conn, campaign_id)
    token = new_campaign_token() if enabled else None
    await repo.update_fields(
        conn,
        campaign_id,
        {"token_hash": hash_campaign_token(token) if token else None, "updated_at": utcnow()},
    )
    row = await get_or_404(conn, campaign_id)
    return CampaignWithToken(**to_out(row).model_dump(), token=token)


async def delete(conn: AsyncConnection, campaign_id: str) -> None:
    await get_or_404(conn, campaign_id)
    if await repo.has_leads(conn, campaign_id):
        raise ApiError(
            409,
            "CAMPAIGN_HAS_LEADS",
            "A campaign with leads cannot be deleted; set its status to completed instead",
        )
    await repo.remove(conn, campaign_id)
    await rollup.forget(conn, campaign_id)
