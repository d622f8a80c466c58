"""One scheduler per deployment (DESIGN.md): APScheduler 3 runs only on the leader
(``bot.leader.LeaderLock``: a PostgreSQL advisory lock, or a file lock beside SQLite).

``Scheduler`` runs a daemon thread that tries to take leadership every ``poll_interval``
and, once it leads, starts a BackgroundScheduler whose jobs live in the database
(table ``drbot_scheduler_jobs``) with coalesce, one instance at a time and a misfire grace
time. A job due while no scheduler ran runs once on recovery if still within its grace
time, and is reported missed otherwise (``on_missed``). While leading, the lock is checked
every ``poll_interval`` and before every pass over due jobs; when it is lost, APScheduler is
shut down at once and the thread goes back to trying.
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import pickle
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from bot import audit, jobs
from bot.leader import LeaderLock
from bot.store import session_scope

log = logging.getLogger(__name__)

JOBS_TABLE = "drbot_scheduler_jobs"
OnMissed = Callable[[str, datetime], None]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _JobStore(SQLAlchemyJobStore):
    """The stock store, except that it does not dispose the engine it was given: that
    engine belongs to the services and outlives any one term of leadership."""

    def shutdown(self) -> None:
        pass


class _ContextExecutor(BaseExecutor):
    """A thread pool like APScheduler's, which also sets ``bot.jobs.current()``
    (job id, scheduled run time, scheduler name) around each run."""

    def __init__(self, owner: str, max_workers: int):
        super().__init__()
        self._owner = owner
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="drbot-job")

    def _do_submit_job(self, job, run_times):
        owner, logger_name, alias = self._owner, self._logger.name, job._jobstore_alias

        def call() -> list:
            events = []
            for run_time in run_times:
                with jobs.running(jobs.JobContext(job.id, run_time, owner)):
                    events.extend(run_job(job, alias, [run_time], logger_name))
            return events

        def done(future: concurrent.futures.Future) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(call).add_done_callback(done)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)


class _FencedScheduler(BackgroundScheduler):
    """Checks leadership before every pass over due jobs, so a leader that lost its lock
    never claims another due job, even before its leader thread notices."""

    def __init__(self, fence: Callable[[], bool], retry: float, **options: Any):
        self._fence = fence
        self._fence_retry = retry
        super().__init__(**options)

    def _process_jobs(self):
        if not self._fence():
            return self._fence_retry
        return super()._process_jobs()


@dataclass(frozen=True)
class _JobDef:
    job_id: str
    trigger: BaseTrigger
    func_ref: str
    kwargs: dict


class Scheduler:
    """Leader election plus APScheduler with a database job store. See the module doc."""

    def __init__(self, services: Any, poll_interval: float = 2.0, misfire_grace: float = 300,
                 on_missed: OnMissed | None = None, *, lock_key: int | None = None,
                 name: str | None = None, max_workers: int = 4):
        self.services = services
        self.engine: Engine = services.engine
        self.poll_interval = float(poll_interval)
        self.misfire_grace = max(1, math.ceil(misfire_grace))  # APScheduler wants whole seconds
        self.on_missed: OnMissed = on_missed or self._report_missed
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.max_workers = max_workers
        self.lock = LeaderLock(self.engine, lock_key)
        self.started_at: datetime | None = None
        self.leader_since: datetime | None = None
        self._defs: dict[str, _JobDef] = {}
        self._mutex = threading.RLock()
        self._aps: _FencedScheduler | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stop_wait = True
        self._last_error = ""

    # -- public -----------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._aps is not None

    def add_job(self, job_id: str, trigger: BaseTrigger, func_ref: str = jobs.RUN_REF,
                kwargs: dict | None = None) -> None:
        """Declare a job; it is (re)placed in the job store on every acquisition of
        leadership, and at once if this instance leads. ``func_ref`` is a text reference
        ("module:function"); for the default ``bot.jobs:run``, ``kwargs["name"]`` picks the
        handler and defaults to ``job_id``. A date (one-shot) job is placed once by this
        instance, then belongs to the store."""
        if not isinstance(func_ref, str) or ":" not in func_ref:
            raise TypeError(f"func_ref must be a text reference 'module:function', not {func_ref!r}")
        kwargs = dict(kwargs or {})
        if func_ref == jobs.RUN_REF:
            kwargs.setdefault("name", job_id)
        try:
            pickle.dumps((trigger, kwargs))
        except Exception as exc:
            raise ValueError(f"job {job_id!r}: trigger and kwargs must be picklable ({exc})") from exc
        definition = _JobDef(job_id, trigger, func_ref, kwargs)
        with self._mutex:
            self._defs[job_id] = definition
            if self._aps is not None:
                self._place(self._aps, definition)

    def remove_job(self, job_id: str) -> None:
        with self._mutex:
            self._defs.pop(job_id, None)
            if self._aps is not None:
                try:
                    self._aps.remove_job(job_id)
                except JobLookupError:
                    pass

    def stored_jobs(self) -> dict[str, datetime | None]:
        """Job id -> next run time, as the job store holds them (readable by any replica)."""
        if not inspect(self.engine).has_table(JOBS_TABLE):
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT id, next_run_time FROM {JOBS_TABLE}")).all()
        return {r[0]: None if r[1] is None else datetime.fromtimestamp(r[1], timezone.utc) for r in rows}

    def start(self) -> None:
        with self._mutex:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._wake.clear()
            self.started_at = _utcnow()
            self._thread = threading.Thread(target=self._loop, name=f"drbot-scheduler-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop leading (waiting for running jobs when ``wait``) and release the lock."""
        self._stop_wait = wait
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("scheduler %s did not stop within %.0fs", self.name, timeout)
        if thread is None or not thread.is_alive():
            self._thread = None
            self._step_down(wait)

    # -- leadership loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        finally:
            self._step_down(self._stop_wait)

    def _tick(self) -> None:
        step_down = False
        with self._mutex:
            if self._stop.is_set():
                return
            try:
                if self._aps is None:
                    if self.lock.acquire():
                        self._lead()
                elif not self.lock.is_held():
                    log.warning("scheduler %s lost leadership; shutting its scheduler down", self.name)
                    step_down = True
                self._last_error = ""
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:  # once per distinct failure, not every poll
                    log.warning("scheduler %s: leadership step failed: %s", self.name, message)
                    self._last_error = message
                step_down = True
        if step_down:
            self._step_down(wait=False)
            self._wake.clear()  # try again after a full poll interval, giving others a fair chance

    def _lead(self) -> None:
        aps = _FencedScheduler(
            self._fence, self.poll_interval,
            timezone=timezone.utc,
            jobstores={"default": _JobStore(engine=self.engine, tablename=JOBS_TABLE)},
            executors={"default": _ContextExecutor(self.name, self.max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.misfire_grace},
        )
        aps.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        try:
            aps.start(paused=True)
        except BaseException:
            try:
                aps.shutdown(wait=False)
            except Exception:
                pass
            raise
        self._aps = aps
        for definition in list(self._defs.values()):
            self._place(aps, definition)
        aps.resume()
        self.leader_since = _utcnow()
        log.info("scheduler %s is the leader; jobs: %s", self.name, sorted(self.stored_jobs()))

    def _step_down(self, wait: bool) -> None:
        """Shut APScheduler down, then release the lock. Called without ``_mutex`` held, so a
        running job that calls ``add_job`` cannot deadlock a waiting shutdown."""
        with self._mutex:
            aps, self._aps = self._aps, None
            self.leader_since = None
        if aps is not None:
            try:
                aps.shutdown(wait=wait)
            except Exception:
                log.exception("scheduler %s: shutting APScheduler down failed", self.name)
        self.lock.release()

    def _fence(self) -> bool:
        held = self.lock.is_held()
        if not held:
            self._wake.set()  # let the leader thread step down now, not after a poll
        return held

    def _place(self, aps: BackgroundScheduler, d: _JobDef) -> None:
        """Put a declared job in the store without losing a run that is already due: an
        identical stored job keeps its next run time (only its options are refreshed)."""
        existing = aps.get_job(d.job_id)
        if existing is not None and existing.func_ref == d.func_ref and existing.kwargs == d.kwargs \
                and str(existing.trigger) == str(d.trigger):
            aps.modify_job(d.job_id, coalesce=True, max_instances=1, misfire_grace_time=self.misfire_grace)
        else:
            aps.add_job(d.func_ref, trigger=d.trigger, id=d.job_id, name=d.job_id, kwargs=d.kwargs,
                        replace_existing=True)
        if isinstance(d.trigger, DateTrigger) and self._defs.get(d.job_id) is d:
            del self._defs[d.job_id]  # one-shot: placed once; re-adding it later could run it twice

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            try:
                self.on_missed(event.job_id, event.scheduled_run_time)
            except Exception:
                log.exception("reporting the missed run of job %s failed", event.job_id)
        elif event.code == EVENT_JOB_ERROR:
            log.error("job %s (scheduled at %s) failed: %r\n%s", event.job_id, event.scheduled_run_time,
                      event.exception, event.traceback)
        else:
            log.warning("job %s skipped: its previous run is still going", event.job_id)

    def _report_missed(self, job_id: str, scheduled_run_time: datetime) -> None:
        log.warning("job %s missed its run at %s: no scheduler ran within its grace time",
                    job_id, scheduled_run_time.isoformat())
        with session_scope(self.engine) as session:
            audit.record(session, audit.SYSTEM, "job.missed", target=job_id,
                         detail={"scheduled_run_time": scheduled_run_time.isoformat(), "scheduler": self.name})
