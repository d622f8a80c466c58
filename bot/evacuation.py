"""Region evacuation requests: ``/dr evacuate REGION REASON`` (every service active in
the region, failed over in waves by dependency), ``/dr return REGION REASON`` (the
services whose home is the region and that run elsewhere, failed back in reverse
dependency order), and what follows one: Abort, Resume after an interruption.

One change request (kind ``evacuate`` or ``return``, service ``region:REGION``) covers
every service; it is posted, approved, denied, cancelled and expires like any change
(``bot.changes.decide``) under the evacuation's policy (``bot.evacuation_policy``). Its
services run as child requests once it is approved (``bot.evacuation_run``).

A service that would not move when asked (no runbook, another change open, a failing
pre-flight) and the services behind it are listed on the request as refused: approvers see
what stays. When none could move, the request is refused.

A region drill (``/dr drill evacuate REGION [REASON]``) is an evacuation request marked as
a drill (``scenario`` 'evacuate', ``Evacuation.direction`` 'drill'): approved the same way,
it never touches the status page, and each service runs as a drill of its scenario
'evacuate' when it has one (a staging estate writes what its drill does), else as its
failover only when every source that failover reads or acts on is a sandbox backend. A
service with neither is refused (a drill never fails production over), and so is what
depends on it. When it ends, its thread gets the drill report: total RTO, each service's
RTO and RPO, the critical path.
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import record
from bot.changes import Refused, after_commit, includes, may_approve
from bot.config.dependencies import dependents, waves
from bot.drill_calendar import SCHEDULER
from bot.evacuation_plan import EvacuationPlan, plan_evacuation
from bot.evacuation_policy import evacuation_policy, members_of, policy_of
from bot.evacuation_run import advance
from bot.oplog import op
from bot.permissions import require
from bot.policy import Policy
from bot.preflight import run_preflight
from bot.request_events import queue_break_glass, queue_message
from bot.run_facts import sources_of
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.drill_tables import DrillOccurrence
from bot.store.evacuation_tables import DRILL_SCENARIO, REGION_PREFIX, Evacuation, EvacuationMember
from bot.store.models import OPEN_STATES, ChangeRequest, RequestKind, RequestState, Run
from bot.store.transitions import move_request, move_run


def _refuse_if_open(s: Session, region: str) -> None:
    """One evacuation of a region at a time; a scheduled region drill waiting for its time
    never blocks a real one (it counts once it runs)."""
    waiting = col(ChangeRequest.not_before).is_not(None) & col(ChangeRequest.state).in_(
        [RequestState.PENDING, RequestState.APPROVED])
    other = s.exec(select(ChangeRequest).where(ChangeRequest.service == f"{REGION_PREFIX}{region}",
                                               col(ChangeRequest.kind).in_([RequestKind.EVACUATE, RequestKind.RETURN]),
                                               col(ChangeRequest.state).in_(OPEN_STATES), ~waiting)).first()
    if other is not None:
        raise Refused("evacuation_open", region=region, id=other.id, kind=other.kind.value, state=other.state.value)


# -- asking ------------------------------------------------------------------------------

def members_for_evacuation(plan: EvacuationPlan) -> list[EvacuationMember]:
    out = []
    for p in plan.services:
        note = ""
        if p.refusals:
            note = "; ".join(_refusal_words(r.code, r.params) for r in p.refusals)
        elif p.blocked_by:
            note = f"depends on {', '.join(p.blocked_by)}, which would not move"
        out.append(EvacuationMember(service=p.service, wave=p.wave, from_region=p.from_region, to_region=p.to_region,
                                    state="refused" if not p.ok else "pending", note=note,
                                    preflight=p.preflight.to_json() if p.preflight else ""))
    return out


def drillable(services: Services, service: str) -> bool:
    """A region drill may move ``service``: it has a drill scenario 'evacuate', or every
    source its failover reads or acts on is a sandbox backend (never a real failover)."""
    svc = services.config.service(service)
    if svc is None:
        return False
    if svc.runbooks.steps("drill", DRILL_SCENARIO):
        return True
    names = sources_of(svc, svc.runbooks.steps("failover"))
    return bool(names) and all(getattr(services.backends.get(n), "sandbox", False) for n in names)


def members_for_drill(services: Services, plan: EvacuationPlan) -> list[EvacuationMember]:
    """``members_for_evacuation``, where a service a drill may not move is refused, and so is
    every service that depends on it."""
    members = members_for_evacuation(plan)
    cannot = [m.service for m in members if m.state == "pending" and not drillable(services, m.service)]
    behind = {d: c for c in cannot for d in dependents(services.config, c)}
    for m in members:
        if m.state != "pending":
            continue
        if m.service in cannot:
            m.state, m.note = "refused", (f"no drill scenario '{DRILL_SCENARIO}' and its failover is not all "
                                          "sandbox: a drill never fails production over")
        elif m.service in behind:
            m.state, m.note = "refused", f"depends on {behind[m.service]}, which cannot be drilled"
    return members


def _refusal_words(code: str, params: dict) -> str:
    if code == "no_runbook":
        return "no failover runbook"
    if code == "change_open":
        return f"request #{params['id']} ({params['kind']}, {params['state']}) is open for it"
    if code == "preflight":
        return f"its pre-flight fails ({params['failures']} check{'s' if params['failures'] != 1 else ''})"
    return code


def members_for_return(services: Services, region: str) -> list[EvacuationMember]:
    """Services whose home is ``region`` and that run elsewhere, in reverse dependency order:
    what depends on others comes back first, the databases they depend on last."""
    config = services.config
    regions = services.status.regions()
    away = [n for n in config.service_names if config.service(n).active == region and regions[n][0] != region
            and n not in config.evacuation.exclude]
    with read_scope(services.engine) as s:
        busy = {r.service for r in s.exec(select(ChangeRequest).where(
            col(ChangeRequest.service).in_(away), col(ChangeRequest.state).in_(OPEN_STATES)))}
    ordered = list(reversed(waves(config, away)))
    out = []
    for number, wave in enumerate(ordered, start=1):
        for name in wave:
            svc = config.service(name)
            steps = svc.runbooks.steps("failback")
            note, pre = "", None
            if not steps:
                note = "no failback or failover runbook"
            elif name in busy:
                note = "another change is open for it"
            else:
                pre = run_preflight(services, svc, regions[name][0], region, steps)
                if not pre.ok:
                    note = f"its failback safety checks fail ({len(pre.failures)})"
            out.append(EvacuationMember(service=name, wave=number, from_region=regions[name][0], to_region=region,
                                        state="refused" if note else "pending", note=note,
                                        preflight=pre.to_json() if pre else ""))
    return out


def create(services: Services, actor: Actor, region: str, reason: str, direction: str = "evacuate",
           break_glass: bool = False, justification: str = "", not_before: datetime | None = None,
           occurrence: DrillOccurrence | None = None) -> ChangeRequest:
    """Check who asks, plan it (pre-flights read live), persist the request with its
    members and queue its message. ``not_before`` (a scheduled region drill): approved
    ahead, it starts at that time only if approved by then, else it expires.
    ``occurrence`` (a region drill on the calendar, ``bot.region_drills``): inserted first,
    in the same transaction (its unique key makes planning idempotent: IntegrityError when
    it exists); the request is posted by the occurrence's first announcement, and the
    scheduler (its requester when planned from ``evacuation.drills``) asks for two approvals."""
    config = services.config
    scheduler = actor is SCHEDULER
    if not_before is not None and not scheduler:  # scheduling a region drill changes the drill calendar
        require(services, actor, "drill_calendar")
    with read_scope(services.engine) as s:
        _refuse_if_open(s, region)
    if direction == "return":
        members = members_for_return(services, region)
    elif direction == "drill":
        members = members_for_drill(services, plan_evacuation(services, region))
    else:
        members = members_for_evacuation(plan_evacuation(services, region))
    if not any(m.state == "pending" for m in members):
        raise Refused("evacuation_empty", region=region, direction=direction,
                      refused=[f"{m.service}: {m.note}" for m in members])
    for position, m in enumerate(members):
        m.position = position
    policy = evacuation_policy(config, [m.service for m in members], region)
    _check_asker(services, actor, policy, break_glass, justification, region, scheduler)
    kind = RequestKind.RETURN if direction == "return" else RequestKind.EVACUATE
    now = services.clock()
    drill = direction == "drill"
    req = ChangeRequest(kind=kind, service=f"{REGION_PREFIX}{region}", from_region=region, to_region="",
                        scenario=DRILL_SCENARIO if drill else "", reason=reason, requester=actor.id,
                        requester_name=actor.name,
                        required_approvals=0 if break_glass else max(policy.required, 2) if scheduler
                        else policy.required,
                        break_glass=break_glass, justification=justification, created_at=now,
                        expires_at=not_before or now + policy.expires, not_before=not_before,
                        channel=(occurrence.channel if occurrence else actor.channel) or "", origin=actor.origin)
    with session_scope(services.engine) as s:
        _refuse_if_open(s, region)  # again, in the transaction (SQLite: serialised; PG: a race is rare)
        if occurrence is not None:  # first: a second tick, a restart or another replica stops here
            s.add(occurrence)
            s.flush()
            req.occurrence_id = occurrence.id
        s.add(req)
        s.flush()
        if occurrence is not None:
            occurrence.request_id = req.id
            record(s, actor, "drill.planned", target=req.service, request_id=req.id, service=req.service,
                   detail={"schedule": occurrence.schedule, "starts_at": not_before.isoformat() if not_before else None,
                           "occurrence": occurrence.id})
        s.add(Evacuation(request_id=req.id, region=region, direction=direction,
                         parallelism=config.evacuation.parallelism, on_failure=config.evacuation.on_failure))
        for m in members:
            m.evacuation_id = req.id
            s.add(m)
        moving = [m.service for m in members if m.state == "pending"]
        record(s, actor, f"request.{kind.value}", target=req.service, request_id=req.id, service=req.service,
               text=reason, detail={"reason": reason, "region": region, "services": moving, "drill": drill,
                                    "starts_at": not_before.isoformat() if not_before else None,
                                    "refused": {m.service: m.note for m in members if m.state == "refused"},
                                    "break_glass": break_glass, "justification": justification})
        if break_glass:
            move_request(s, req.id, [RequestState.PENDING], RequestState.APPROVED, decided_at=now)
            record(s, actor, "break_glass", target=req.service, request_id=req.id, service=req.service,
                   text=justification, detail={"zero_approvals": True})
        if occurrence is None:  # a drill on the calendar is posted by its first announcement
            queue_message(services, s, req)
        if break_glass:
            queue_break_glass(services, s, req)
    after_commit(services, req.id, approved=break_glass)
    services.metrics.created.labels(kind.value).inc()
    op("request.created", request_id=req.id, kind=kind.value, service=req.service, user=actor.id,
       services=len(moving), break_glass=break_glass or None)
    return req


def _check_asker(services: Services, actor: Actor, policy: Policy, break_glass: bool, justification: str,
                 region: str, scheduler: bool = False) -> None:
    """``scheduler``: the drill scheduler planning a region drill from the config is no person
    the policy's requesters could name."""
    name = f"{REGION_PREFIX}{region}"
    if policy.requesters and not scheduler and not includes(services, actor, policy.requesters):
        raise Refused("not_requester", service=name, requesters=list(policy.requesters))
    if not policy.approvers:
        raise Refused("evacuation_no_approvers", region=region)
    if break_glass:
        if not policy.break_glass.enabled:
            raise Refused("break_glass_off", service=name)
        if not includes(services, actor, tuple(policy.break_glass.group)):
            raise Refused("not_break_glass", service=name, group=list(policy.break_glass.group))
        if len(justification.split()) < 5:
            raise Refused("justification_short")


