"""HubSpot CRM (contacts v3): upsert the lead's contact by e-mail; GDPR delete for erasure requests.

One request per delivery: ``POST /crm/v3/objects/contacts/batch/upsert`` with a single input
``{"id": <email>, "idProperty": "email", "properties": {...}}``. HubSpot matches the contact by its
(unique) e-mail, so a retry or a replay updates the same contact and never creates a second one.
Authentication is a private-app token sent as ``Authorization: Bearer`` (``HUBSPOT_API_KEY``).

Properties written (values are strings, as the API types them; a property with no value is left out,
never sent as ``""``, because an empty string *clears* what a salesperson may have typed in HubSpot):

========================== ============================== ==============================================
property                   source                         HubSpot definition (create once in the portal)
========================== ============================== ==============================================
``email``                  contact e-mail                 default
``firstname``              first name                     default
``lastname``               last name                      default
``phone``                  phone (E.164)                  default
``company``                company                        default
``message``                the form's message             default
``leadflow_lead_id``       public lead id (latest lead)   single-line text
``leadflow_lead_source``   capture source (landing-page…) single-line text
``leadflow_lead_score``    lead score 0-100               number
``leadflow_lead_grade``    lead grade                     dropdown (enumeration) A, B, C, D
``leadflow_campaign_id``   campaign id                    single-line text
``leadflow_service``       service of interest            single-line text
========================== ============================== ==============================================

:data:`CUSTOM_PROPERTIES` holds those definitions in the shape of HubSpot's properties API
(``POST /crm/v3/properties/contacts/batch/create``), for a set-up command. Lifecycle stage and lead status
are deliberately not written: HubSpot owns their progression once sales work the contact.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

from leadflow.config import HubSpotSettings, Settings, secret_text
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
from leadflow.integrations.http import check, excerpt, redact, send

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
GDPR_DELETE_PATH = "/crm/v3/objects/contacts/gdpr-delete"
GROUP = "leadflow"

CUSTOM_PROPERTIES: list[dict[str, Any]] = [
    {"name": "leadflow_lead_id", "label": "Leadflow lead ID", "type": "string", "fieldType": "text"},
    {"name": "leadflow_lead_source", "label": "Leadflow lead source", "type": "string", "fieldType": "text"},
    {"name": "leadflow_lead_score", "label": "Leadflow lead score", "type": "number", "fieldType": "number"},
    {
        "name": "leadflow_lead_grade",
        "label": "Leadflow lead grade",
        "type": "enumeration",
        "fieldType": "select",
        "options": [{"label": g, "value": g, "displayOrder": i} for i, g in enumerate("ABCD")],
    },
    {"name": "leadflow_campaign_id", "label": "Leadflow campaign", "type": "string", "fieldType": "text"},
    {
        "name": "leadflow_service",
        "label": "Leadflow service of interest",
        "type": "string",
        "fieldType": "text",
    },
]
for _definition in CUSTOM_PROPERTIES:
    _definition["groupName"] = GROUP

# HubSpot's 429 body names the policy; without Retry-After, wait out the ten-second window.
_POLICY_WAIT = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}


def contact_properties(lead: LeadView) -> dict[str, str]:
    """The contact properties sent for a lead (see the module docstring), missing values left out."""
    values: dict[str, str | int | None] = {
        "email": lead.email.strip().lower(),
        "firstname": lead.first_name,
        "lastname": lead.last_name,
        "phone": lead.phone,
        "company": lead.company,
        "message": lead.message,
        "leadflow_lead_id": lead.lead_id,
        "leadflow_lead_source": lead.source,
        "leadflow_lead_score": lead.lead_score,
        "leadflow_lead_grade": lead.lead_grade,
        "leadflow_campaign_id": lead.campaign_id,
        "leadflow_service": lead.service_interest,
    }
    return {k: str(v) for k, v in values.items() if v is not None and str(v).strip() != ""}


def _error_summary(response: httpx.Response) -> str:
    """``CATEGORY: message`` from HubSpot's error body, or the raw (trimmed) text."""
    try:
        data = response.json()
    except ValueError:
        return response.text
    if not isinstance(data, dict):
        return response.text
    category = data.get("category") or data.get("errorType") or "ERROR"
    return f"{category}: {data.get('message', '')}".strip()


