"""Scheduled job functions, referenced by text so that the job store can persist them.

Every job drbot stores in the scheduler's job store calls ``bot.jobs:run`` with keyword
arguments ``{"name": <handler name>, ...}``. ``run`` looks the name up in a process-level
registry that the owner of the scheduler fills at start (``register``); nothing is
registered, imported or built when this module is imported. A job whose handler is not
registered in this process is logged as an error and skipped, never raised into the
scheduler.

While a handler runs, ``current()`` says which job, which scheduled run time and which
scheduler instance it runs for (set by ``bot.scheduler``'s executor).
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

RUN_REF = "bot.jobs:run"
"""The text reference stored in the job store for every drbot job."""

_handlers: dict[str, Callable[..., Any]] = {}
_handlers_lock = threading.Lock()
_local = threading.local()


@dataclass(frozen=True)
class JobContext:
    job_id: str
    scheduled_run_time: datetime
    """The run time the job was due at (timezone-aware UTC), not the time it started."""
    scheduler: str
    """The name of the ``bot.scheduler.Scheduler`` instance that runs it."""


def register(name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn(**kwargs)`` the handler of jobs named ``name`` in this process."""
    if not callable(fn):
        raise TypeError(f"handler for job {name!r} is not callable: {fn!r}")
    with _handlers_lock:
        _handlers[name] = fn


def unregister(name: str) -> None:
    with _handlers_lock:
        _handlers.pop(name, None)


def registered() -> list[str]:
    with _handlers_lock:
        return sorted(_handlers)


def clear() -> None:
    """Forget every handler (tests)."""
    with _handlers_lock:
        _handlers.clear()


def run(name: str, **kwargs: Any) -> Any:
    """The function every stored job calls. Unknown names are logged, not raised; a
    handler's own exception propagates so the scheduler reports it (EVENT_JOB_ERROR)."""
    with _handlers_lock:
        fn = _handlers.get(name)
    if fn is None:
        ctx = current()
        log.error("scheduled job %r (job id %s) has no handler in this process; skipped",
                  name, ctx.job_id if ctx else "?")
        return None
    return fn(**kwargs)


def current() -> JobContext | None:
    """The job running in this thread, or None outside a scheduled run."""
    return getattr(_local, "ctx", None)


@contextmanager
def running(ctx: JobContext) -> Iterator[JobContext]:
    """Set ``current()`` for the duration of one run (used by the scheduler's executor)."""
    previous = getattr(_local, "ctx", None)
    _local.ctx = ctx
    try:
        yield ctx
    finally:
        _local.ctx = previous
