"""SendGrid Marketing Campaigns contacts (v3): add or update the lead as a marketing contact.

``PUT /v3/marketing/contacts`` with ``{"list_ids": [...], "contacts": [{"email", "first_name", ...}]}``.
SendGrid matches contacts by e-mail (stored lower-cased), so repeated deliveries update one contact.
The upsert is asynchronous: SendGrid answers ``202 {"job_id"}`` and processes the contact later.
Lists are ``SENDGRID_LIST_IDS`` or the campaign's ``integrations.sendgrid.list_ids``.

Only leads who gave consent and did not opt out of selling/sharing. Contacts are identified by e-mail
only (no ``external_id``): SendGrid requires every existing identifier on an update, and one person can
have several leads.

Erasure: :meth:`SendGridContactsConnector.delete_contact` looks the contact id up with
``POST /v3/marketing/contacts/search/emails`` (404 when none matches) and deletes it with
``DELETE /v3/marketing/contacts?ids=<id>`` (202, an asynchronous job). A contact upserted moments
before may not be searchable yet; retry the erasure later in that case.

Withdrawn consent / unsubscribe (:meth:`SendGridContactsConnector.unsubscribe`): the address is added
to the global unsubscribe list (``POST /v3/asm/suppressions/global`` ``{"recipient_emails": [...]}``,
201), so SendGrid delivers no marketing mail to it any more, and the marketing contact is deleted (so
it leaves every list), as for erasure.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import httpx

from leadflow.config import SendGridSettings, Settings, secret_text
from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    LeadView,
    Outcome,
    PermanentError,
    PrivacySubject,
    RetriableError,
    campaign_toggle,
)
from leadflow.integrations.http import check, send
from leadflow.privacy.policy import allowed as privacy_allows

CONTACTS_PATH = "/v3/marketing/contacts"
SEARCH_PATH = "/v3/marketing/contacts/search/emails"
SUPPRESS_PATH = "/v3/asm/suppressions/global"
# Field lengths from the contact schema (maxLength).
LIMITS = {"first_name": 50, "last_name": 50, "city": 60, "state_province_region": 50, "country": 50}


def contact(lead: LeadView) -> dict[str, str]:
    values = {
        "email": lead.email.strip().lower(),
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "city": lead.geo_city,
        "state_province_region": lead.geo_region,
        "country": lead.geo_country,
    }
    return {k: v[: LIMITS.get(k, len(v))] for k, v in values.items() if v}


def _summary(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return response.text
    parts = []
    for e in errors:
        if isinstance(e, dict):
            field = f"{e['field']}: " if e.get("field") else ""
            parts.append(f"{field}{e.get('message', '')}")
    return "; ".join(parts) or response.text


def _checked(response: httpx.Response, pii: tuple[str | None, ...]) -> None:
    try:
        check(response, summary=_summary, pii=pii)
    except RetriableError as exc:
        if exc.retry_after is None:
            # SendGrid's 429 says when the window resets (epoch seconds) rather than Retry-After.
            reset = response.headers.get("x-ratelimit-reset", "")
            if reset.isdigit():
                exc.retry_after = max(0.0, float(reset) - time.time())
        raise


class SendGridContactsConnector(Connector):
    name: ClassVar[str] = "sendgrid"
    max_attempts: ClassVar[int] = 6
    needs_consent: ClassVar[bool] = True
    shares_data: ClassVar[bool] = True
    counts_as_sync: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: SendGridSettings = settings.sendgrid

    def configured(self) -> bool:
        # The API key alone may be there only for mail sending (EMAIL_TRANSPORT=sendgrid): the
        # marketing sync is on when lists to add contacts to are named too.
        return secret_text(self.config.api_key) is not None and bool(self.config.list_ids)

    def wants(self, lead: LeadView) -> bool:
        if not privacy_allows(self, lead):
            return False  # no campaign setting can override consent
        return campaign_toggle(lead, self.name) is not False

    def list_ids(self, lead: LeadView) -> list[str]:
        override = lead.integration_settings(self.name).get("list_ids")
        if isinstance(override, list) and all(isinstance(i, str) for i in override):
            return [i.strip() for i in override if i.strip()]
        return list(self.config.list_ids)

    def _headers(self) -> dict[str, str]:
        key = secret_text(self.config.api_key)
        if key is None:
            raise PermanentError("SendGrid is not configured (SENDGRID_API_KEY)")
        return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        if not privacy_allows(self, lead):  # consent may have been withdrawn since the job was queued
            raise PermanentError("lead has no marketing consent (or opted out of selling/sharing)")
        body: dict[str, Any] = {"contacts": [contact(lead)]}
        lists = self.list_ids(lead)
        if lists:
            body["list_ids"] = lists
        response = await send(ctx.http, "PUT", self._url(CONTACTS_PATH), headers=self._headers(), json=body)
        _checked(response, (lead.email, lead.first_name, lead.last_name))
        try:
            job_id = str(response.json().get("job_id") or "") or None
        except (ValueError, AttributeError):
            job_id = None
        return Outcome(
            status_code=response.status_code,
            response_excerpt=json.dumps({"job_id": job_id}),
            detail=f"SendGrid contact upsert queued (job {job_id}, {len(lists)} lists)",
        )

    async def find_contact_id(self, email: str, ctx: DeliveryContext) -> str | None:
        address = email.strip().lower()
        response = await send(
            ctx.http, "POST", self._url(SEARCH_PATH), headers=self._headers(), json={"emails": [address]}
        )
        if response.status_code == 404:  # no contact matches
            return None
        _checked(response, (email, address))
        try:
            entry = response.json()["result"][address]
        except (ValueError, KeyError, TypeError):
            return None
        found = entry.get("contact") if isinstance(entry, dict) else None
        return str(found["id"]) if isinstance(found, dict) and found.get("id") else None

    async def delete_contact(self, email: str, ctx: DeliveryContext) -> Outcome:
        """Delete the marketing contact with this e-mail; a contact that does not exist is success."""
        contact_id = await self.find_contact_id(email, ctx)
        if contact_id is None:
            return Outcome(status_code=404, detail="no SendGrid contact with that address")
        response = await send(
            ctx.http,
            "DELETE",
            self._url(CONTACTS_PATH),
            headers=self._headers(),
            params={"ids": contact_id},
        )
        _checked(response, (email,))
        return Outcome(
            status_code=response.status_code,
            external_id=contact_id,
            detail=f"SendGrid contact {contact_id} deletion queued",
        )

    async def erase(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        return await self.delete_contact(subject.email, ctx)

    async def unsubscribe(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        """Suppress the address globally, then delete the marketing contact (off every list)."""
        address = subject.email.strip().lower()
        response = await send(
            ctx.http,
            "POST",
            self._url(SUPPRESS_PATH),
            headers=self._headers(),
            json={"recipient_emails": [address]},
        )
        _checked(response, (subject.email, address))
        deleted = await self.delete_contact(address, ctx)
        return Outcome(
            status_code=response.status_code,
            external_id=deleted.external_id,
            detail=f"SendGrid address suppressed (global unsubscribe); {deleted.detail}",
        )
