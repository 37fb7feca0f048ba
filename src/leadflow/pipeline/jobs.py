"""Job kinds, the one way to create a job, and the registry that tells a worker what runs each kind.

Each domain owns its jobs: its ``tasks.py`` declares its :class:`JobKind` values, their handlers and
(for periodic work) how often they run, and registers them in a :class:`Tasks` registry
(``leadflow.tasks.registry()`` gathers every domain's). The outbox engine itself knows no domain.

A job is created only through :meth:`JobKind.new`: the kind's name and default attempts come from
its declaration, the caller says what the job is about (payload, dedup key, when it runs, its lead).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leadflow.pipeline.repository import NewJob

if TYPE_CHECKING:
    from leadflow.pipeline.worker import ActivityWriter, Committer, DeadLetterHook, Handler


@dataclass(frozen=True, slots=True)
class JobKind:
    """A kind of outbox job: its name (the ``jobs.kind`` column) and how often it is tried by default."""

    name: str
    max_attempts: int = 8

    def new(
        self,
        payload: dict[str, Any],
        *,
        run_at: datetime,
        dedup_key: str | None = None,
        lead_id: int | None = None,
        max_attempts: int | None = None,
        connector: str | None = None,
    ) -> NewJob:
        """A job of this kind. ``dedup_key``: enqueueing the same key again is a no-op; ``connector``:
        the connector a delivery job is for."""
        return NewJob(
            self.name, payload, run_at, lead_id, dedup_key, max_attempts or self.max_attempts, connector
        )

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Task:
    """What runs a job kind. ``every``: a periodic job the worker keeps scheduled (see scheduler.py)."""

    kind: JobKind
    handler: Handler
    every: timedelta | None = None


@dataclass(slots=True)
class Tasks:
    """The registry of job kinds → handlers, plus the committers of staged work and the dead-letter
    hooks (what a domain adds to the transaction that gives up on a job)."""

    tasks: dict[str, Task] = field(default_factory=dict)
    committers: dict[str, Committer] = field(default_factory=dict)
    dead_letter_hooks: list[DeadLetterHook] = field(default_factory=list)
    activity_writer: ActivityWriter | None = None  # stores the activities handlers return

    def add(self, *tasks: Task) -> None:
        for task in tasks:
            if task.kind.name in self.tasks:
                raise ValueError(f"job kind {task.kind.name!r} is registered twice")
            self.tasks[task.kind.name] = task

    def commit(self, group: str, committer: Committer) -> None:
        if group in self.committers:
            raise ValueError(f"staged group {group!r} has two committers")
        self.committers[group] = committer

    def write_activities_with(self, writer: ActivityWriter) -> None:
        self.activity_writer = writer

    def on_dead_letter(self, hook: DeadLetterHook) -> None:
        self.dead_letter_hooks.append(hook)

    def handlers(self) -> dict[str, Handler]:
        return {name: task.handler for name, task in self.tasks.items()}

    def periodic(self) -> dict[str, timedelta]:
        return {name: task.every for name, task in self.tasks.items() if task.every is not None}

    def kinds(self) -> Iterable[JobKind]:
        return (task.kind for task in self.tasks.values())
