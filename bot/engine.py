"""The runbook engine: runs an approved request's steps one by one.

``Runner.launch`` is the one place a run starts: on a decided request (``poke`` with its
ID), a drill the scheduler found due, or a request left approved when a process stopped
(the periodic ``sweep``). Starting is a conditional update (approved -> running, only when
due), so a request never runs twice, whoever launches it.

Each step's start is persisted before its action runs and its end (result, output) before
the next starts: the end of one step and the start of the next are one transaction (step
rows, audit entry, heartbeat, the progress update queued), that reads nothing back. Nothing
here renders or talks to Slack; a run's worker waits only for its steps. Before the first
step the pre-flight checks run again; a plan gone stale does not run.

Measurements (``bot.measurements``, docs/measurements.md): RTO from detection, decision
and run start to the last verify passing; RPO as data at risk at cutover, with its method
(0 for a switchover; the lag read just before a replica promotion or failover; unknown
when it could not be read). Every message about the run goes through the outbox, queued
in the transaction of the change it shows.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import col, select

from bot import evacuation_run
from bot.evacuation_events import board_of
from bot.audit import SYSTEM, record
from bot.evacuation_policy import is_evacuation
from bot.identity import OWNER
from bot.manual_steps import asks_people
from bot.plans import CALENDAR_KINDS, Planned, steps_for
from bot.measurements import LOSSY, lag_before_cutover
from bot.oplog import op
from bot.preflight import run_preflight
from bot.request_events import queue_message, queue_progress
from bot.run_facts import at_start
from bot.run_records import (
    HEARTBEAT_EVERY, Ended, RunState, attempts_of, finish, persist_end, step_started, write_heartbeat,
)
from bot.services import Services
from bot.steps import StepFailed, execute_step
from bot.store import read_scope, session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, StepState
from bot.store.transitions import move_request, move_run

log = logging.getLogger(__name__)
RUN_WORKERS = 32
"""Runs at once in one process. A run mostly waits (on backends, verify polls), and one
service runs one change at a time, so a worker is there for every approval of a regional
failover: the fifth approval in a row never waits for the first four to finish."""
CANCEL_WAIT = 3.0
"""After the grace period of a shutdown, seconds the steps still running get to cancel what
they started (``Runner.shutdown``); DRBOT_SHUTDOWN_GRACE plus this stays under Kubernetes'
30 s."""


def _due(now: datetime):
    """Approved requests that may start now: not a calendar change, past ``not_before``,
    and, for a drill on the calendar (a service's or a region's), its occurrence started by
    the scheduler."""
    started = select(DrillOccurrence.id).where(DrillOccurrence.state == OccurrenceState.STARTED)
    return (ChangeRequest.state == RequestState.APPROVED, col(ChangeRequest.kind).not_in(CALENDAR_KINDS),
            col(ChangeRequest.not_before).is_(None) | (ChangeRequest.not_before <= now),
            or_(col(ChangeRequest.occurrence_id).is_(None), col(ChangeRequest.occurrence_id).in_(started)))


class Runner:
    """Runs requests on a worker pool (Slack, HTTP) or inline (the shell, some tests)."""

    def __init__(self, services: Services, executor: Executor | None = None, inline: bool = False):
        self.services = services
        self.inline = inline
        self.executor = executor or ThreadPoolExecutor(max_workers=RUN_WORKERS, thread_name_prefix="drbot-run")
        self.done = threading.Event()
        self._queued: set[int] = set()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = False
        self._cancel_steps = threading.Event()
        """Set when the grace period of a shutdown has passed: a step that started something
        it polls (an Argo workflow, an SSM execution, a wait) cancels it and fails, and its run
        is handed over as interrupted (Resume starts that step again)."""

    # -- starting ---------------------------------------------------------------------------
    def poke(self, request_id: int | None = None) -> None:
        """A request was approved (or a drill came due): start what may start now."""
        if request_id is not None:
            self.launch(request_id)
        else:
            self.sweep()

    def sweep(self) -> list[int]:
        """Launch every request that is approved and due (after a restart, a drill's time);
        running evacuations go on (``bot.evacuation_run``)."""
        evacuation_run.sweep(self.services)  # first: an interrupted evacuation withdraws what did not start
        with read_scope(self.services.engine) as s:
            due = list(s.exec(select(ChangeRequest.id).where(*_due(self.services.clock()))
                              .order_by(col(ChangeRequest.id))))
        for request_id in due:
            self.launch(request_id)
        return due

    def launch(self, request_id: int) -> None:
        """The one function that starts runs (inline, or on the pool)."""
        if self.inline and not asks_people(self.services, request_id):  # the shell must stay free to click Done
            self.execute(request_id)
            return
        with self._lock:
            if self._closing or request_id in self._queued:
                return  # stopping (another replica's sweep starts it), or already waiting here
            self._queued.add(request_id)
        self.executor.submit(self._safe, request_id)

    def _safe(self, request_id: int) -> None:
        with self._lock:
            if self._closing:
                self._queued.discard(request_id)
                return
            self._running.add(request_id)
        try:
            self.execute(request_id)
        except Exception:
            log.exception("run of request %s crashed", request_id)
        finally:
            with self._lock:
                self._queued.discard(request_id)
                self._running.discard(request_id)

    def start(self, interval: float = 5.0) -> None:
        """Sweep now and every ``interval`` seconds: nothing approved is left unstarted."""
        def loop() -> None:
            while True:
                try:
                    self.sweep()
                except Exception:
                    log.exception("runner sweep failed")
                if self._stop.wait(interval):
                    return

        self._stop.clear()
        threading.Thread(target=loop, name="drbot-runner", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self, grace: float) -> bool:
        """Stop taking runs; wait up to ``grace`` seconds for the runs in progress. True when
        none is left (the caller marks the others interrupted, as after a crash)."""
        self._stop.set()
        with self._lock:
            self._closing = True
        if self._wait_idle(grace):
            return True
        self._cancel_steps.set()  # past the grace period: steps cancel what they started, then stop
        return self._wait_idle(CANCEL_WAIT)

    def _wait_idle(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return True
            time.sleep(0.05)
        with self._lock:
            return not self._running

    # -- one run ---------------------------------------------------------------------------
    def execute(self, request_id: int) -> None:
        sv = self.services
        r = self._begin(request_id)
        if r is None:
            return
        req, planned = r.req, r.planned
        self._poke_outbox()
        diverged = False
        if req.kind is not RequestKind.ROLLBACK:
            svc = sv.config.service(req.service)
            run_request = req.parent_id if req.kind is RequestKind.RESUME else req.id
            pre = run_preflight(sv, svc, req.from_region, req.to_region, [p.step for p in planned],
                                exclude_request=run_request, resuming=req.kind is RequestKind.RESUME,
                                allow_data_loss=req.allow_data_loss)
            if not pre.ok:
                return self._finish(r, None, RequestState.FAILED, "pre-flight failed: the plan went stale", stale=pre)
            diverged = pre.data_loss == "diverged"  # allowed explicitly: the RPO is not a lag
        ended: Ended | None = None
        with self._heartbeat(r):
            for p in planned:
                if p.position < r.first:
                    continue
                if self._closing:  # stopping: hand the run over after the step that ran, never mid-step
                    return self._hand_over(r, ended)
                step_id, started_at = self._step_boundary(r, p, ended)
                ended = self._run_step(r, step_id, started_at, p)
                if ended.state is not StepState.SUCCEEDED and self._cancel_steps.is_set():
                    return self._hand_over(r, ended)  # cancelled by the shutdown, not failed: Resume runs it again
                if ended.state is not StepState.SUCCEEDED:
                    return self._finish(r, ended, RequestState.FAILED, f"step {p.position + 1} failed")
        final = RequestState.ROLLED_BACK if req.kind is RequestKind.ROLLBACK else RequestState.SUCCEEDED
        self._finish(r, ended, final, "", diverged=diverged, succeeded=True)

    def _begin(self, request_id: int) -> RunState | None:
        """Claim the request (approved and due -> running) and open or resume its run. An
        evacuation has no run of its own: its services start as child requests once the
        claim commits (``bot.evacuation_run``)."""
        sv = self.services
        now = sv.clock()
        with session_scope(sv.engine) as s:
            req = s.scalars(update(ChangeRequest).where(ChangeRequest.id == request_id, *_due(now))
                            .values(state=RequestState.RUNNING).returning(ChangeRequest)
                            .execution_options(populate_existing=True)).one_or_none()
            if req is None:
                return None  # someone else runs it, it is no longer approved, or not due yet
            if is_evacuation(req):
                evacuation_run.begin(sv, s, req)
                opened = None
            else:
                opened = self._open_run(s, req, now)
        if is_evacuation(req):
            evacuation_run.started(sv, req.id)
            return None
        if opened is None:
            return None
        run, planned, first, reason, progress, attempts, board = opened
        sv.metrics.runs_started.labels(req.kind.value).inc()
        op("run.started", request_id=req.id, run_id=run.id, kind=req.kind.value, service=req.service, owner=OWNER)
        return RunState(req, run, planned, first, reason, progress, attempts, beat_at=now, board=board)

    def _open_run(self, s, req: ChangeRequest, now: datetime):
        """In the claim's transaction: open the run, or resume the interrupted one (None: it
        is no longer interrupted)."""
        sv = self.services
        reason = req.reason
        planned = steps_for(sv, s, req)
        if req.kind is RequestKind.RESUME:
            parent = s.get(ChangeRequest, req.parent_id)
            reason = parent.reason  # the accepted data loss was named by the original request
            run = s.exec(select(Run).where(Run.request_id == parent.id)).one()
            if not move_run(s, run.id, [RequestState.INTERRUPTED], RequestState.RUNNING, owner=OWNER,
                            heartbeat_at=now):
                move_request(s, req.id, [RequestState.RUNNING], RequestState.FAILED, closed_at=now,
                             state_reason="the run is no longer interrupted")
                queue_message(sv, s, req)
                return None
            move_request(s, parent.id, [RequestState.INTERRUPTED], RequestState.RUNNING)
            queue_message(sv, s, parent)
            progress = parent
            attempts, first = attempts_of(s, run)
        else:
            run = Run(request_id=req.id, kind=req.kind, service=req.service, approved_at=req.decided_at or now,
                      started_at=now, owner=OWNER, heartbeat_at=now,
                      **at_start(sv, req.service, [p.step for p in planned]))
            s.add(run)
            s.flush()
            progress, attempts, first = req, {}, 0
        record(s, SYSTEM, "run.started", target=req.service, request_id=req.id, service=req.service,
               detail={"run": run.id, "owner": OWNER})
        queue_message(sv, s, req)
        queue_progress(sv, s, progress)
        return run, planned, first, reason, progress, attempts, board_of(s, req)

    @contextmanager
    def _heartbeat(self, r: RunState, every: float = HEARTBEAT_EVERY):
        """Keep the run's heartbeat fresh during long steps, so that another drbot starting
        up does not take a live run for an interrupted one. A step boundary writes it too
        when due: this thread writes only when none has for ``every`` seconds."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                now = self.services.clock()
                if (now - r.beat_at).total_seconds() < every:
                    continue
                try:
                    write_heartbeat(self.services, r.run.id, now)
                    r.beat_at = now
                except Exception:
                    log.exception("heartbeat of run %s failed", r.run.id)

        thread = threading.Thread(target=beat, name=f"drbot-heartbeat-{r.run.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def _hand_over(self, r: RunState, ended: Ended | None) -> None:
        """The process is stopping between two steps: record the step that ended; the run
        stays 'running' for the stop sequence to mark interrupted (Resume continues it)."""
        if ended is not None:
            with session_scope(self.services.engine) as s:
                persist_end(s, self.services, r, ended)
        log.info("run of request %s handed over after step %s: drbot is stopping", r.req.id,
                 ended.planned.position + 1 if ended else 0)

    def _run_step(self, r: RunState, step_id: int, started_at: datetime, p: Planned) -> Ended:
        sv, req = self.services, r.req
        # writes not yet replicated are lost when the writer is detached: the RPO is the lag just before
        cutover = {"lag_at_cutover": lag_before_cutover(sv, sv.config.service(req.service))} \
            if p.step.action in LOSSY else {}
        try:
            output = execute_step(sv, req, p.step, p.region, reason=r.reason, position=p.position,
                                  attempt=r.attempts[(p.position, p.rollback)], stop=self._cancel_steps)
            state, error = StepState.SUCCEEDED, ""
        except StepFailed as e:
            output, state, error = e.output, StepState.FAILED, str(e)
        return Ended(step_id, p, state, error, output | cutover, started_at, sv.clock())

    def _step_boundary(self, r: RunState, p: Planned, ended: Ended | None) -> tuple[int, datetime]:
        step_id, started_at, queued = step_started(self.services, r, p, ended)
        if queued:  # folded into an undelivered update: the outbox has it already
            self._poke_outbox()
        return step_id, started_at

    def _finish(self, r: RunState, ended: Ended | None, state: RequestState, why: str, **how) -> None:
        finish(self.services, r, ended, state, why, **how)
        if r.req.parent_id is not None:  # a service of an evacuation: the next may start
            evacuation_run.child_ended(self.services, r.req)
        self._poke_outbox()
        self.done.set()

    def _poke_outbox(self) -> None:
        if self.services.outbox is not None:
            self.services.outbox.poke()