def _raise_for(response: httpx.Response, pii: tuple[str | None, ...]) -> None:
    """Raise Retriable/Permanent for a non-2xx answer, with a summary free of personal data."""
    try:
        check(response, summary=_error_summary, pii=pii)
    except RetriableError as exc:
        if exc.retry_after is None and response.status_code == 429:
            try:
                policy = str(response.json().get("policyName", ""))
            except (ValueError, AttributeError):
                policy = ""
            exc.retry_after = _POLICY_WAIT.get(policy.upper())
        raise


class HubSpotConnector(Connector):
    name: ClassVar[str] = "hubspot"
    max_attempts: ClassVar[int] = 8
    # The CRM is where sales work every lead (the lead asked to be contacted); it is ours, not shared.
    needs_consent: ClassVar[bool] = False
    shares_data: ClassVar[bool] = False
    counts_as_sync: ClassVar[bool] = True
    # A corrected lead is upserted again (by e-mail: a corrected address makes a new contact).
    resyncs_corrections: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: HubSpotSettings = settings.hubspot

    def configured(self) -> bool:
        return secret_text(self.config.api_key) is not None

    def wants(self, lead: LeadView) -> bool:
        # The CRM is where sales work every lead: no consent gate (the lead asked to be contacted),
        # only the campaign's explicit off switch.
        return campaign_toggle(lead, self.name) is not False

    def _headers(self) -> dict[str, str]:
        key = secret_text(self.config.api_key)
        if key is None:
            raise PermanentError("HubSpot is not configured (HUBSPOT_API_KEY)")
        return {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        properties = contact_properties(lead)
        body = {"inputs": [{"id": properties["email"], "idProperty": "email", "properties": properties}]}
        response = await send(ctx.http, "POST", self._url(UPSERT_PATH), headers=self._headers(), json=body)
        pii = (lead.email, lead.phone, lead.first_name, lead.last_name, lead.company)
        if response.status_code == 207:  # batch partly failed: with one input, ours failed
            raise PermanentError(
                "HubSpot refused the contact upsert (207)",
                status_code=207,
                response_excerpt=excerpt(redact(_batch_errors(response), *pii)),
            )
        _raise_for(response, pii)
        try:
            result = response.json()["results"][0]
            contact_id = str(result["id"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise PermanentError(
                "HubSpot answered the upsert without a contact id",
                status_code=response.status_code,
                response_excerpt=excerpt(redact(response.text, *pii)),
            ) from exc
        created = bool(result.get("new", False))
        return Outcome(
            status_code=response.status_code,
            response_excerpt=json.dumps({"id": contact_id, "new": created}),
            external_id=contact_id,
            detail=f"HubSpot contact {contact_id} {'created' if created else 'updated'}",
        )

    async def gdpr_delete(self, email: str, ctx: DeliveryContext) -> Outcome:
        """Permanently delete the contact with this e-mail (HubSpot's GDPR delete).

        HubSpot answers 204 whether or not the contact existed; an unknown address is added to the
        portal's blocklist, so it cannot come back through a later sync.
        """
        address = email.strip().lower()
        body = {"objectId": address, "idProperty": "email"}
        response = await send(
            ctx.http, "POST", self._url(GDPR_DELETE_PATH), headers=self._headers(), json=body
        )
        _raise_for(response, (email, address))
        return Outcome(status_code=response.status_code, detail="HubSpot contact permanently deleted (GDPR)")

    async def erase(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        return await self.gdpr_delete(subject.email, ctx)


def _batch_errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return response.text
    parts = [f"{e.get('category', 'ERROR')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)]
    return "; ".join(parts) or response.text
