"""Consent after capture: withdraw or give it again (GDPR Art. 7(3)), opt out of or back into
sale/sharing (CCPA), with a history of every change.

One function, :func:`change`, applies a change to every lead of the person (by e-mail blind index):
it updates ``consent_given`` / ``do_not_sell``, adds a ``consent_changed`` activity to each lead,
records a ``consent_events`` row (time, channel, actor) and, when the change restricts marketing
(withdraw, do-not-sell), queues ``privacy.unsubscribe`` at every configured tool that sends marketing
(connectors with the ``Unsubscribes`` trait). The privacy policy is checked again before every
delivery, so the e-mail sequence's next step and any queued marketing sync end without sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.leads import changes
from leadflow.leads import repository as leads_repo
from leadflow.leads.activities import Activity
from leadflow.pipeline import repository as jobs_repo
from leadflow.privacy import repository as repo
from leadflow.privacy.repository import ConsentEventRow, PersonLead
from leadflow.privacy.tasks import UNSUBSCRIBE_JOB, remote_jobs
from leadflow.security.crypto import FieldCipher

Action = Literal["grant", "withdraw", "do_not_sell", "allow_sale"]
Channel = Literal["api", "cli", "unsubscribe_link", "one_click", "lead_update"]
# What each action writes on the person's leads, and whether it stops marketing at connected tools.
EFFECT: dict[str, tuple[dict[str, bool], bool]] = {
    "grant": ({"consent_given": True}, False),
    "withdraw": ({"consent_given": False}, True),
    "do_not_sell": ({"do_not_sell": True}, True),
    "allow_sale": ({"do_not_sell": False}, False),
}
DESCRIPTION = {
    "grant": "Consent given",
    "withdraw": "Consent withdrawn",
    "do_not_sell": "Opted out of sale/sharing",
    "allow_sale": "Opt-out of sale/sharing revoked",
}


@dataclass(frozen=True, slots=True)
class ConsentChange:
    action: str
    lead_ids: list[str]  # public ids of the leads changed
    remote_unsubscribes_queued: list[str]
    at: datetime


async def change(
    conn: AsyncConnection,
    cipher: FieldCipher,
    settings: Settings,
    *,
    digest: str,
    action: Action,
    channel: Channel,
    actor: str,
    email: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> ConsentChange:
    """Apply ``action`` to every lead of the person whose e-mail blind index is ``digest``."""
    values, stops_marketing = EFFECT[action]
    now = utcnow()
    rows = await repo.person_leads(conn, digest, anonymised=False)
    ids = [r.id for r in rows]
    # consent_at stays the form's evidence (set only when the form gave consent); later grants are
    # consent_events rows.
    written: dict[str, Any] = {**values, "updated_at": now}
    await changes.apply(
        conn,
        [
            changes.Write(
                r,
                written,
                (
                    Activity(
                        r.id,
                        "consent_changed",
                        f"{DESCRIPTION[action]} ({channel})",
                        now,
                        actor,
                        {"action": action, "channel": channel},
                    ),
                ),
            )
            for r in rows
        ],
    )
    await repo.add_consent_event(
        conn,
        {
            "email_hash": digest,
            "lead_id": ids[0] if len(ids) == 1 else None,
            "action": action,
            "channel": channel,
            "actor": actor[:100],
            "request_id": request_id,
            "created_at": now,
            "details": {**(details or {}), "lead_ids": [r.public_id for r in rows]},
        },
    )
    queued: list[str] = []
    if stops_marketing:
        address = email or (cipher.decrypt(rows[0].email, "email") if rows else None)
        if address:
            queued, new_jobs = remote_jobs(
                UNSUBSCRIBE_JOB,
                settings,
                cipher,
                email=address,
                digest=digest,
                lead_ids=[r.public_id for r in rows],
                request_id=request_id,
                now=now,
                campaign_ids=[r.campaign_id for r in rows],
            )
            await jobs_repo.enqueue(conn, new_jobs, now)
    return ConsentChange(action, [r.public_id for r in rows], queued, now)


def history(rows: list[PersonLead], events: list[ConsentEventRow]) -> list[dict[str, Any]]:
    """The person's consent history, oldest first: what each form recorded, then every later change."""
    out: list[dict[str, Any]] = []
    for row in rows:
        out.append(
            {
                "at": (row.consent_at or row.created_at).isoformat(),
                "action": "grant" if row.consent_at is not None else "not_given",
                "channel": "form",
                "actor": "data subject",
                "lead_id": row.public_id,
                "notice_version": row.consent_notice_version,
            }
        )
    for event in events:
        out.append(
            {
                "at": event.created_at.isoformat(),
                "action": event.action,
                "channel": event.channel,
                "actor": event.actor,
                "lead_ids": (event.details or {}).get("lead_ids", []),
            }
        )
    return sorted(out, key=lambda e: str(e["at"]))


async def unsubscribe(
    conn: AsyncConnection,
    cipher: FieldCipher,
    settings: Settings,
    token: str,
    channel: Channel,
    request_id: str | None,
) -> ConsentChange:
    """Use an unsubscribe link: withdraw the consent of the person the link was sent to, once.

    Raises :class:`~leadflow.privacy.unsubscribe.LinkError` (``invalid``, ``expired``, ``used``).
    """
    from leadflow.privacy.unsubscribe import LinkError, read_token

    now = utcnow()
    link = read_token(settings.encryption_keys, token, now)
    if await repo.link_used(conn, link.token_hash):
        raise LinkError("used")
    await repo.mark_link_used(conn, link.token_hash, now)
    row = await leads_repo.get_by_public_id(conn, link.lead_id)
    if row is None or row.anonymized_at is not None:  # erased or anonymised since: nothing left to stop
        return ConsentChange("withdraw", [], [], now)
    return await change(
        conn,
        cipher,
        settings,
        digest=row.email_hash,
        action="withdraw",
        channel=channel,
        actor="data subject",
        request_id=request_id,
        details={"link_lead_id": link.lead_id},
    )
