"""Alert jobs: ``alert.dead_letters``, the digest of a period's dead-lettered leads (see alerts.py).

The worker gives up on a lead's job → :func:`enqueue_digest` (a dead-letter hook) adds the period's
digest job in the same transaction → at the period's end :func:`send_digest` mails and posts it.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from leadflow.integrations.base import RetriableError
from leadflow.kit.models import AnyRow
from leadflow.leads.views import lead_view, loaders
from leadflow.observability import repository as repo
from leadflow.observability.alerts import DIGEST, Message, Notifier, digest_job
from leadflow.pipeline.jobs import Task, Tasks
from leadflow.pipeline.worker import HandlerResult, RetryLater, WorkerContext


def _line(label: str, value: Any) -> str | None:
    return f"  {label}: {value}" if value not in (None, "") else None


async def _entries(job: AnyRow, ctx: WorkerContext, rows: list[repo.DeadJob]) -> tuple[list[str], list[str]]:
    """Per dead job: the public lines (ids, connector, links) and the private ones (the lead's data)."""
    from leadflow.integrations.notify import lead_url

    public: list[str] = []
    private: list[str] = []
    base = ctx.settings.public_base_url.rstrip("/")
    for row in rows:
        payload = row.payload or {}
        what = f"{payload['connector']} delivery" if payload.get("connector") else f"job {row.kind}"
        lead = await loaders(ctx).leads.load(int(row.lead_id))
        if lead is None:
            continue  # erased meanwhile: nothing to enter, nothing to tell
        view = await lead_view(ctx, lead)
        url = lead_url(ctx.settings, view)
        head = f"{what} of {view.lead_id} gave up after {row.attempts} attempt(s)"
        replay = f"  Replay: POST {base}/v1/api/jobs/{row.id}/retry or `leadflow jobs retry {row.id}`"
        error = _line("Error", (row.last_error or "")[:300])
        public.append("\n".join(x for x in (f"- {head}", f"  Lead: {url}", error, replay) if x))
        if lead.anonymized_at is not None:
            private.append("\n".join(x for x in (f"- {head} (anonymised: no data left)", error) if x))
            continue
        details = [
            f"- {head}",
            error,
            f"  Lead: {url}",
            _line("Campaign", f"{view.campaign_name} ({view.campaign_id})"),
            _line("Name", view.full_name),
            _line("E-mail", view.email),
            _line("Phone", view.phone),
            _line("Company", view.company),
            _line("Service", view.service_interest),
            _line("Budget", view.budget_range),
            _line("Timeline", view.timeline),
            _line("Urgency", view.urgency),
            _line("Message", view.message),
            _line("Score / grade", f"{view.lead_score} / {view.lead_grade}"),
            _line("Source", view.source),
            _line("Consent to marketing", "yes" if view.consent_given else "no"),
            _line("Do not sell", "yes" if view.do_not_sell else None),
            _line("Captured", f"{view.created_at:%Y-%m-%d %H:%M} UTC"),
            _line("Assigned to", view.assignee.name if view.assignee else None),
            replay,
        ]
        private.append("\n".join(x for x in details if x))
    return public, private


async def send_digest(job: AnyRow, ctx: WorkerContext) -> HandlerResult:
    """Job handler: one message for the leads dead-lettered in the job's period (if still dead)."""
    since = datetime.fromisoformat(job.payload["since"])
    until = datetime.fromisoformat(job.payload["until"])
    async with ctx.engine.connect() as conn:
        rows = await repo.dead_between(conn, since, until)
    public, private = await _entries(job, ctx, rows)
    if not public:
        return HandlerResult(response_excerpt="no dead-lettered lead left in this period")
    count = len(public)
    subject = f"[Leadflow] {count} lead deliver{'y' if count == 1 else 'ies'} failed for good: enter by hand"
    intro = (
        f"Between {since:%Y-%m-%d %H:%M} and {until:%H:%M} UTC these deliveries were given up on. "
        "Replay them once the cause is fixed, or enter the lead by hand."
    )
    notice = "This e-mail contains personal data: do not forward it; delete it once the leads are entered."
    text = f"{intro}\n\n" + "\n\n".join(public)
    private_text = f"{intro}\n{notice}\n\n" + "\n\n".join(private)
    message = Message(
        f"dead_letters:{job.dedup_key or job.id}",
        subject,
        text,
        private_text=private_text,
        private_html=f"<p>{html.escape(intro)}</p><p><strong>{html.escape(notice)}</strong></p>"
        + "".join(f"<pre>{html.escape(block)}</pre>" for block in private),
    )
    # Channels that took an earlier attempt of this digest are not sent it again.
    before = frozenset(str(c) for c in job.payload.get("delivered_to") or ())
    delivered, failed = await Notifier(ctx.settings, ctx.http).deliver(message, skip=before)
    if failed:  # the e-mail backup must arrive: try again, only on the channels that failed
        message_ = f"{failed} alert channel(s) did not accept the dead-letter digest"
        if delivered:  # stored with the retry: the channels that took it are skipped next time
            raise RetryLater(
                message_, payload={**job.payload, "delivered_to": sorted(before | set(delivered))}
            )
        raise RetriableError(message_)
    sent = len(before) + len(delivered)
    return HandlerResult(response_excerpt=f"dead-letter digest of {count} job(s) sent to {sent} channel(s)")


def enqueue_digest(
    job: AnyRow, connector: str, error: str, ctx: WorkerContext, now: datetime
) -> HandlerResult:
    """Dead-letter hook: a lead's job given up on goes into this period's digest (one job per period),
    the e-mail backup for critical failures."""
    if job.lead_id is None or not ctx.settings.alerting:
        return HandlerResult()
    return HandlerResult(jobs=(digest_job(now, ctx.settings),))


def register(tasks: Tasks) -> None:
    tasks.add(Task(DIGEST, send_digest))
    tasks.on_dead_letter(enqueue_digest)
