"""The coordinator of a region evacuation: starts its services wave by wave as child
change requests, run by the ordinary runbook engine (``Runner.launch``), so steps,
progress, measurements, evidence and crash handling are the same as for any failover.

It holds no thread and no state in memory: every decision is ``advance``, one transaction
that locks the evacuation's request row, reads its members and their children, and starts
what may start now. The runner calls it when the evacuation's run is claimed (approved ->
running), whenever a child's run ends, and from its periodic sweep (after a restart, or on
another replica). So a crash loses nothing: what succeeded is recorded and never runs
again; a child left running by a dead process is interrupted (``bot.followups``) and the
evacuation with it, until a Resume is approved.

Rules: a wave starts only when every service of the waves before it has ended; inside a
wave at most ``parallelism`` services run at once; each child's pre-flight runs again
before its first step (the engine's rule for every run). A failed service with
``on_failure: stop``: nothing more starts (the services running finish); with
``continue``: the services that depend on it, directly or not, are skipped, the rest go on.
Abort: nothing more starts. The evacuation ends succeeded (every service moved), failed, or
aborted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.audit import SYSTEM, record, record_in
from bot.config.dependencies import dependents
from bot.evacuation_policy import is_evacuation, members_of, root_of
from bot.evacuation_end import ACTIVE, end, interrupt, public
from bot.evacuation_gate import gate_of
from bot.evacuation_events import queue_board, queue_note, queue_statuspage, timeline_incident
from bot.oplog import op
from bot.request_events import queue_message
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.db import read_once
from bot.store.batch import Writes
from bot.store.evacuation_tables import DRILL_SCENARIO, Evacuation, EvacuationMember
from bot.store.models import ChangeRequest, RequestKind, RequestState
from bot.store.transitions import move_request

log = logging.getLogger(__name__)

ENDED = ("succeeded", "failed", "skipped", "refused", "rolled_back", "aborted")
CHILD_STATE = {RequestState.APPROVED: "running", RequestState.RUNNING: "running",
               RequestState.SUCCEEDED: "succeeded", RequestState.FAILED: "failed",
               RequestState.INTERRUPTED: "interrupted", RequestState.ROLLED_BACK: "rolled_back",
               RequestState.ABORTED: "aborted", RequestState.CANCELLED: "failed"}


@dataclass
class Step:
    """What one ``advance`` decided: the children to launch after its commit."""

    launch: list[int] = field(default_factory=list)
    resume: list[int] = field(default_factory=list)
    ended: bool = False


def child_kind(services: Services, ev: Evacuation, service: str) -> RequestKind:
    """What moves ``service``: a failover, a failback (return), a rollback, or in a region
    drill its drill scenario 'evacuate' when it has one (else its failover, on a sandbox)."""
    if ev.direction == "drill":
        svc = services.config.service(service)
        return RequestKind.DRILL if svc is not None and svc.runbooks.steps("drill", DRILL_SCENARIO) \
            else RequestKind.FAILOVER
    return {"return": RequestKind.FAILBACK, "rollback": RequestKind.ROLLBACK}.get(ev.direction, RequestKind.FAILOVER)


# -- the runner's hooks --------------------------------------------------------------------

def begin(services: Services, s: Session, req: ChangeRequest) -> None:
    """The runner claimed ``req`` (approved -> running): an evacuation starts, or a resume
    continues its interrupted evacuation. In the claim's transaction."""
    now = services.clock()
    ev = s.get(Evacuation, req.id)
    if ev is not None:  # an evacuation, a return, the rollback of an evacuation
        ev.started_at = now
        record(s, SYSTEM, "evacuation.started", target=req.service, request_id=req.id, service=req.service,
               incident_id=timeline_incident(s, req.channel), text=req.reason,
               detail={"services": len(members_of(s, req.id)), "direction": ev.direction})
        queue_note(services, s, req, "started")
        if public(ev):
            queue_statuspage(services, s, req, "started", waves=_waves(s, req.id))
    elif req.kind is RequestKind.RESUME:
        root = s.get(ChangeRequest, req.parent_id)  # the evacuation (or its rollback) it resumes
        if move_request(s, root.id, [RequestState.INTERRUPTED], RequestState.RUNNING, state_reason=""):
            record(s, SYSTEM, "evacuation.resumed", target=root.service, request_id=root.id, service=root.service,
                   incident_id=timeline_incident(s, root.channel), detail={"resume": req.id})
            for m in members_of(s, root.id):
                if m.state == "interrupted":
                    m.state = "resume"  # advance asks for the resume of its interrupted run
            queue_message(services, s, root)
        else:
            move_request(s, req.id, [RequestState.RUNNING], RequestState.FAILED, closed_at=now,
                         state_reason="the evacuation is no longer interrupted")
    queue_message(services, s, req)


