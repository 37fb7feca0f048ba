"""Bench-only seeding: many demo leads in one campaign, quickly, through the real capture code.

``leadflow demo --leads 100000`` took about four minutes on the 2-core machine: one process does
everything, and the demo's status workflow makes one durable transaction per status change for a
quarter of the leads (about 50 000 transactions). This script keeps everything that shapes the stored data and changes only the
pacing:

* the campaign is created by :func:`leadflow.demo.seed` itself (``count=0``);
* worker processes build the demo's payloads (:func:`leadflow.demo.demo_payload`), validate them with
  :class:`~leadflow.leads.schemas.CaptureRequest` and run :func:`leadflow.leads.capture.prepare`
  (normalisation, scoring inputs, field encryption, blind index), back-dated over 30 days like the
  demo;
* this process stores them with one :class:`~leadflow.leads.capture.CaptureWriter` (dedup check,
  scoring, lead + activity + job rows, group commits), as the server does, while the workers prepare
  the next chunks;
* the demo's status workflow (contacted / qualified / closed_won with a deal value) is applied through
  :func:`leadflow.leads.service.update` to a bounded sample instead of a quarter of the leads.

No SQL is written here: nothing bypasses validation or encryption. It reads the usual environment
(``DATABASE_URL``, ``ENCRYPTION_KEY``...), so run it with the same environment as the server::

    .venv/bin/python bench/seed.py --campaign-id big --leads 100000 --workers 2 --workflow 500
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from leadflow.campaigns import rollup
from leadflow.campaigns import service as campaigns
from leadflow.campaigns.service import CaptureCampaign
from leadflow.config import Settings, load_settings
from leadflow.db import create_engine
from leadflow.demo import demo_payload, seed
from leadflow.kit.clock import utcnow
from leadflow.leads import service as leads
from leadflow.leads.capture import CaptureOutcome, CaptureWriter, PreparedLead, prepare
from leadflow.leads.schemas import CaptureRequest, LeadUpdate
from leadflow.scoring.rules import normalise_catalog
from leadflow.security.audit import Actor
from leadflow.security.crypto import FieldCipher

CHUNK = 1000  # leads prepared per task; the writer commits them in batches of up to capture_batch_max
BENCH_ACTOR = Actor(name="bench@example.org", role="admin", channel="cli")
WORKFLOWS = [["contacted"], ["contacted", "qualified"], ["contacted", "proposal", "closed_won"]]

_settings: Settings | None = None
_cipher: FieldCipher | None = None
_catalog: frozenset[str] = frozenset()


def _init_worker() -> None:
    global _settings, _cipher, _catalog
    _settings = load_settings()
    _cipher = FieldCipher(_settings.encryption_keys, _settings.blind_key)
    _catalog = normalise_catalog(_settings.service_catalog)


def _prepare_chunk(task: tuple[CaptureCampaign, int, int]) -> list[PreparedLead]:
    """Worker process: the demo's leads ``start`` to ``stop`` - 1, validated, prepared, back-dated."""
    campaign, start, stop = task
    assert _settings is not None and _cipher is not None
    context = {"phone_region": _settings.default_phone_region}
    rng = random.Random(start)
    now = utcnow()
    items: list[PreparedLead] = []
    for n in range(start, stop):
        body = CaptureRequest.model_validate(demo_payload(rng, campaign.id, n), context=context)
        item = prepare(body, campaign, _cipher, _catalog, None, None)
        item.created_at = now - timedelta(days=rng.uniform(0, 30))
        items.append(item)
    return items


async def _store(campaign_id: str, count: int, workers: int) -> list[str]:
    settings = load_settings()
    engine = create_engine(settings)
    try:
        await seed(engine, settings, campaign_id, 0, workflow=False)  # the demo's campaign, no leads
        async with engine.connect() as conn:
            campaign = campaigns.to_capture(await campaigns.get_or_404(conn, campaign_id))
        writer = CaptureWriter(
            engine,
            dedup_window=timedelta(hours=settings.dedup_window_hours),
            qualifying_grades=settings.qualifying_grades,
            batch_max=settings.capture_batch_max,
        )
        tasks = [(campaign, start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
        loop = asyncio.get_running_loop()
        public_ids: list[str] = []
        writing: asyncio.Future[list[CaptureOutcome]] | None = None
        with multiprocessing.get_context("spawn").Pool(max(1, workers), initializer=_init_worker) as pool:
            chunks: Iterator[list[PreparedLead]] = pool.imap(_prepare_chunk, tasks)
            while True:
                # Wait for the next prepared chunk in a thread, so the previous one is written meanwhile.
                items = await loop.run_in_executor(None, next, chunks, None)
                if writing is not None:
                    public_ids += [o.public_id for o in await writing if o.kind == "created"]
                if items is None:
                    break
                writing = asyncio.gather(*(writer.submit(item) for item in items))
        await writer.close()
        async with engine.begin() as conn:  # back-dated leads: stored analytics sums are out of date
            await rollup.invalidate_campaign(conn, campaign_id)
        return public_ids
    finally:
        await engine.dispose()


async def _workflow(public_ids: list[str], rng: random.Random) -> int:
    settings = load_settings()
    engine = create_engine(settings)
    cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
    changes = 0
    try:
        for public_id in public_ids:
            for step in rng.choice(WORKFLOWS):
                deal = Decimal(rng.choice([2500, 5000, 7500])) if step == "closed_won" else None
                async with engine.begin() as conn:
                    await leads.update(
                        conn, cipher, public_id, LeadUpdate(status=step, deal_value=deal), BENCH_ACTOR
                    )
                changes += 1
    finally:
        await engine.dispose()
    return changes


def seed_campaign(campaign_id: str, count: int, workers: int, workflow: int) -> tuple[int, int]:
    """Create ``campaign_id`` and add ``count`` leads; returns (leads added, status changes made)."""
    started = time.perf_counter()
    public_ids = asyncio.run(_store(campaign_id, count, workers))
    print(f"captured {len(public_ids)} leads in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    rng = random.Random(2025)
    sample = rng.sample(public_ids, min(workflow, len(public_ids)))
    changes = asyncio.run(_workflow(sample, rng))
    print(f"made {changes} status changes in {time.perf_counter() - started:.1f} s", flush=True)
    return len(public_ids), changes


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Seed one campaign with demo leads through the capture code."
    )
    parser.add_argument("--campaign-id", default="big")
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="processes validating and preparing leads")
    parser.add_argument("--workflow", type=int, default=500, help="leads given the demo's status workflow")
    args = parser.parse_args()
    started = time.perf_counter()
    added, changes = seed_campaign(args.campaign_id, args.leads, args.workers, args.workflow)
    print(
        f"seeded campaign {args.campaign_id}: {added} leads and {changes} status changes "
        f"in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
