"""Salesforce (REST API): upsert a Lead by Leadflow's lead id, authenticated by OAuth client credentials.

Token: ``POST SALESFORCE_TOKEN_URL`` (form: ``grant_type=client_credentials``, ``client_id``,
``client_secret``; the URL must be the org's My Domain, e.g.
``https://acme.my.salesforce.com/services/oauth2/token``). The answer's ``access_token`` is cached on the
connector instance and its ``instance_url`` is used unless ``SALESFORCE_INSTANCE_URL`` is set. A 401
from the data API (``INVALID_SESSION_ID``: token expired or revoked) fetches a new token once and
repeats the request.

Upsert: ``PATCH {instance}/services/data/{version}/sobjects/Lead/Leadflow_Id__c/{lead_id}`` with the
Lead's fields. Salesforce creates the Lead when no record has that external id (201, ``created: true``)
and updates it otherwise (200, ``created: false``; 204 before API v46), so retries never duplicate.
A corrected lead (rectification) is upserted again and so updates the same Lead.

Erasure: ``DELETE {instance}/services/data/{version}/sobjects/Lead/Leadflow_Id__c/{lead_id}`` for each
of the person's leads (204; 404 ``NOT_FOUND`` when the Lead is not there, which counts as done).
Salesforce moves deleted records to its recycle bin for 15 days before purging them (or at once
when the org empties it); Leads converted to Contacts are not deleted by this.

Org set-up (custom fields on Lead, API names as below):

======================== ================================ ==================================
field                    type                             value
======================== ================================ ==================================
``Leadflow_Id__c``       Text(17), External ID, Unique    public lead id (``lead_…``)
``Leadflow_Score__c``    Number(3, 0)                     lead score 0-100
``Leadflow_Grade__c``    Text(1)                          lead grade A-D
``Leadflow_Campaign__c`` Text(100)                        campaign id
``Leadflow_Source__c``   Text(100)                        capture source (landing-page, …)
======================== ================================ ==================================

Standard fields written: FirstName, LastName, Email, Phone, Company ("Unknown" when the form had none:
Salesforce requires it), LeadSource ("Web", or "Other" for manual entry and imports), Rating (A → Hot,
B → Warm, C/D → Cold), Description (the form's message), Website (the company's domain). Status and
OwnerId are left to Salesforce (default status, assignment rules).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from leadflow.config import SalesforceSettings, Settings, secret_text
from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    DeliveryError,
    LeadView,
    Outcome,
    PermanentError,
    PrivacySubject,
    RetriableError,
    campaign_toggle,
)
from leadflow.integrations.http import check, excerpt, parse_retry_after, redact, send

EXTERNAL_ID_FIELD = "Leadflow_Id__c"
RATING = {"A": "Hot", "B": "Warm", "C": "Cold", "D": "Cold"}
# Field lengths of the standard Lead fields (a longer value is refused with STRING_TOO_LONG).
LIMITS = {
    "FirstName": 40,
    "LastName": 80,
    "Company": 255,
    "Phone": 40,
    "Description": 32000,
    "Website": 255,
    "Leadflow_Campaign__c": 100,
    "Leadflow_Source__c": 100,
}
# Salesforce error codes worth retrying although the status is 4xx.
RETRIABLE_CODES = {"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE"}
NON_WEB_SOURCES = {"manual", "import"}


def api_version(config: SalesforceSettings) -> str:
    """``v60.0`` whether SALESFORCE_API_VERSION was written with or without the ``v``."""
    v = config.api_version.strip()
    return v if v.startswith("v") else f"v{v}"


@dataclass(frozen=True, slots=True)
class _Token:
    access_token: str
    instance_url: str


def lead_fields(lead: LeadView) -> dict[str, Any]:
    """The Lead sObject fields for a lead (the external id goes in the URL, not the body)."""
    fields: dict[str, Any] = {
        "FirstName": lead.first_name or None,
        "LastName": lead.last_name.strip() or "Unknown",
        "Email": lead.email.strip().lower(),
        "Phone": lead.phone,
        "Company": (lead.company or "").strip() or "Unknown",
        "LeadSource": "Other" if lead.source in NON_WEB_SOURCES else "Web",
        "Rating": RATING.get(lead.lead_grade),
        "Description": lead.message,
        "Website": lead.company_domain,
        "Leadflow_Score__c": lead.lead_score,
        "Leadflow_Grade__c": lead.lead_grade,
        "Leadflow_Campaign__c": lead.campaign_id,
        "Leadflow_Source__c": lead.source,
    }
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str) and key in LIMITS:
            value = value[: LIMITS[key]]
        out[key] = value
    return out


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Salesforce's error list (``[{"errorCode", "message", "fields"}]``), or [] when not that shape."""
    try:
        data = response.json()
    except ValueError:
        return []
    if isinstance(data, dict):  # OAuth errors: {"error", "error_description"}
        if "error" in data:
            return [{"errorCode": data.get("error"), "message": data.get("error_description", "")}]
        data = data.get("errors", [])
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _summary(response: httpx.Response) -> str:
    errors = _errors(response)
    if not errors:
        return response.text
    return "; ".join(f"{e.get('errorCode', 'ERROR')}: {e.get('message', '')}" for e in errors)