def started(services: Services, request_id: int) -> None:
    """After ``begin`` committed: the first services start."""
    with read_scope(services.engine) as s:
        req = s.get(ChangeRequest, request_id)
        target = req.id if s.get(Evacuation, req.id) is not None else root_of(s, req).id
    advance(services, target)


def child_ended(services: Services, req: ChangeRequest) -> None:
    """A run ended whose request has a parent: when it moves a service of an evacuation
    (itself, or the resume of one), the evacuation goes on. Read first without a write
    lock: when the others of its wave still run and nothing of it waits, there is nothing
    to decide (the last of the wave to end decides; the sweep catches anything missed).
    When a thread of this process is deciding its evacuation now, it decides again: nothing
    to read."""
    if req.kind is not RequestKind.RESUME and gate_of(services).nudge(req.parent_id):
        return
    ids = [req.id, req.parent_id] if req.kind is RequestKind.RESUME else [req.id]
    found = read_once(services.engine, _WAVES, {"ids": ids})  # the services of a wave end together: cheap
    if found and _worth_deciding(found):
        advance(services, found[0].evacuation_id)


_M, _R = EvacuationMember.__table__, ChangeRequest.__table__
_WAVES = (select(_M.c.evacuation_id, _M.c.wave, _M.c.state, _M.c.child_id, _R.c.state.label("child_state"))
          .select_from(_M.outerjoin(_R, _R.c.id == _M.c.child_id))
          .where(_M.c.evacuation_id == select(_M.c.evacuation_id).where(_M.c.child_id.in_(bindparam("ids", expanding=True)))
                 .limit(1).scalar_subquery()))
"""Every member of the evacuation a child belongs to, with its child's state."""


def _worth_deciding(members) -> bool:
    """From ``_WAVES``: the wave is over, something failed or was interrupted, or a slot
    freed in the wave with services waiting."""
    started = [m for m in members if m.child_id is not None]
    active = [m for m in started if m.child_state in (RequestState.APPROVED, RequestState.RUNNING)]
    if not active or any(m.child_state is not RequestState.SUCCEEDED for m in started if m not in active):
        return True
    wave = max(m.wave for m in active)
    return any(m.state == "pending" and m.wave == wave for m in members)


def sweep(services: Services) -> list[int]:
    """Every evacuation running: advance it (a restart, a lost wake-up, another replica)."""
    with read_scope(services.engine) as s:
        ids = list(s.exec(select(ChangeRequest.id).join(Evacuation, Evacuation.request_id == ChangeRequest.id)
                          .where(ChangeRequest.state == RequestState.RUNNING).order_by(col(ChangeRequest.id))))
    for evacuation_id in ids:
        try:
            advance(services, evacuation_id)
        except Exception:
            log.exception("evacuation %s could not advance", evacuation_id)
    return ids


# -- the one decision ----------------------------------------------------------------------

def advance(services: Services, evacuation_id: int) -> None:
    """Decide now (or leave it to the thread of this process deciding already)."""
    gate = gate_of(services)
    if not gate.enter(evacuation_id):
        return
    try:
        while True:
            _advance_once(services, evacuation_id)
            if not gate.again(evacuation_id):
                return
    except BaseException:
        gate.leave(evacuation_id)
        raise


def _advance_once(services: Services, evacuation_id: int) -> None:
    with session_scope(services.engine) as s:
        req = s.exec(select(ChangeRequest).where(ChangeRequest.id == evacuation_id).with_for_update()
                     .execution_options(populate_existing=True)).one()
        if req.state is not RequestState.RUNNING:
            return
        step = _decide(services, s, req)
    for child_id in step.launch + step.resume:
        if services.runner is not None:
            services.runner.launch(child_id)
    if services.outbox is not None:
        services.outbox.poke()


