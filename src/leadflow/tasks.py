"""Every domain's jobs, registered with the worker (the worker's composition root, as app.py is the API's).

Each domain owns its job kinds and handlers in its ``tasks.py`` and registers them here with one
``register(tasks)`` call; the outbox engine (``pipeline/``) runs whatever this registry holds.
"""

from __future__ import annotations

from functools import cache

from leadflow.pipeline.jobs import Tasks


@cache
def registry() -> Tasks:
    from leadflow.integrations import tasks as integrations
    from leadflow.leads import tasks as leads
    from leadflow.observability import tasks as observability
    from leadflow.privacy import tasks as privacy
    from leadflow.reports import tasks as reports

    tasks = Tasks()
    for domain in (leads, integrations, privacy, reports, observability):
        domain.register(tasks)
    return tasks
