"""Change requests (failover, failback, drill, rollback, resume) and their approvals.

Nothing changes in production until enough distinct, authorised people other than the
requester have approved, before the request expires. Every decision runs in one
transaction that locks the request row (PostgreSQL) or the database (SQLite), and the
state change itself is conditional, so two clicks can never both start a run. The
request's message is queued in the outbox in the same transaction; the run is started by
the runner (``services.runner.poke(request_id)``), never here.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from bot import approval_slots, drill_calendar
from bot.actor import Actor
from bot.audit import SYSTEM, record
from bot.directory import DirectoryError
from bot.events import ApprovalRelaxed
from bot.evacuation_policy import occurrence_policy, policy_of
from bot.metrics import decision_outcome
from bot.oplog import op
from bot.outbox.queue import enqueue
from bot.plans import CALENDAR_KINDS
from bot.policy import Policy, policy_for
from bot.preflight import run_preflight
from bot.render import Reply
from bot.request_events import queue_break_glass, queue_message
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.db import insert_for
from bot.store.models import EXCLUSIVE_KINDS, EXCLUSIVE_STATES, Approval, ChangeRequest, RequestKind, RequestState
from bot.store.transitions import move_request

log = logging.getLogger(__name__)
SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")


class Refused(Exception):
    """A request or a click that is not allowed; ``code`` and ``params`` pick the sentence
    in templates/_refusals.j2."""

    def __init__(self, code: str, **params: Any):
        super().__init__(code)
        self.code = code
        self.params = params

    def reply(self) -> Reply:
        return Reply("refused", {"code": self.code, "p": self.params})


@dataclass
class Decision:
    """The outcome of a click: what the clicker is told, and whether it changed anything."""

    request_id: int
    reply: Reply | None = None
    changed: bool = False
    approved: bool = False
    service: str = ""


def load(session: Session, request_id: int, lock: bool = False) -> ChangeRequest:
    stmt = select(ChangeRequest).where(ChangeRequest.id == request_id)
    if lock:
        stmt = stmt.with_for_update()
    req = session.exec(stmt).first()
    if req is None:
        raise Refused("no_request", id=request_id)
    return req


def may_approve(services: Services, policy: Policy, actor: Actor) -> bool:
    """An approver, or (with ``approvals.slots``) someone who may fill one of its slots."""
    try:
        if policy.slots:
            return approval_slots.qualifies_any(services, policy, actor, services.directory.includes)
        return services.directory.includes(actor.id, policy.approvers)
    except DirectoryError as e:
        raise Refused("directory_error", error=str(e)) from e


# -- creating ---------------------------------------------------------------------------

def create(services: Services, actor: Actor, kind: RequestKind, service: str, from_region: str, to_region: str,
           steps: list, reason: str, scenario: str = "", parent_id: int | None = None,
           break_glass: bool = False, justification: str = "", occurrence_id: int | None = None,
           postpone_to: datetime | None = None, allow_data_loss: bool = False) -> ChangeRequest:
    """Check who asks, run the pre-flight, persist the request and queue its message.
    ``allow_data_loss``: the requester accepts moving to a database that does not replicate
    from the writer (audited as ``request.allow_data_loss``)."""
    policy = _policy(services, kind, service, occurrence_id)
    if policy.requesters and not includes(services, actor, policy.requesters):
        raise Refused("not_requester", service=service, requesters=list(policy.requesters))
    if break_glass:
        bg = policy.break_glass
        if not bg.enabled:
            raise Refused("break_glass_off", service=service)
        if not includes(services, actor, tuple(bg.group)):
            raise Refused("not_break_glass", service=service, group=list(bg.group))
        if len(justification.split()) < 5:
            raise Refused("justification_short")
    exclusive = kind in EXCLUSIVE_KINDS and not policy.allow_parallel
    if exclusive:  # cheap, before the pre-flight; the unique index below settles a race
        with read_scope(services.engine) as s:
            _refuse_if_open(s, service)
    svc = services.config.service(service)
    # a resume continues its parent's interrupted run: that run must not block its own pre-flight
    resuming = kind is RequestKind.RESUME
    calendar_change = kind in CALENDAR_KINDS  # skipping or moving a drill changes nothing in the estate
    preflight = None if calendar_change else run_preflight(services, svc, from_region, to_region, steps,
                                                           exclude_request=parent_id if resuming else None,
                                                           resuming=resuming, allow_data_loss=allow_data_loss)
    now = services.clock()
    req = ChangeRequest(kind=kind, service=service, from_region=from_region, to_region=to_region,
                        scenario=scenario, reason=reason, requester=actor.id, requester_name=actor.name,
                        required_approvals=0 if break_glass else policy.required,
                        break_glass=break_glass, justification=justification, parent_id=parent_id,
                        created_at=now, expires_at=now + policy.expires,
                        preflight=preflight.to_json() if preflight else "", occurrence_id=occurrence_id,
                        postpone_to=postpone_to, channel=actor.channel or "", origin=actor.origin,
                        parallel=kind in EXCLUSIVE_KINDS and not exclusive, allow_data_loss=allow_data_loss)
    with session_scope(services.engine) as s:
        try:
            with s.begin_nested():
                s.add(req)
                s.flush()
        except IntegrityError:  # uq_change_request_one_open: another request of the service won the race
            _refuse_if_open(s, service)
            raise
        record(s, actor, f"request.{kind.value}", target=service, request_id=req.id, service=service,
               text=reason, detail={"reason": reason, "from": from_region, "to": to_region, "scenario": scenario,
                                    "preflight_ok": preflight.ok if preflight else None, "break_glass": break_glass,
                                    "justification": justification, "parent": parent_id})
        if allow_data_loss:
            record(s, actor, "request.allow_data_loss", target=service, request_id=req.id, service=service,
                   text=reason, detail={"checks": [c.code for c in preflight.checks if c.params.get("overridden")]
                                        if preflight else []})
        if not break_glass:
            _relax(services, s, req, policy, now)
        if break_glass:
            move_request(s, req.id, [RequestState.PENDING], RequestState.APPROVED, decided_at=now)
            record(s, actor, "break_glass", target=service, request_id=req.id, service=service,
                   text=justification, detail={"zero_approvals": True})
        queue_message(services, s, req)
        if break_glass:
            queue_break_glass(services, s, req)
    after_commit(services, req.id, approved=break_glass)
    services.metrics.created.labels(kind.value).inc()
    op("request.created", request_id=req.id, kind=kind.value, service=service, user=actor.id,
       break_glass=break_glass or None, not_before=postpone_to)
    return req


def _policy(services: Services, kind: RequestKind, service: str, occurrence_id: int | None) -> Policy:
    """A change of the drill calendar is decided by the drill's own policy (a region drill's:
    the evacuation's); any other change by its service's."""
    if kind in CALENDAR_KINDS and occurrence_id is not None:
        with read_scope(services.engine) as s:
            return occurrence_policy(services.config, s, occurrence_id)
    return policy_for(services.config, service)


def _relax(services: Services, s: Session, req: ChangeRequest, policy: Policy, now: datetime) -> None:
    """Apply the first severity-gated relaxation that holds now: fewer approvals, recorded on
    the request's and the incident's timeline and announced in the incident channel."""
    relaxed = approval_slots.relaxation_for(services, s, policy, now)
    if relaxed is None:
        return
    req.required_approvals = relaxed.required
    s.add(req)
    s.flush()
    record(s, SYSTEM, "approval.relaxed", target=req.service, request_id=req.id, incident_id=relaxed.incident.id,
           service=req.service, text=relaxed.why,
           detail={"required": relaxed.required, "normally": policy.required, "why": relaxed.why,
                   "incident": relaxed.incident.id, "severity": relaxed.incident.severity})
    enqueue(s, ApprovalRelaxed(incident_id=relaxed.incident.id, request_id=req.id), now)


def _refuse_if_open(s: Session, service: str) -> None:
    """Refused naming the open change of ``service``: one failover, failback or drill at a
    time, including a rollback or resume continuing one (a scheduled drill counts once it runs)."""
    waiting_for_its_time = col(ChangeRequest.not_before).is_not(None) & col(ChangeRequest.state).in_(
        [RequestState.PENDING, RequestState.APPROVED])
    other = s.exec(select(ChangeRequest).where(
        ChangeRequest.service == service, col(ChangeRequest.state).in_(EXCLUSIVE_STATES),
        col(ChangeRequest.kind).in_(EXCLUSIVE_KINDS + (RequestKind.ROLLBACK, RequestKind.RESUME)),
        ~waiting_for_its_time).order_by(col(ChangeRequest.id))).first()
    if other is not None:
        raise Refused("change_open", service=service, id=other.id, kind=other.kind.value, state=other.state.value,
                      requester=other.requester, channel=other.channel if SLACK_CHANNEL.match(other.channel) else "")


def includes(services: Services, actor: Actor, ids: tuple[str, ...]) -> bool:
    """``actor`` is listed in ``ids`` (directly or through a user group); Refused when a
    group cannot be read."""
    try:
        return services.directory.includes(actor.id, ids)
    except DirectoryError as e:
        raise Refused("directory_error", error=str(e)) from e


def after_commit(services: Services, request_id: int, approved: bool) -> None:
    """After the commit: deliver the queued messages, and let the runner start the request
    if it is due (what else is due, its periodic sweep starts)."""
    if services.outbox is not None:
        services.outbox.poke()
    if approved and services.runner is not None:
        services.runner.poke(request_id)


# -- deciding ---------------------------------------------------------------------------

def decide(services: Services, actor: Actor, request_id: int, verb: str) -> Decision:
    """Approve, deny or cancel. Returns what to tell the clicker. Each person decides once
    (approve or deny); the requester may cancel until the run starts."""
    decision = Decision(request_id)
    if verb != "cancel":
        _read_on_call(services, request_id)
    try:
        with session_scope(services.engine) as s:
            req = load(s, request_id, lock=True)
            decision.service = req.service
            now = services.clock()
            _check_open(s, req, now, decision, verb)
            if decision.reply is None:
                try:
                    _apply(services, s, req, actor, verb, now, decision)
                except Refused as r:  # commit the refusal's audit entry; _apply changed nothing else
                    decision.reply = r.reply()
            if decision.changed:  # the event names the request: its delivery reads the state then
                queue_message(services, s, req)
    except Refused as r:
        decision.reply = r.reply()
    if decision.changed:
        after_commit(services, request_id, approved=decision.approved)
    outcome = decision_outcome(verb, decision)
    services.metrics.decision(verb, outcome)
    op(f"request.{verb}", request_id=request_id, service=decision.service or None, user=actor.id, outcome=outcome)
    return decision


def _read_on_call(services: Services, request_id: int) -> None:
    """Read the pager's schedules of the request's on-call slots into the cache before the
    request row is locked, so the click's transaction seldom waits on a pager."""
    with read_scope(services.engine) as s:
        req = s.get(ChangeRequest, request_id)
        try:  # the policy _apply decides with (an evacuation's over its services)
            policy = policy_of(services.config, s, req) if req is not None else None
        except KeyError:  # a service no longer in the config: nothing to read
            policy = None
    if policy is not None:
        approval_slots.warm(services, policy)