class SalesforceConnector(Connector):
    name: ClassVar[str] = "salesforce"
    max_attempts: ClassVar[int] = 8
    # The CRM is where sales work every lead (the lead asked to be contacted); it is ours, not shared.
    needs_consent: ClassVar[bool] = False
    shares_data: ClassVar[bool] = False
    counts_as_sync: ClassVar[bool] = True
    resyncs_corrections: ClassVar[bool] = True  # upsert by Leadflow_Id__c updates the same Lead

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: SalesforceSettings = settings.salesforce
        self._token: _Token | None = None
        self._lock: asyncio.Lock | None = None

    def configured(self) -> bool:
        return bool(
            self.config.client_id and secret_text(self.config.client_secret) and self.config.token_url
        )

    def wants(self, lead: LeadView) -> bool:
        return campaign_toggle(lead, self.name) is not False

    # -- OAuth ------------------------------------------------------------------------------------
    async def _access(self, ctx: DeliveryContext, *, stale: _Token | None = None) -> _Token:
        """The cached token, or a new one (when none is cached or the cached one is ``stale``)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is not None and self._token is not stale:
                return self._token
            self._token = await self._fetch_token(ctx)
            return self._token

    async def _fetch_token(self, ctx: DeliveryContext) -> _Token:
        secret = secret_text(self.config.client_secret)
        if not self.configured() or secret is None or self.config.client_id is None:
            raise PermanentError(
                "Salesforce is not configured (SALESFORCE_CLIENT_ID / SALESFORCE_CLIENT_SECRET)"
            )
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": secret,
        }
        response = await send(
            ctx.http,
            "POST",
            self.config.token_url,
            data=form,
            headers={"Accept": "application/json"},
        )
        try:
            check(response)
        except DeliveryError as exc:
            exc.args = (f"Salesforce token request failed ({response.status_code})",)
            exc.response_excerpt = excerpt(_summary(response))
            raise
        try:
            data = response.json()
            access_token = str(data["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(
                "Salesforce token response has no access_token", status_code=response.status_code
            ) from exc
        instance = self.config.instance_url or data.get("instance_url")
        if not instance:
            raise PermanentError("Salesforce gave no instance_url and SALESFORCE_INSTANCE_URL is not set")
        return _Token(access_token=access_token, instance_url=str(instance).rstrip("/"))

    # -- delivery ---------------------------------------------------------------------------------
    def _upsert_url(self, token: _Token, lead: LeadView) -> str:
        return self._lead_url(token, lead.lead_id)

    def _lead_url(self, token: _Token, lead_id: str) -> str:
        return (
            f"{token.instance_url}/services/data/{api_version(self.config)}/sobjects/Lead/"
            f"{EXTERNAL_ID_FIELD}/{quote(lead_id, safe='')}"
        )

    async def _upsert(self, ctx: DeliveryContext, token: _Token, lead: LeadView) -> httpx.Response:
        return await send(
            ctx.http,
            "PATCH",
            self._upsert_url(token, lead),
            headers={
                "Authorization": f"Bearer {token.access_token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            json=lead_fields(lead),
        )

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        token = await self._access(ctx)
        response = await self._upsert(ctx, token, lead)
        if response.status_code == 401:  # expired or revoked session: one fresh token, one more try
            token = await self._access(ctx, stale=token)
            response = await self._upsert(ctx, token, lead)
        pii = (lead.email, lead.phone, lead.first_name, lead.last_name, lead.company, lead.message)
        if response.status_code == 300:
            raise PermanentError(
                f"several Salesforce Leads share {EXTERNAL_ID_FIELD} {lead.lead_id}",
                status_code=300,
                response_excerpt=excerpt(redact(response.text, *pii)),
            )
        codes = {str(e.get("errorCode")) for e in _errors(response)}
        if response.status_code >= 400 and codes & RETRIABLE_CODES:
            raise RetriableError(
                f"Salesforce is temporarily refusing writes ({', '.join(sorted(codes & RETRIABLE_CODES))})",
                status_code=response.status_code,
                response_excerpt=excerpt(redact(_summary(response), *pii)),
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        try:
            check(response)
        except DeliveryError as exc:
            exc.response_excerpt = excerpt(redact(_summary(response), *pii))
            raise
        record_id: str | None = None
        created = response.status_code == 201
        if response.content:
            try:
                data = response.json()
            except ValueError:
                data = {}
            if isinstance(data, dict):
                record_id = str(data["id"]) if data.get("id") else None
                created = bool(data.get("created", created))
        return Outcome(
            status_code=response.status_code,
            response_excerpt=json.dumps({"id": record_id, "created": created}),
            external_id=record_id,
            detail=f"Salesforce Lead {record_id or lead.lead_id} {'created' if created else 'updated'}",
        )

    async def _delete(self, ctx: DeliveryContext, token: _Token, lead_id: str) -> httpx.Response:
        return await send(
            ctx.http,
            "DELETE",
            self._lead_url(token, lead_id),
            headers={"Authorization": f"Bearer {token.access_token}", "Accept": "application/json"},
        )

    async def erase(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        """Delete the Lead of each of the person's lead ids; a Lead that is not there counts as done."""
        deleted = missing = 0
        status: int | None = None
        for lead_id in subject.lead_ids:
            token = await self._access(ctx)
            response = await self._delete(ctx, token, lead_id)
            if response.status_code == 401:
                token = await self._access(ctx, stale=token)
                response = await self._delete(ctx, token, lead_id)
            status = response.status_code
            codes = {str(e.get("errorCode")) for e in _errors(response)}
            if response.status_code == 404:
                missing += 1
                continue
            if response.status_code >= 400 and codes & RETRIABLE_CODES:
                raise RetriableError(
                    "Salesforce is temporarily refusing deletes",
                    status_code=response.status_code,
                    response_excerpt=excerpt(redact(_summary(response), subject.email)),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            try:
                check(response)
            except DeliveryError as exc:
                exc.response_excerpt = excerpt(redact(_summary(response), subject.email))
                raise
            deleted += 1
        return Outcome(
            status_code=status,
            response_excerpt=json.dumps({"deleted": deleted, "not_found": missing}),
            detail=f"Salesforce Leads deleted: {deleted}, not found: {missing}",
        )
