"""The runbook engine: runs an approved request's steps one by one.

``Runner.launch`` is the one place a run starts: on a decided request (``poke`` with its
ID), a drill the scheduler found due, or a request left approved when a process stopped
(the periodic ``sweep``). Starting is a conditional update (approved -> running, only when
due), so a request never runs twice, whoever launches it.

Each step's start is persisted before its action runs and its end (result, output) before
the next starts (the end of one step and the start of the next share a transaction).
Before the first step the pre-flight checks run again; a plan gone stale does not run.
Measurements (``bot.measurements``, docs/measurements.md): RTO from detection, decision
and run start to the last verify passing; RPO as data at risk at cutover, with its method
(0 for a switchover; the lag read just before a replica promotion or failover; unknown
when it could not be read). Every message about the run goes through the outbox, queued in the
transaction of the change it shows.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from bot.audit import SYSTEM, record
from bot.drill_proof import drill_values
from bot.identity import OWNER
from bot.plans import CALENDAR_KINDS, Planned, steps_for
from bot.measurements import LOSSY, lag_before_cutover, measure
from bot.metrics import aware as _aware
from bot.oplog import op
from bot.preflight import Preflight, run_preflight
from bot.request_events import queue_message, queue_progress, queue_report
from bot.run_facts import at_start
from bot.services import Services
from bot.steps import StepFailed, execute_step
from bot.store import session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run, RunStep, ServiceState, StepState
from bot.store.transitions import move_request, move_run

log = logging.getLogger(__name__)


@dataclass
class _Ended:
    """A step that ended and is not yet persisted (it is, with the next transaction)."""

    step_id: int
    planned: Planned
    state: StepState
    error: str
    output: dict


def _due(now: datetime):
    """Approved requests that may start now: not a calendar change, past ``not_before``,
    and, for a scheduled drill, its occurrence started by the scheduler."""
    started = select(DrillOccurrence.id).where(DrillOccurrence.state == OccurrenceState.STARTED)
    return (ChangeRequest.state == RequestState.APPROVED, col(ChangeRequest.kind).not_in(CALENDAR_KINDS),
            col(ChangeRequest.not_before).is_(None) | (ChangeRequest.not_before <= now),
            or_(col(ChangeRequest.occurrence_id).is_(None), ChangeRequest.kind != RequestKind.DRILL,
                col(ChangeRequest.occurrence_id).in_(started)))


class Runner:
    """Runs requests on a worker pool (Slack, HTTP) or inline (the shell, some tests)."""

    def __init__(self, services: Services, executor: Executor | None = None, inline: bool = False):
        self.services = services
        self.inline = inline
        self.executor = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="drbot-run")
        self.done = threading.Event()
        self._queued: set[int] = set()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = False

    # -- starting ---------------------------------------------------------------------------
    def poke(self, request_id: int | None = None) -> None:
        """A request was approved (or a drill came due): start what may start now."""
        if request_id is not None:
            self.launch(request_id)
        else:
            self.sweep()

    def sweep(self) -> list[int]:
        """Launch every request that is approved and due (after a restart, a drill's time)."""
        with session_scope(self.services.engine) as s:
            due = list(s.exec(select(ChangeRequest.id).where(*_due(self.services.clock()))
                              .order_by(col(ChangeRequest.id))))
        for request_id in due:
            self.launch(request_id)
        return due

    def launch(self, request_id: int) -> None:
        """The one function that starts runs (inline, or on the pool)."""
        if self.inline:
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
        deadline = time.monotonic() + grace
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
        begun = self._begin(request_id)
        if begun is None:
            return
        req, run, planned, first, reason = begun
        self._poke_outbox()
        diverged = False
        if req.kind is not RequestKind.ROLLBACK:
            svc = sv.config.service(req.service)
            run_request = req.parent_id if req.kind is RequestKind.RESUME else req.id
            pre = run_preflight(sv, svc, req.from_region, req.to_region, [p.step for p in planned],
                                exclude_request=run_request, resuming=req.kind is RequestKind.RESUME,
                                allow_data_loss=req.allow_data_loss)
            if not pre.ok:
                return self._finish(req, run, None, RequestState.FAILED, "pre-flight failed: the plan went stale",
                                    stale=pre)
            diverged = pre.data_loss == "diverged"  # allowed explicitly: the RPO is not a lag
        ended: _Ended | None = None
        with self._heartbeat(run):
            for p in planned:
                if p.position < first:
                    continue
                if self._closing:  # stopping: hand the run over after the step that ran, never mid-step
                    return self._hand_over(req, run, ended)
                step_id = self._step_started(req, run, p, ended)
                ended = self._run_step(req, step_id, p, reason)
                if ended.state is not StepState.SUCCEEDED:
                    return self._finish(req, run, ended, RequestState.FAILED, f"step {p.position + 1} failed")
        final = RequestState.ROLLED_BACK if req.kind is RequestKind.ROLLBACK else RequestState.SUCCEEDED
        self._finish(req, run, ended, final, "", diverged=diverged, succeeded=True)

    def _begin(self, request_id: int) -> tuple[ChangeRequest, Run, list[Planned], int, str] | None:
        """Claim the request (approved and due -> running) and open or resume its run."""
        sv = self.services
        now = sv.clock()
        with session_scope(sv.engine) as s:
            claimed = s.execute(update(ChangeRequest).where(ChangeRequest.id == request_id, *_due(now))
                                .values(state=RequestState.RUNNING)
                                .execution_options(synchronize_session=False)).rowcount == 1
            if not claimed:
                return None  # someone else runs it, it is no longer approved, or not due yet
            req = s.get(ChangeRequest, request_id, populate_existing=True)
            reason, first = req.reason, 0
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
                first = self._first_position(s, run)
                s.refresh(parent)
                queue_message(sv, s, parent)
            else:
                run = Run(request_id=req.id, kind=req.kind, service=req.service, approved_at=req.decided_at or now,
                          started_at=now, owner=OWNER, heartbeat_at=now,
                          **at_start(sv, req.service, [p.step for p in steps_for(sv, s, req)]))
                s.add(run)
                s.flush()
            record(s, SYSTEM, "run.started", target=req.service, request_id=req.id, service=req.service,
                   detail={"run": run.id, "owner": OWNER})
            planned = steps_for(sv, s, req)
            queue_message(sv, s, req)
            progress_of = s.get(ChangeRequest, run.request_id)
            queue_progress(sv, s, progress_of)
            s.refresh(run)
        sv.metrics.runs_started.labels(req.kind.value).inc()
        op("run.started", request_id=req.id, run_id=run.id, kind=req.kind.value, service=req.service, owner=OWNER)
        return req, run, planned, first, reason

    @staticmethod
    def _first_position(s: Session, run: Run) -> int:
        done = s.exec(select(RunStep).where(RunStep.run_id == run.id, RunStep.rollback == False,  # noqa: E712
                                            RunStep.state == StepState.SUCCEEDED)).all()
        return max((st.position for st in done), default=-1) + 1

    @contextmanager
    def _heartbeat(self, run: Run, every: float = 20.0):
        """Keep the run's heartbeat fresh during long steps, so that another drbot starting
        up does not take a live run for an interrupted one."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    with session_scope(self.services.engine) as s:
                        s.get(Run, run.id).heartbeat_at = self.services.clock()
                except Exception:
                    log.exception("heartbeat of run %s failed", run.id)

        thread = threading.Thread(target=beat, name=f"drbot-heartbeat-{run.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    def _step_started(self, req: ChangeRequest, run: Run, p: Planned, ended: _Ended | None) -> int:
        """One transaction: the previous step's end, then this step's start."""
        sv = self.services
        with session_scope(sv.engine) as s:
            if ended is not None:
                self._persist_end(s, req, run, ended)
            attempt = len(s.exec(select(RunStep.id).where(RunStep.run_id == run.id, RunStep.position == p.position,
                                                          RunStep.rollback == p.rollback)).all()) + 1
            row = RunStep(run_id=run.id, position=p.position, attempt=attempt, name=p.step.name,
                          action=p.step.action, rollback=p.rollback, state=StepState.RUNNING,
                          started_at=sv.clock())
            s.add(row)
            s.get(Run, run.id).heartbeat_at = sv.clock()
            s.flush()
            queue_progress(sv, s, s.get(ChangeRequest, run.request_id))
            step_id = row.id
        self._poke_outbox()
        return step_id

    def _hand_over(self, req: ChangeRequest, run: Run, ended: _Ended | None) -> None:
        """The process is stopping between two steps: record the step that ended; the run
        stays 'running' for the stop sequence to mark interrupted (Resume continues it)."""
        if ended is not None:
            with session_scope(self.services.engine) as s:
                self._persist_end(s, req, run, ended)
        log.info("run of request %s handed over after step %s: drbot is stopping", req.id,
                 ended.planned.position + 1 if ended else 0)

    def _run_step(self, req: ChangeRequest, step_id: int, p: Planned, reason: str) -> _Ended:
        # writes not yet replicated are lost when the writer is detached: the RPO is the lag just before
        cutover = {"lag_at_cutover": lag_before_cutover(self.services, self.services.config.service(req.service))} \
            if p.step.action in LOSSY else {}
        try:
            output = execute_step(self.services, req, p.step, p.region, reason=reason)
            return _Ended(step_id, p, StepState.SUCCEEDED, "", output | cutover)
        except StepFailed as e:
            return _Ended(step_id, p, StepState.FAILED, str(e), e.output | cutover)

    def _persist_end(self, s: Session, req: ChangeRequest, run: Run, ended: _Ended) -> None:
        sv = self.services
        now = sv.clock()
        row = s.get(RunStep, ended.step_id)
        row.state, row.ended_at, row.error = ended.state, now, ended.error
        row.output = json.dumps(ended.output, default=str)
        s.get(Run, run.id).heartbeat_at = now
        p = ended.planned
        if ended.state is StepState.SUCCEEDED and p.step.action == "traffic.shift" and not ended.output.get("dry_run"):
            _record_region(s, sv, req.service, p.region, req.id)
        record(s, SYSTEM, f"step.{ended.state.value}", target=req.service, request_id=req.id, service=req.service,
               text=p.step.name, detail={"run": run.id, "position": p.position, "error": ended.error,
                                         "seconds": (now - row.started_at).total_seconds()})
        sv.metrics.steps.labels(p.step.action, ended.state.value).observe((now - row.started_at).total_seconds())
        op("run.step", request_id=req.id, run_id=run.id, service=req.service, step=p.position + 1, action=p.step.action,
           outcome=ended.state.value, seconds=round((now - row.started_at).total_seconds(), 3),
           error=ended.error or None)

    def _finish(self, req: ChangeRequest, run: Run, ended: _Ended | None, state: RequestState, why: str,
                diverged: bool = False, succeeded: bool = False, stale: Preflight | None = None) -> None:
        sv = self.services
        now = sv.clock()
        svc = sv.config.service(req.service)
        with session_scope(sv.engine) as s:
            if ended is not None:
                self._persist_end(s, req, run, ended)
            r = s.get(Run, run.id)
            values = {"ended_at": now, "error": why}
            if succeeded:  # RTO from detection, decision and run start; RPO with its method
                s.flush()
                values |= measure(s, req, r, now, svc, diverged=diverged)
            else:
                values["passed"] = False
            if run.kind is RequestKind.DRILL:  # passes only if it moved something and read it back
                values |= drill_values(sv, s, run.id, run.request_id, values.get("passed"))
            move_run(s, run.id, [RequestState.RUNNING], state, **values)
            move_request(s, req.id, [RequestState.RUNNING], state, closed_at=now, state_reason=why)
            if stale is not None:
                s.get(ChangeRequest, req.id).preflight = stale.to_json()
            if req.kind is RequestKind.RESUME:
                move_request(s, req.parent_id, [RequestState.RUNNING], state, closed_at=now, state_reason=why)
            if req.kind is RequestKind.ROLLBACK and succeeded:
                move_request(s, req.parent_id, [RequestState.FAILED], RequestState.ROLLED_BACK, closed_at=now,
                             state_reason=f"rolled back by #{req.id}")
                record(s, SYSTEM, "request.rolled_back", target=req.service, request_id=req.parent_id,
                       service=req.service, detail={"rollback": req.id})
            if succeeded and req.kind in (RequestKind.FAILOVER, RequestKind.FAILBACK):
                _record_region(s, sv, req.service, req.to_region, req.id)
            record(s, SYSTEM, f"run.{state.value}", target=req.service, request_id=req.id, service=req.service,
                   text=why, detail={"run": run.id, **{k: v for k, v in values.items() if k != "ended_at"}})
            s.flush()
            current = s.get(ChangeRequest, req.id, populate_existing=True)
            queue_message(sv, s, current)
            queue_progress(sv, s, s.get(ChangeRequest, run.request_id))
            if req.parent_id:
                queue_message(sv, s, s.get(ChangeRequest, req.parent_id, populate_existing=True))
            if req.kind is RequestKind.DRILL:
                queue_report(sv, s, current)
        self._poke_outbox()
        seconds = (now - _aware(run.started_at)).total_seconds()
        sv.metrics.run_finished(req.kind.value, req.service, state.value, seconds, values)
        op("run.finished", request_id=req.id, run_id=run.id, kind=req.kind.value, service=req.service,
           outcome=state.value, reason=why or None, seconds=round(seconds, 3),
           rto_s=values.get("measured_rto_s"), rpo_s=values.get("measured_rpo_s"))
        self.done.set()

    def _poke_outbox(self) -> None:
        if self.services.outbox is not None:
            self.services.outbox.poke()


def _record_region(s: Session, sv: Services, service: str, active: str, request_id: int) -> None:
    svc = sv.config.service(service)
    standby = svc.standby if active == svc.active else svc.active
    row = s.get(ServiceState, service)
    if row is None:
        s.add(ServiceState(service=service, active_region=active, standby_region=standby,
                           updated_at=sv.clock(), changed_by_request=request_id))
    else:
        row.active_region, row.standby_region = active, standby
        row.updated_at, row.changed_by_request = sv.clock(), request_id