def _check_open(s: Session, req: ChangeRequest, now: datetime, decision: Decision, verb: str) -> None:
    if verb == "cancel" and req.state is RequestState.APPROVED:
        return  # approved, its run not started (no worker free, drbot restarting, a drill's time): withdrawable
    if req.state is not RequestState.PENDING:
        started = req.state in (RequestState.RUNNING, RequestState.INTERRUPTED)
        code = "not_cancellable" if verb == "cancel" and started else "not_pending"
        decision.reply = Refused(code, id=req.id, state=req.state.value, reason=req.state_reason).reply()
        return
    if now >= req.expires_at:
        if move_request(s, req.id, [RequestState.PENDING], RequestState.EXPIRED, closed_at=now,
                        state_reason="expired before enough approvals"):
            record(s, SYSTEM, "request.expired", target=req.service, request_id=req.id, service=req.service)
            decision.changed = True
        decision.reply = Refused("expired", id=req.id, at=req.expires_at).reply()


def _apply(services: Services, s: Session, req: ChangeRequest, actor: Actor, verb: str, now: datetime,
           decision: Decision) -> None:
    where = {"request_id": req.id, "service": req.service, "target": req.service}
    if verb == "cancel":
        if actor.id != req.requester:
            raise Refused("cancel_not_requester", id=req.id, requester=req.requester)
        # the runner claims APPROVED -> RUNNING with a conditional update too: one of the two wins
        if not move_request(s, req.id, [RequestState.PENDING, RequestState.APPROVED], RequestState.CANCELLED,
                            closed_at=now, state_reason=f"cancelled by {actor.name or actor.id}"):
            raise Refused("not_cancellable", id=req.id, state="running", reason="")
        record(s, actor, "request.cancelled", detail={"was": req.state.value}, **where)
        decision.changed = True
        return
    if actor.id == req.requester:
        raise Refused("own_request", id=req.id)
    policy = policy_of(services.config, s, req)  # an evacuation: bot.evacuation_policy
    slot = ""
    if policy.slots:
        slot = _slot_for(services, s, req, policy, actor, verb, where)
    elif not may_approve(services, policy, actor):
        record(s, actor, "approval.refused", detail={"why": "not an approver"}, **where)
        raise Refused("not_approver", service=req.service, approvers=list(policy.approvers))
    _decide_once(s, req, actor, verb == "approve", now, slot)
    if verb == "deny":
        move_request(s, req.id, [RequestState.PENDING], RequestState.DENIED, decided_at=now, closed_at=now,
                     state_reason=f"denied by {actor.name or actor.id}")
        record(s, actor, "request.denied", **where)
        decision.changed = True
        return
    count = s.exec(select(func.count()).select_from(Approval).where(
        Approval.request_id == req.id, col(Approval.approve).is_(True))).one()
    record(s, actor, "request.approved", detail={"count": count, "required": req.required_approvals,
                                                 **({"slot": slot} if slot else {})}, **where)
    decision.changed = True
    if count >= req.required_approvals and move_request(
            s, req.id, [RequestState.PENDING], RequestState.APPROVED, decided_at=now):
        decision.approved = True
        if req.kind in CALENDAR_KINDS:  # decided here, without the runbook engine
            what = drill_calendar.apply(services, s, req, now)
            move_request(s, req.id, [RequestState.APPROVED], RequestState.SUCCEEDED, closed_at=now,
                         state_reason=what)