def _may_follow_up(services: Services, s: Session, actor: Actor, req: ChangeRequest) -> None:
    policy = policy_of(services.config, s, req)
    if actor.id != req.requester and not may_approve(services, policy, actor):
        raise Refused("not_approver", service=req.service, approvers=list(policy.approvers))


def _evacuation(s: Session, request_id: int, lock: bool = False) -> ChangeRequest:
    stmt = select(ChangeRequest).where(ChangeRequest.id == request_id)
    req = s.exec(stmt.with_for_update() if lock else stmt).first()
    if req is None or s.get(Evacuation, req.id) is None:  # an evacuation, a return, or the rollback of one
        raise Refused("no_evacuation", id=request_id)
    return req


def abort(services: Services, actor: Actor, request_id: int) -> None:
    """No wave that has not started starts; the services running finish (a running step is
    never cut). An interrupted evacuation is closed at once, its interrupted runs aborted."""
    with session_scope(services.engine) as s:
        req = _evacuation(s, request_id, lock=True)
        if req.state not in (RequestState.RUNNING, RequestState.INTERRUPTED):
            raise Refused("not_in_state", id=request_id, state=req.state.value, wanted="running or interrupted")
        _may_follow_up(services, s, actor, req)
        ev = s.get(Evacuation, req.id)
        who = actor.name or actor.id
        ev.aborted_by = who
        record(s, actor, "evacuation.abort", target=req.service, request_id=req.id, service=req.service)
        if req.state is RequestState.INTERRUPTED:
            now = services.clock()
            for m in members_of(s, req.id):
                if m.state == "interrupted" and m.child_id is not None:
                    move_request(s, m.child_id, [RequestState.INTERRUPTED], RequestState.ABORTED, closed_at=now,
                                 state_reason=f"aborted by {who} with evacuation #{req.id}")
                    for run in s.exec(select(Run).where(Run.request_id == m.child_id)):
                        move_run(s, run.id, [RequestState.INTERRUPTED], RequestState.ABORTED, ended_at=now)
                    m.state = "aborted"
            # back to running for one last decision: nothing runs, so it ends as aborted
            move_request(s, req.id, [RequestState.INTERRUPTED], RequestState.RUNNING)
    advance(services, request_id)