def _decide(services: Services, s: Session, req: ChangeRequest) -> Step:
    ev = s.get(Evacuation, req.id, populate_existing=True)
    members = members_of(s, req.id)
    step = Step()
    changed = _follow_children(services, s, req, members)
    if any(m.state == "interrupted" for m in members):
        interrupt(services, s, req, members)
        return step
    for m in [m for m in members if m.state == "resume"]:
        step.resume.append(_resume_child(services, s, req, m))
        changed = True
    failed = [m for m in members if m.state == "failed"]
    stopping = bool(ev.aborted_by) or (failed and ev.on_failure == "stop")
    if failed and ev.on_failure == "continue":
        behind = {f.service: dependents(services.config, f.service) for f in failed}
        for m in members:
            blocking = [name for name, deps in behind.items() if m.service in deps]
            if m.state == "pending" and blocking:
                m.state, m.note = "skipped", "depends on " + ", ".join(blocking)
                changed = True
    if not stopping:
        changed |= _start_next(services, s, req, ev, members, step)
    if not any(m.state in ACTIVE or m.state == "resume" for m in members) and not step.launch and not step.resume:
        if not any(m.state == "pending" for m in members) or stopping:
            end(services, s, req, ev, members)
            step.ended = True
            return step
    if changed:
        queue_board(services, s, req)
        queue_message(services, s, req)
    return step


def _follow_children(services: Services, s: Session, req: ChangeRequest, members: list[EvacuationMember]) -> bool:
    """Each started member takes its child's state; an interrupted child whose resume is
    approved or running counts as running. A service that ended gets its note."""
    ids = [m.child_id for m in members if m.child_id is not None]
    if not ids:
        return False
    states = dict(s.exec(select(ChangeRequest.id, ChangeRequest.state).where(col(ChangeRequest.id).in_(ids))).all())
    stopped = [i for i, state in states.items() if state is RequestState.INTERRUPTED]
    resuming = set(s.exec(select(ChangeRequest.parent_id).where(
        col(ChangeRequest.parent_id).in_(stopped), ChangeRequest.kind == RequestKind.RESUME,
        col(ChangeRequest.state).in_([RequestState.APPROVED, RequestState.RUNNING])))) if stopped else set()
    changed = False
    for m in members:
        if m.child_id is None or m.state in ("skipped", "resume"):
            continue
        now_state = CHILD_STATE.get(states.get(m.child_id), m.state)
        if now_state == "interrupted" and m.child_id in resuming:
            now_state = "running"
        if now_state != m.state:
            m.state = now_state
            changed = True
            if now_state == "failed":  # what moved shows on the board; a failure also gets its line
                queue_note(services, s, req, "service", wave=m.wave, service=m.service)
    return changed


def _start_next(services: Services, s: Session, req: ChangeRequest, ev: Evacuation,
                members: list[EvacuationMember], step: Step) -> bool:
    pending = [m for m in members if m.state == "pending"]
    if not pending:
        return False
    wave = min(m.wave for m in pending)
    if any(m.wave < wave and m.state not in ENDED for m in members):
        return False  # an earlier wave is still running
    running = sum(1 for m in members if m.state in ACTIVE or m.state == "resume")
    free = max(0, ev.parallelism - running)
    if not free:
        return False
    batch = [m for m in pending if m.wave == wave][:free]
    children = {m.service: _new_child(services, req, ev, m) for m in batch}
    try:  # all at once (one savepoint, one insert); one by one only when a service is busy
        with s.begin_nested():
            s.add_all(children.values())
            s.flush()
    except IntegrityError:
        children = {}
    audit = Writes()  # the entries go last, in one statement per table: the members' updates flush as one batch
    new_wave = wave > ev.wave
    if new_wave:
        ev.wave = wave
        names = [m.service for m in members if m.wave == wave]
        record_in(audit, SYSTEM, "evacuation.wave", target=req.service, request_id=req.id, service=req.service,
                  incident_id=timeline_incident(s, req.channel), text=f"wave {wave}: {', '.join(names)}",
                  detail={"wave": wave, "services": names})
    for m in batch:
        child = _child(services, s, req, ev, m, children.get(m.service), audit)
        if child is not None:
            step.launch.append(child)
    _write_all(s, audit)
    if new_wave:
        queue_note(services, s, req, "wave", wave=wave)
        if public(ev):
            queue_statuspage(services, s, req, "wave", wave=wave,
                             waves=len({m.wave for m in members if m.state != "refused"}))
    return True