def _slot_for(services: Services, s: Session, req: ChangeRequest, policy: Policy, actor: Actor, verb: str,
              where: dict) -> str:
    """The slot this click fills (approve), or "" (deny: anyone who may fill a slot may deny).
    Refused naming the open slots, and why an on-call slot cannot be filled, otherwise."""
    def listed(user: str, ids: tuple[str, ...]) -> bool:
        return includes(services, actor, ids)

    if verb == "deny":
        if not approval_slots.qualifies_any(services, policy, actor, listed):
            record(s, actor, "approval.refused", detail={"why": "fills no slot"}, **where)
            raise Refused("no_slot", id=req.id, service=req.service, slots=[x.name for x in policy.slots])
        return ""
    decided = s.exec(select(Approval).where(Approval.request_id == req.id)
                     .execution_options(populate_existing=True)).all()
    if any(a.approver == actor.id for a in decided):
        return ""  # _decide_once says what this person decided before
    picked = approval_slots.pick(services, policy, actor, list(decided), listed)
    if picked.slot is None:
        record(s, actor, "approval.refused", detail={"why": "no open slot", "open": list(picked.open),
                                                     "problems": picked.problems}, **where)
        raise Refused("no_open_slot", id=req.id, open=list(picked.open), problems=picked.problems)
    return picked.slot


