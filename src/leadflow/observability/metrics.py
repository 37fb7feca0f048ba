"""Prometheus metrics (process-local; each process exposes its own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)

JOBS_FINISHED = Counter(
    "leadflow_jobs_finished_total", "Jobs finished by the worker", ["kind", "connector", "outcome"]
)
JOB_DURATION = Histogram(
    "leadflow_job_duration_seconds",
    "Time spent running one job attempt",
    ["kind", "connector"],
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "leadflow_stage_latency_seconds",
    "Seconds from capture to the end of a pipeline stage (processed, or delivered per connector)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("leadflow_queue_depth", "Jobs in the outbox by status", ["status"])
OLDEST_JOB_AGE = Gauge("leadflow_oldest_job_age_seconds", "Age of the oldest due or running job")
LEADS_CAPTURED = Counter("leadflow_leads_captured_total", "Capture outcomes", ["outcome"])
RATE_LIMIT_FALLBACKS = Counter(
    "leadflow_rate_limit_storage_fallbacks_total",
    "Times the shared rate-limit storage (Redis) failed and this process fell back to its own counters",
)
