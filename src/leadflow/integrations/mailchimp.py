"""Mailchimp Marketing API v3: add or update the lead on an audience (list), then tag it.

Only leads who gave consent, and never a lead who opted out of selling/sharing (``do_not_sell``).

1. ``PUT /3.0/lists/{list_id}/members/{subscriber_hash}`` (``subscriber_hash`` = MD5 of the lower-cased
   e-mail) with ``email_address``, ``status_if_new`` and ``merge_fields`` (FNAME, LNAME). The body sends
   ``status_if_new`` and never ``status``: a new member gets ``subscribed`` (``pending``, i.e. double
   opt-in with a confirmation e-mail, for GDPR-regime leads) while an existing member keeps the status
   they chose, so a new form never re-subscribes someone who unsubscribed. (It also keeps the body valid
   against the API description, whose ``oneOf`` refuses a body holding both fields.)
2. ``POST .../members/{subscriber_hash}/tags`` — ``campaign:<id>``, ``service:<service>`` and
   ``grade:<grade>`` active, the other ``grade:`` tags inactive, so segments follow the current grade.

Withdrawn consent / unsubscribe (:meth:`MailchimpConnector.unsubscribe`, on ``MAILCHIMP_LIST_ID`` and
every list the person's campaigns set):
``PUT`` the member with ``status_if_new: unsubscribed`` (an address Mailchimp did not know is kept as
unsubscribed, so a later sync cannot subscribe it), then, if the member existed with another status,
``PUT`` with ``status: unsubscribed``. An address permanently deleted before is already gone.
Erasure: ``POST .../members/{subscriber_hash}/actions/delete-permanent`` on the same lists.

Authentication is HTTP Basic ``anystring:<api key>``; the data centre comes from the key's suffix
(``…-us21`` → ``https://us21.api.mailchimp.com``) unless ``MAILCHIMP_BASE_URL`` is set. The list is
``MAILCHIMP_LIST_ID`` or the campaign's ``integrations.mailchimp.list_id``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import httpx

from leadflow.config import MailchimpSettings, Settings, secret_text
from leadflow.integrations.base import (
    Connector,
    DeliveryContext,
    LeadView,
    Outcome,
    PermanentError,
    PrivacySubject,
    campaign_toggle,
)
from leadflow.integrations.http import check, send
from leadflow.privacy.policy import allowed as privacy_allows

GRADES = ("A", "B", "C", "D")
TAG_MAX = 100  # Mailchimp tag names are at most 100 characters


def api_base(config: MailchimpSettings) -> str | None:
    """``https://<dc>.api.mailchimp.com`` from the key's ``-<dc>`` suffix, or the configured URL."""
    if config.base_url:
        return config.base_url.rstrip("/")
    key = secret_text(config.api_key)
    if not key or "-" not in key:
        return None
    dc = key.rsplit("-", 1)[1].lower()
    if not dc.isalnum():
        return None
    return f"https://{dc}.api.mailchimp.com"


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address (an identifier, not a security hash)."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def member_body(lead: LeadView) -> dict[str, Any]:
    merge_fields = {"FNAME": lead.first_name, "LNAME": lead.last_name}
    return {
        "email_address": lead.email.strip().lower(),
        "status_if_new": "pending" if lead.privacy_regime == "gdpr" else "subscribed",
        "merge_fields": {k: v for k, v in merge_fields.items() if v},
        "timestamp_signup": lead.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    }


def member_tags(lead: LeadView) -> list[dict[str, str]]:
    tags = [{"name": f"campaign:{lead.campaign_id}", "status": "active"}]
    if lead.service_interest:
        tags.append({"name": f"service:{lead.service_interest}", "status": "active"})
    for grade in GRADES:
        status = "active" if grade == lead.lead_grade else "inactive"
        tags.append({"name": f"grade:{grade}", "status": status})
    return [{"name": t["name"][:TAG_MAX], "status": t["status"]} for t in tags]


def _summary(response: httpx.Response) -> str:
    """``title: detail`` from Mailchimp's problem document (``detail`` often quotes the address)."""
    try:
        data = response.json()
    except ValueError:
        return response.text
    if not isinstance(data, dict):
        return response.text
    return f"{data.get('title', 'Error')}: {data.get('detail', '')}".strip()