def _decide_once(s: Session, req: ChangeRequest, actor: Actor, approve: bool, now: datetime, slot: str = "") -> None:
    """Store this person's one decision (unique request_id, approver), or refuse: a second
    click, the other button after the first, or both at once on two replicas. ``slot``: the
    approval slot it fills (unique per request: ``uq_approval_slot``)."""
    stored = s.execute(insert_for(s, Approval).values(
        request_id=req.id, approver=actor.id, approver_name=actor.name, approve=approve, at=now, slot=slot)
        .on_conflict_do_nothing().returning(Approval.id)).first()
    if stored is not None:
        return
    # this person decided before (or at the same moment, elsewhere): uq_approval_person kept one
    mine = s.exec(select(Approval).where(Approval.request_id == req.id, Approval.approver == actor.id)
                  .execution_options(populate_existing=True)).first()
    if mine is None:  # uq_approval_slot: someone else filled this slot at the same moment
        raise Refused("slot_taken", id=req.id, slot=slot)
    if mine.approve and approve:
        raise Refused("already_approved", id=req.id)
    raise Refused("already_decided", id=req.id, how="approved" if mine.approve else "denied",
                  wanted="approve" if approve else "deny")


# -- expiry -----------------------------------------------------------------------------

def expire_due(services: Services) -> list[int]:
    """Move pending requests past their expiry to expired; returns their IDs."""
    now = services.clock()
    expired = []
    with session_scope(services.engine) as s:
        due = s.exec(select(ChangeRequest).where(ChangeRequest.state == RequestState.PENDING,
                                                 ChangeRequest.expires_at <= now)).all()
        for req in due:
            if move_request(s, req.id, [RequestState.PENDING], RequestState.EXPIRED, closed_at=now,
                            state_reason="expired before enough approvals"):
                record(s, SYSTEM, "request.expired", target=req.service, request_id=req.id, service=req.service)
                queue_message(services, s, req)
                expired.append(req.id)
    if expired and services.outbox is not None:
        services.outbox.poke()
    return expired
