"""What a region evacuation's request message and its live board show, read in one
session: per service its wave, state, current step, elapsed time and measured RTO/RPO;
the approvals; the buttons its state allows. Rendered by the outbox handlers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.drill_schedules import schedule_for
from bot.evacuation_policy import members_of, policy_of, root_of
from bot.evacuation_run import CHILD_STATE
from bot.preflight import Preflight
from bot.services import Services
from bot.store.drill_tables import DrillOccurrence
from bot.store.evacuation_tables import Evacuation, EvacuationMember
from bot.store.models import Approval, ChangeRequest, Run, RunStep, StepState, aware


@dataclass(frozen=True)
class Line:
    """One service on the board."""

    service: str
    wave: int
    state: str
    note: str
    from_region: str
    to_region: str
    child_id: int | None
    step: str
    """The step running now, or the last that ran ('' before the first)."""
    step_no: int
    steps: int
    elapsed_s: float | None
    rto_s: float | None
    rpo_s: float | None
    error: str
    preflight: Preflight | None


def lines_of(services: Services, s: Session, members: list[EvacuationMember], now: datetime) -> list[Line]:
    ids = [m.child_id for m in members if m.child_id is not None]
    runs = {r.request_id: r for r in s.exec(select(Run).where(col(Run.request_id).in_(ids)))} if ids else {}
    latest: dict[int, RunStep] = {}
    if runs:
        for st in s.exec(select(RunStep).where(col(RunStep.run_id).in_([r.id for r in runs.values()]))
                         .order_by(col(RunStep.id))):
            latest[st.run_id] = st
    out = []
    for m in members:
        run = runs.get(m.child_id) if m.child_id is not None else None
        st = latest.get(run.id) if run is not None else None
        svc = services.config.service(m.service)
        total = len(svc.runbooks.steps("failback" if m.to_region == svc.active else "failover")) if svc else 0
        elapsed = None
        if run is not None:
            end = aware(run.ended_at) if run.ended_at else now
            elapsed = max(0.0, (end - aware(run.started_at)).total_seconds())
        error = (st.error if st is not None and st.state is StepState.FAILED else "") or (run.error if run else "")
        state = m.state
        if state == "running" and run is not None and run.ended_at is not None:  # ended since the last decision
            state = CHILD_STATE.get(run.state, state)
        out.append(Line(service=m.service, wave=m.wave, state=state, note=m.note, from_region=m.from_region,
                        to_region=m.to_region, child_id=m.child_id, step=st.name if st is not None else "",
                        step_no=st.position + 1 if st is not None else 0, steps=total, elapsed_s=elapsed,
                        rto_s=run.measured_rto_s if run else None, rpo_s=run.measured_rpo_s if run else None,
                        error=error, preflight=Preflight.from_json(m.preflight) if m.preflight else None))
    return out


def evacuation_context(services: Services, s: Session, req: ChangeRequest) -> dict[str, Any]:
    """The context of the evacuation's request message and of its board (``req`` may be
    the resume of one: it shows the evacuation it continues)."""
    root = root_of(s, req)
    own = s.get(Evacuation, req.id)  # a rollback of an evacuation has its own members
    ev = own if own is not None else s.get(Evacuation, root.id)
    members = members_of(s, ev.request_id if ev is not None else root.id)
    now = services.clock()
    lines = lines_of(services, s, members, now)
    waves: dict[int, list[Line]] = {}
    for line in lines:
        waves.setdefault(line.wave, []).append(line)
    counts: dict[str, int] = {}
    for line in lines:
        counts[line.state] = counts.get(line.state, 0) + 1
    approvals = list(s.exec(select(Approval).where(Approval.request_id == req.id).order_by(col(Approval.at))))
    elapsed = None
    if ev is not None and ev.started_at is not None:
        end = aware(ev.ended_at) if ev.ended_at else now
        elapsed = (end - aware(ev.started_at)).total_seconds()
    critical = [max((x for x in waves[k] if x.elapsed_s is not None), key=lambda x: x.elapsed_s, default=None)
                for k in sorted(waves)]
    critical = [x for x in critical if x is not None]
    return {"req": req, "root": root, "ev": ev, "lines": lines, "waves": [waves[k] for k in sorted(waves)],
            "critical": critical, "critical_s": sum(x.elapsed_s for x in critical) if critical else None,
            "counts": counts, "moving": sum(1 for x in lines if x.state != "refused"),
            "approvals": approvals, "policy": policy_of(services.config, s, req), "now": now,
            "elapsed_s": elapsed, "command": services.command} | _calendar(services, s, req)


def _calendar(services: Services, s: Session, req: ChangeRequest) -> dict[str, Any]:
    """A region drill on the calendar: its occurrence and schedule (when, on point, impact;
    Postpone and Skip while it is planned)."""
    occ = s.get(DrillOccurrence, req.occurrence_id) if req.occurrence_id is not None else None
    return {"occ": occ, "schedule": schedule_for(services.config, occ.service, occ.schedule) if occ else None}


def board_context(services: Services, s: Session, request_id: int) -> dict[str, Any] | None:
    req = s.get(ChangeRequest, request_id)
    if req is None or s.get(Evacuation, request_id) is None:
        return None
    return evacuation_context(services, s, req)


@dataclass(frozen=True)
class DrillRow:
    """One service in a region drill's report."""

    service: str
    wave: int
    state: str
    note: str
    kind: str
    """'drill' (its scenario 'evacuate') or 'failover' (on a sandbox)."""
    ready_s: float | None
    """From the drill's start to this service verified in its new region (its run's end
    when no step verifies): its recovery time inside the region drill."""
    rto_s: float | None
    """Its own run's measured RTO (from its wave's start to verified)."""
    rpo_s: float | None
    rpo_method: str
    rto_target_s: float | None
    rpo_target_s: float | None
    sandbox: bool

    @property
    def rto_ok(self) -> bool | None:
        return None if self.ready_s is None or self.rto_target_s is None else self.ready_s <= self.rto_target_s

    @property
    def rpo_ok(self) -> bool | None:
        return None if self.rpo_s is None or self.rpo_target_s is None else self.rpo_s <= self.rpo_target_s