def request_resume(services: Services, actor: Actor, request_id: int) -> ChangeRequest:
    """Resume an interrupted evacuation: a new request, approved again under the
    evacuation's policy; once approved, the interrupted services continue from the step that
    did not finish and the waves go on. What succeeded never runs again."""
    with read_scope(services.engine) as s:
        req = _evacuation(s, request_id)
        if req.state is not RequestState.INTERRUPTED:
            raise Refused("not_in_state", id=request_id, state=req.state.value, wanted="interrupted")
        _may_follow_up(services, s, actor, req)
        open_one = s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == req.id,
                                                      ChangeRequest.kind == RequestKind.RESUME,
                                                      col(ChangeRequest.state).in_(OPEN_STATES))).first()
        if open_one is not None:
            raise Refused("followup_open", id=request_id, child=open_one.id)
        policy = policy_of(services.config, s, req)
    now = services.clock()
    channel = req.channel or actor.channel or ""
    resume = ChangeRequest(kind=RequestKind.RESUME, service=req.service, from_region=req.from_region, to_region="",
                           reason=f"resume evacuation #{req.id}", requester=actor.id, requester_name=actor.name,
                           required_approvals=policy.required, parent_id=req.id, created_at=now,
                           expires_at=now + policy.expires, channel=channel, origin=actor.origin)
    with session_scope(services.engine) as s:
        s.add(resume)
        s.flush()
        record(s, actor, "request.resume", target=req.service, request_id=resume.id, service=req.service,
               text=resume.reason, detail={"parent": req.id})
        queue_message(services, s, resume)
    after_commit(services, resume.id, approved=False)
    return resume


