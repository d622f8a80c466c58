"""The runbook engine: runs an approved request's steps one by one.

Each step's start is persisted before its action runs and its end (result, output) before
the next starts, so a process that dies leaves an exact record. Before the first step
the pre-flight checks run again; a plan gone stale does not run. Measured RTO is approval
to the last verify passing; measured RPO is the replication lag read at cutover.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from contextlib import contextmanager
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from sqlmodel import select

from bot import changes
from bot.audit import SYSTEM, record
from bot.config.runbooks import Step
from bot.preflight import run_preflight
from bot.render import Reply
from bot.services import Services
from bot.steps import StepFailed, execute_step
from bot.store import session_scope
from bot.store.models import (
    ChangeRequest, RequestKind, RequestState, Run, RunStep, ServiceState, StepState,
)
from bot.store.transitions import move_request, move_run

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Planned:
    """A step to run: its config, where it acts, and whether it is a rollback."""

    position: int
    step: Step
    region: str
    rollback: bool = False


def steps_for(services: Services, req: ChangeRequest) -> list[Planned]:
    if req.kind in changes.CALENDAR_KINDS:
        return []
    svc = services.config.service(req.service)
    if req.kind in (RequestKind.FAILOVER, RequestKind.FAILBACK, RequestKind.DRILL):
        steps = svc.runbooks.steps(req.kind.value, req.scenario or None)
        return [Planned(i, st, req.to_region if st.to == "target" else req.from_region)
                for i, st in enumerate(steps)]
    with session_scope(services.engine) as s:
        parent = s.get(ChangeRequest, req.parent_id)
    base = steps_for(services, parent)
    if req.kind is RequestKind.RESUME:
        return base
    # rollback: the parent's steps that ran, newest first, each through its rollback spec
    with session_scope(services.engine) as s:
        run = s.exec(select(Run).where(Run.request_id == parent.id)).first()
        ran = {st.position for st in s.exec(select(RunStep).where(
            RunStep.run_id == run.id, RunStep.rollback == False))  # noqa: E712
            if st.state in (StepState.SUCCEEDED, StepState.FAILED, StepState.RUNNING)} if run else set()
    out = []
    for p in reversed(base):
        if p.position in ran and p.step.rollback is not None:
            rb = p.step.rollback
            spec = Step(name=f"Undo: {p.step.name}", action=rb.action, source=rb.source, timeout=p.step.timeout)
            region = parent.to_region if rb.to == "target" else parent.from_region
            out.append(Planned(p.position, spec, region, rollback=True))
    return out


class Runner:
    """Starts runs on a worker pool (Slack, HTTP) or inline (the shell, some tests)."""

    def __init__(self, services: Services, executor: Executor | None = None, inline: bool = False):
        self.services = services
        self.inline = inline
        self.executor = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="drbot-run")
        self.done = threading.Event()

    def start(self, request_id: int) -> None:
        if self.inline:
            self.execute(request_id)
        else:
            self.executor.submit(self._safe, request_id)

    def _safe(self, request_id: int) -> None:
        try:
            self.execute(request_id)
        except Exception:
            log.exception("run of request %s crashed", request_id)

    # -- one run ---------------------------------------------------------------------------
    def execute(self, request_id: int) -> None:
        sv = self.services
        with session_scope(sv.engine) as s:
            req = changes.load(s, request_id)
        if req.kind in changes.CALENDAR_KINDS:
            return self._calendar(req)
        planned = steps_for(sv, req)
        run_request = req.parent_id if req.kind is RequestKind.RESUME else req.id
        run = self._begin(req, run_request)
        if run is None:
            return
        changes.refresh(sv, req.id)
        first = self._first_position(run) if req.kind is RequestKind.RESUME else 0
        if req.kind is not RequestKind.ROLLBACK:
            svc = sv.config.service(req.service)
            pre = run_preflight(sv, svc, req.from_region, req.to_region, [p.step for p in planned],
                                exclude_request=run_request, resuming=req.kind is RequestKind.RESUME)
            if not pre.ok:
                return self._finish(req, run, RequestState.FAILED, "pre-flight failed: the plan went stale",
                                    stale=pre)
            rpo = pre.lag_seconds
        else:
            rpo = None
        reason = req.reason
        if req.kind is RequestKind.RESUME:  # the accepted data loss was named by the original request
            with session_scope(sv.engine) as s:
                reason = s.get(ChangeRequest, req.parent_id).reason
        with self._heartbeat(run):
            for p in planned:
                if p.position < first:
                    continue
                if not self._run_step(req, run, p, reason):
                    return self._finish(req, run, RequestState.FAILED, f"step {p.position + 1} failed")
        run_state = RequestState.ROLLED_BACK if req.kind is RequestKind.ROLLBACK else RequestState.SUCCEEDED
        self._finish(req, run, run_state, "", rpo=rpo, succeeded=True)

    def _calendar(self, req: ChangeRequest) -> None:
        """An approved skip or postpone of a scheduled drill: no runbook, just the change."""
        from bot.drills import apply_calendar_change

        sv = self.services
        with session_scope(sv.engine) as s:
            if not move_request(s, req.id, [RequestState.APPROVED], RequestState.RUNNING):
                return
        what = apply_calendar_change(sv, req)
        with session_scope(sv.engine) as s:
            move_request(s, req.id, [RequestState.RUNNING], RequestState.SUCCEEDED, closed_at=sv.clock(),
                         state_reason=what)
        changes.refresh(sv, req.id)
        self.done.set()

    def _begin(self, req: ChangeRequest, run_request: int) -> Run | None:
        sv = self.services
        now = sv.clock()
        with session_scope(sv.engine) as s:
            if not move_request(s, req.id, [RequestState.APPROVED], RequestState.RUNNING):
                return None  # someone else runs it, or it is no longer approved
            if req.kind is RequestKind.RESUME:
                run = s.exec(select(Run).where(Run.request_id == run_request)).one()
                if not move_run(s, run.id, [RequestState.INTERRUPTED], RequestState.RUNNING, owner=OWNER,
                                heartbeat_at=now):
                    move_request(s, req.id, [RequestState.RUNNING], RequestState.FAILED, closed_at=now,
                                 state_reason="the run is no longer interrupted")
                    return None
                move_request(s, run_request, [RequestState.INTERRUPTED], RequestState.RUNNING)
            else:
                run = Run(request_id=req.id, kind=req.kind, service=req.service, approved_at=req.decided_at or now,
                          started_at=now, owner=OWNER, heartbeat_at=now)
                s.add(run)
                s.flush()
            record(s, SYSTEM, "run.started", target=req.service, request_id=req.id, service=req.service,
                   detail={"run": run.id, "owner": OWNER})
            s.refresh(run)
        return run

    def _first_position(self, run: Run) -> int:
        with session_scope(self.services.engine) as s:
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

    def _run_step(self, req: ChangeRequest, run: Run, p: Planned, reason: str) -> bool:
        sv = self.services
        with session_scope(sv.engine) as s:
            attempt = len(s.exec(select(RunStep).where(RunStep.run_id == run.id, RunStep.position == p.position,
                                                       RunStep.rollback == p.rollback)).all()) + 1
            row = RunStep(run_id=run.id, position=p.position, attempt=attempt, name=p.step.name,
                          action=p.step.action, rollback=p.rollback, state=StepState.RUNNING,
                          started_at=sv.clock())
            s.add(row)
            s.get(Run, run.id).heartbeat_at = sv.clock()
            s.flush()
            step_id = row.id
        self._progress(run.request_id)
        try:
            output = execute_step(sv, req, p.step, p.region, reason=reason)
            state, error = StepState.SUCCEEDED, ""
        except StepFailed as e:
            output, state, error = e.output, StepState.FAILED, str(e)
        now = sv.clock()
        with session_scope(sv.engine) as s:
            row = s.get(RunStep, step_id)
            row.state, row.ended_at, row.error = state, now, error
            row.output = json.dumps(output, default=str)
            s.get(Run, run.id).heartbeat_at = now
            if state is StepState.SUCCEEDED and p.step.action == "traffic.shift" and not output.get("dry_run"):
                _record_region(s, sv, req.service, p.region, req.id)
            record(s, SYSTEM, f"step.{state.value}", target=req.service, request_id=req.id, service=req.service,
                   text=p.step.name, detail={"run": run.id, "position": p.position, "error": error,
                                             "seconds": (now - row.started_at).total_seconds()})
        self._progress(run.request_id)
        return state is StepState.SUCCEEDED

    def _finish(self, req: ChangeRequest, run: Run, state: RequestState, why: str, rpo: float | None = None,
                succeeded: bool = False, stale=None) -> None:
        sv = self.services
        now = sv.clock()
        svc = sv.config.service(req.service)
        with session_scope(sv.engine) as s:
            r = s.get(Run, run.id)
            values = {"ended_at": now, "error": why}
            if succeeded:
                # a scheduled drill approved ahead of time is timed from its start, not from the click
                began = max(r.approved_at, req.not_before) if req.not_before else r.approved_at
                rto = (now - began).total_seconds()
                values |= {"verified_at": now, "measured_rto_s": rto, "measured_rpo_s": rpo,
                           "passed": rto <= svc.rto.total_seconds() and (rpo is None or rpo <= svc.rpo.total_seconds())}
            else:
                values["passed"] = False
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
        self._progress(run.request_id)
        changes.refresh(sv, req.id)
        if req.parent_id:
            changes.refresh(sv, req.parent_id)
        if req.kind is RequestKind.DRILL and req.channel:
            self._report(req, run)
        flush = getattr(sv.messenger, "flush", None)
        if flush is not None:  # coalesced updates: the final state must reach the channel
            flush(timeout=30.0)
        self.done.set()

    def _report(self, req: ChangeRequest, run: Run) -> None:
        """The drill report, in the request's thread: steps, measured RTO/RPO against the
        targets, what broke, and the RTO trend of the service's drills."""
        sv = self.services
        reply = changes.message(sv, req.id)
        with session_scope(sv.engine) as s:
            history = s.exec(select(Run).where(Run.service == req.service, Run.kind == RequestKind.DRILL,
                                               Run.measured_rto_s != None)  # noqa: E711
                             .order_by(Run.started_at.desc()).limit(12)).all()
        trend = [r.measured_rto_s for r in reversed(history)]
        try:
            sv.messenger.post(req.channel, Reply("drill_report", reply.context | {"trend": trend}, ephemeral=False),
                              thread_ts=req.message_ts or None)
        except Exception:
            log.exception("could not post the report of drill %s", req.id)

    def _progress(self, request_id: int) -> None:
        """One live progress message in the request's thread, posted once then updated."""
        sv = self.services
        reply = changes.message(sv, request_id)
        req, run = reply.context["req"], reply.context["run"]
        if not req.channel or run is None:
            return
        progress = Reply("run_progress", reply.context, ephemeral=False)
        try:
            if run.progress_ts:
                sv.messenger.update(req.channel, run.progress_ts, progress)
            else:
                ts = sv.messenger.post(req.channel, progress, thread_ts=req.message_ts or None)
                with session_scope(sv.engine) as s:
                    s.get(Run, run.id).progress_ts = ts
        except Exception:
            log.exception("could not post the progress of request %s", request_id)


def _record_region(s, sv: Services, service: str, active: str, request_id: int) -> None:
    svc = sv.config.service(service)
    standby = svc.standby if active == svc.active else svc.active
    row = s.get(ServiceState, service)
    if row is None:
        s.add(ServiceState(service=service, active_region=active, standby_region=standby,
                           updated_at=sv.clock(), changed_by_request=request_id))
    else:
        row.active_region, row.standby_region = active, standby
        row.updated_at, row.changed_by_request = sv.clock(), request_id