def drill_report(services: Services, s: Session, request_id: int) -> dict[str, Any] | None:
    """The report of a region drill: the board's context, then per service its RTO within
    the drill (start to verified), its own run's RTO and its RPO against its targets, the
    total RTO (start to the last service verified) and the critical path."""
    ctx = board_context(services, s, request_id)
    if ctx is None or ctx["ev"] is None or ctx["ev"].started_at is None:
        return ctx
    started = aware(ctx["ev"].started_at)
    members = {m.service: m for m in members_of(s, ctx["ev"].request_id)}
    ids = [m.child_id for m in members.values() if m.child_id is not None]
    runs = {r.request_id: r for r in s.exec(select(Run).where(col(Run.request_id).in_(ids)))} if ids else {}
    kinds = dict(s.exec(select(ChangeRequest.id, ChangeRequest.kind).where(col(ChangeRequest.id).in_(ids))).all()) \
        if ids else {}
    rows = []
    for line in ctx["lines"]:
        m = members[line.service]
        run = runs.get(m.child_id) if m.child_id is not None else None
        svc = services.config.service(line.service)
        done = None
        if run is not None and run.state.value == "succeeded":
            done = aware(run.verified_at or run.ended_at)
        rows.append(DrillRow(
            service=line.service, wave=line.wave, state=line.state, note=line.error or line.note,
            kind=kinds[m.child_id].value if m.child_id in kinds else "",
            ready_s=(done - started).total_seconds() if done is not None else None,
            rto_s=run.measured_rto_s if run else None, rpo_s=run.measured_rpo_s if run else None,
            rpo_method=run.rpo_method if run else "", sandbox=bool(run and run.sandbox),
            rto_target_s=svc.rto.total_seconds() if svc else None, rpo_target_s=svc.rpo.total_seconds() if svc else None))
    ready = [r.ready_s for r in rows if r.ready_s is not None]
    moved = [r for r in rows if r.state == "succeeded"]
    return ctx | {"rows": rows, "total_rto_s": max(ready) if ready else None, "moved": len(moved),
                  "sandbox": any(r.sandbox for r in rows),
                  "passed": bool(moved) and ctx["req"].state.value == "succeeded"
                  and all(r.rto_ok is not False and r.rpo_ok is not False for r in moved)}


__all__ = ["DrillRow", "EvacuationMember", "Line", "board_context", "drill_report", "evacuation_context", "lines_of"]