def request_rollback(services: Services, actor: Actor, request_id: int) -> ChangeRequest:
    """Roll back a failed or aborted evacuation: every service whose run changed something,
    undone through its steps' rollbacks, the newest wave first (what moved last is undone
    first). A new request, approved again under the evacuation's policy."""
    with read_scope(services.engine) as s:
        req = _evacuation(s, request_id)
        if req.state not in (RequestState.FAILED, RequestState.ABORTED):
            raise Refused("not_in_state", id=request_id, state=req.state.value, wanted="failed or aborted")
        _may_follow_up(services, s, actor, req)
        open_one = s.exec(select(ChangeRequest).where(ChangeRequest.parent_id == req.id,
                                                      ChangeRequest.service == req.service,
                                                      col(ChangeRequest.state).in_(OPEN_STATES))).first()
        if open_one is not None:
            raise Refused("followup_open", id=request_id, child=open_one.id)
        policy = policy_of(services.config, s, req)
        followed = set(s.exec(select(ChangeRequest.parent_id).where(  # a rollback of its own is open
            ChangeRequest.kind == RequestKind.ROLLBACK, col(ChangeRequest.state).in_(OPEN_STATES))))
        ran = [m for m in members_of(s, req.id) if m.child_id is not None and m.child_id not in followed
               and s.exec(select(Run.id).where(Run.request_id == m.child_id)).first() is not None]
        ev = s.get(Evacuation, req.id)
    if not ran:
        raise Refused("nothing_to_roll_back", id=request_id)
    last = max(m.wave for m in ran)
    ran.sort(key=lambda m: (-m.wave, -m.position))  # newest first
    now = services.clock()
    channel = req.channel or actor.channel or ""
    rollback = ChangeRequest(kind=RequestKind.ROLLBACK, service=req.service, from_region=req.from_region,
                             to_region="", reason=f"roll back evacuation #{req.id}", requester=actor.id,
                             requester_name=actor.name, required_approvals=policy.required, parent_id=req.id,
                             created_at=now, expires_at=now + policy.expires, channel=channel, origin=actor.origin)
    with session_scope(services.engine) as s:
        s.add(rollback)
        s.flush()
        s.add(Evacuation(request_id=rollback.id, region=ev.region, direction="rollback", parallelism=ev.parallelism,
                         on_failure=ev.on_failure))
        for position, m in enumerate(ran):
            s.add(EvacuationMember(evacuation_id=rollback.id, service=m.service, wave=last - m.wave + 1,
                                   position=position, from_region=m.from_region, to_region=m.to_region,
                                   undoes=m.child_id))
        record(s, actor, "request.rollback", target=req.service, request_id=rollback.id, service=req.service,
               text=rollback.reason, detail={"parent": req.id, "services": [m.service for m in ran]})
        queue_message(services, s, rollback)
    after_commit(services, rollback.id, approved=False)
    return rollback