def _write_all(s: Session, writes: Writes) -> None:
    """Insert the rows of ``writes`` (inserts that read nothing back) with one statement per table."""
    by_table: dict = {}
    for w in writes.items:
        by_table.setdefault(w.table, []).append(w.values)
    for table, rows in by_table.items():
        s.execute(table.insert(), rows)


def _new_child(services: Services, req: ChangeRequest, ev: Evacuation, m: EvacuationMember) -> ChangeRequest:
    """The child request that moves ``m``'s service, approved by the evacuation's approval."""
    now = services.clock()
    kind = child_kind(services, ev, m.service)
    return ChangeRequest(kind=kind, service=m.service, from_region=m.from_region, to_region=m.to_region,
                         scenario=DRILL_SCENARIO if kind is RequestKind.DRILL else "",
                         reason=f"evacuation #{req.id}: {req.reason}", requester=req.requester,
                         requester_name=req.requester_name, state=RequestState.APPROVED,
                         required_approvals=req.required_approvals, break_glass=req.break_glass,
                         justification=req.justification, parent_id=m.undoes or req.id, created_at=now,
                         expires_at=now, decided_at=now, channel="", origin=req.origin)


def _child(services: Services, s: Session, req: ChangeRequest, ev: Evacuation, m: EvacuationMember,
           child: ChangeRequest | None, audit: Writes) -> int | None:
    """Record ``child`` (already inserted), or insert it alone: refused when another change
    of the service opened since the approval (the one-open-change index)."""
    kind = child_kind(services, ev, m.service)
    try:
        if child is None:
            child = _new_child(services, req, ev, m)
            with s.begin_nested():
                s.add(child)
                s.flush()
    except IntegrityError:  # another change of the service opened since the approval
        other = s.exec(select(ChangeRequest).where(
            ChangeRequest.service == m.service, col(ChangeRequest.state).in_(
                [RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING, RequestState.INTERRUPTED]),
            ChangeRequest.id != req.id)).first()
        m.state, m.note = "failed", f"request #{other.id if other else '?'} is open for it: one change at a time"
        record_in(audit, SYSTEM, "evacuation.service_refused", target=m.service, request_id=req.id,
                  service=m.service, text=m.note)
        queue_note(services, s, req, "service", service=m.service, wave=m.wave)
        return None
    m.child_id, m.state = child.id, "running"
    record_in(audit, SYSTEM, f"request.{kind.value}", target=m.service, request_id=child.id, service=m.service,
              text=child.reason, detail={"evacuation": req.id, "wave": m.wave, "from": m.from_region,
                                         "to": m.to_region, "approved_by": f"evacuation #{req.id}"})
    op("evacuation.service_started", request_id=req.id, child=child.id, service=m.service, wave=m.wave)
    return child.id


def _resume_child(services: Services, s: Session, req: ChangeRequest, m: EvacuationMember) -> int:
    """A service whose run was interrupted continues from the step that did not finish, as a
    resume request of its child, approved by the evacuation's resume."""
    now = services.clock()
    child = s.get(ChangeRequest, m.child_id)
    resume = ChangeRequest(kind=RequestKind.RESUME, service=m.service, from_region=child.from_region,
                           to_region=child.to_region, reason=f"resume #{child.id} (evacuation #{req.id})",
                           requester=req.requester, requester_name=req.requester_name,
                           state=RequestState.APPROVED, required_approvals=req.required_approvals,
                           parent_id=child.id, created_at=now, expires_at=now, decided_at=now, channel="",
                           origin=req.origin)
    s.add(resume)
    s.flush()
    m.state = "running"
    record(s, SYSTEM, "request.resume", target=m.service, request_id=resume.id, service=m.service,
           detail={"evacuation": req.id, "child": child.id, "approved_by": f"evacuation #{req.id}"})
    return resume.id


def _waves(s: Session, evacuation_id: int) -> int:
    return len({m.wave for m in members_of(s, evacuation_id) if m.state != "refused"})


__all__ = ["advance", "begin", "child_ended", "is_evacuation", "started", "sweep"]