class MailchimpConnector(Connector):
    name: ClassVar[str] = "mailchimp"
    max_attempts: ClassVar[int] = 6
    needs_consent: ClassVar[bool] = True
    shares_data: ClassVar[bool] = True
    counts_as_sync: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config: MailchimpSettings = settings.mailchimp

    def configured(self) -> bool:
        return secret_text(self.config.api_key) is not None and api_base(self.config) is not None

    def list_id(self, lead: LeadView) -> str | None:
        override = lead.integration_settings(self.name).get("list_id")
        if isinstance(override, str) and override.strip():
            return override.strip()
        return self.config.list_id

    def wants(self, lead: LeadView) -> bool:
        if not privacy_allows(self, lead):
            return False  # no campaign setting can override consent
        if campaign_toggle(lead, self.name) is False:
            return False
        return self.list_id(lead) is not None

    def _auth(self) -> tuple[str, str]:
        key = secret_text(self.config.api_key)
        if key is None or api_base(self.config) is None:
            raise PermanentError("Mailchimp is not configured (MAILCHIMP_API_KEY with a -<dc> suffix)")
        return ("anystring", key)

    def _member_url(self, list_id: str, email: str) -> str:
        base = api_base(self.config)
        return f"{base}/3.0/lists/{list_id}/members/{subscriber_hash(email)}"

    async def deliver(self, lead: LeadView, ctx: DeliveryContext) -> Outcome:
        if not privacy_allows(self, lead):  # consent may have been withdrawn since the job was queued
            raise PermanentError("lead has no marketing consent (or opted out of selling/sharing)")
        list_id = self.list_id(lead)
        if list_id is None:
            raise PermanentError("no Mailchimp list (MAILCHIMP_LIST_ID or the campaign's list_id)")
        auth = self._auth()
        url = self._member_url(list_id, lead.email)
        pii = (lead.email, lead.first_name, lead.last_name)
        response = await send(ctx.http, "PUT", url, auth=auth, json=member_body(lead))
        check(response, summary=_summary, pii=pii)
        try:
            member = response.json()
        except ValueError:
            member = {}
        status = str(member.get("status", "")) if isinstance(member, dict) else ""
        member_id = None
        if isinstance(member, dict):
            member_id = member.get("contact_id") or member.get("unique_email_id")
        tags = member_tags(lead)
        tagged = await send(ctx.http, "POST", f"{url}/tags", auth=auth, json={"tags": tags})
        check(tagged, summary=_summary, pii=pii)
        active = sum(1 for t in tags if t["status"] == "active")
        return Outcome(
            status_code=response.status_code,
            response_excerpt=json.dumps({"status": status, "tags": active}),
            external_id=str(member_id) if member_id else None,
            detail=f"Mailchimp member {status or 'saved'} on list {list_id} ({active} tags)",
        )

    async def permanent_delete(self, email: str, ctx: DeliveryContext, list_id: str | None = None) -> Outcome:
        """Erase the member from the list for good (``actions/delete-permanent``); absent is success.

        Mailchimp refuses to re-add a permanently deleted address through the API afterwards.
        """
        target = list_id or self.config.list_id
        if target is None:
            raise PermanentError("no Mailchimp list to delete from")
        url = f"{self._member_url(target, email)}/actions/delete-permanent"
        response = await send(ctx.http, "POST", url, auth=self._auth())
        if response.status_code == 404:
            return Outcome(status_code=404, detail=f"not a member of Mailchimp list {target}")
        check(response, summary=_summary, pii=(email, email.strip().lower()))
        return Outcome(
            status_code=response.status_code, detail=f"Mailchimp member deleted from list {target}"
        )

    def subject_lists(self, subject: PrivacySubject) -> list[str]:
        """``MAILCHIMP_LIST_ID`` and the lists the person's campaigns override it with."""
        lists = [self.config.list_id] if self.config.list_id else []
        for value in subject.integration_values(self.name, "list_id"):
            if isinstance(value, str) and value.strip() and value.strip() not in lists:
                lists.append(value.strip())
        if not lists:
            raise PermanentError("no Mailchimp list (MAILCHIMP_LIST_ID or a campaign's list_id)")
        return lists

    async def erase(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        outcomes = [await self.permanent_delete(subject.email, ctx, t) for t in self.subject_lists(subject)]
        return Outcome(
            status_code=outcomes[-1].status_code, detail="; ".join(o.detail or "" for o in outcomes)
        )

    async def unsubscribe(self, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        outcomes = [await self._unsubscribe_on(t, subject, ctx) for t in self.subject_lists(subject)]
        return Outcome(
            status_code=outcomes[-1].status_code,
            response_excerpt=outcomes[-1].response_excerpt,
            detail="; ".join(o.detail or "" for o in outcomes),
        )

    async def _unsubscribe_on(self, target: str, subject: PrivacySubject, ctx: DeliveryContext) -> Outcome:
        """Mark the address ``unsubscribed`` on the list, creating it so (suppressed) if it is new."""
        address = subject.email.strip().lower()
        url = self._member_url(target, address)
        pii = (subject.email, address)
        response = await send(
            ctx.http,
            "PUT",
            url,
            auth=self._auth(),
            json={"email_address": address, "status_if_new": "unsubscribed"},
        )
        if response.status_code == 400 and _summary(response).startswith("Forgotten Email"):
            return Outcome(status_code=400, detail=f"address was permanently deleted from list {target}")
        check(response, summary=_summary, pii=pii)
        try:
            before = str(response.json().get("status", ""))
        except (ValueError, AttributeError):
            before = ""
        if before != "unsubscribed":
            response = await send(
                ctx.http,
                "PUT",
                url,
                auth=self._auth(),
                json={"email_address": address, "status": "unsubscribed"},
            )
            check(response, summary=_summary, pii=pii)
        return Outcome(
            status_code=response.status_code,
            response_excerpt=json.dumps({"before": before or None, "status": "unsubscribed"}),
            detail=f"Mailchimp member unsubscribed on list {target}",
        )
