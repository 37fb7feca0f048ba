"""Process-wide tuning that `leadflow serve` and `leadflow worker` apply once start-up is done."""

from __future__ import annotations

import gc
import sys

# Python's own thresholds for the older generations, raised with the young one: a young collection
# every GC_YOUNG_THRESHOLD net allocations, a middle one every 20 of those, a full one every 50 middle
# ones (and only when enough survivors piled up, CPython's own rule).
MIDDLE_EVERY = 20
FULL_EVERY = 50

# What settle_gc takes, as one value to hand to another process: (freeze, young_threshold), i.e.
# GC_FREEZE and GC_YOUNG_THRESHOLD; the default is those settings' defaults.
GcTuning = tuple[bool, int]
DEFAULT_GC: GcTuning = (True, 20_000)


def settle_gc(*, freeze: bool, young_threshold: int) -> None:
    """Collect once and freeze what start-up loaded (``freeze``), and space the collections out.

    Freezing: everything loaded at start-up (modules, schemas, phone metadata, domain lists) lives as
    long as the process, so full collections no longer walk it; unfrozen they paused the server 70-95 ms
    each, 17 times in one benchmark run, collecting nothing.

    Thresholds (``young_threshold`` > 0): with Python's default (700 allocations) a server with
    hundreds of requests in flight promoted their live objects through every generation, and the
    collections took ~20 % of capture's CPU at 1000 connections (2.9 s of collections in a 30 s run,
    full ones of 60 ms each) while finding almost nothing to collect: request objects are freed by
    reference counting. Collections still run, a few hundred times less often. 0 keeps Python's.
    """
    if freeze:
        gc.collect()
        gc.freeze()
    if young_threshold > 0:
        gc.set_threshold(young_threshold, MIDDLE_EVERY, FULL_EVERY)


def settle_threads(*, switch_interval_ms: float) -> None:
    """Let a thread that waits for the GIL have it after ``switch_interval_ms`` (0 keeps Python's 5 ms).

    The capture writer thread (SQLite) gives the GIL up around each statement it runs (~10 per batch)
    and must then win it back from the event loop, which under load never gives it up on its own: with
    Python's 5 ms every statement cost the writer up to 5 ms of waiting, about half of its time per
    batch at 1000 connections, and the writer was what the requests waited for. A 0.5 ms interval costs
    the loop a few forced switches per batch. With the writer in its own process (the default) the
    thread only hands batches over, and 0.5 ms measured no better than Python's 5 ms.
    """
    if switch_interval_ms > 0:
        sys.setswitchinterval(switch_interval_ms / 1000)
