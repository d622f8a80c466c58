"""Approval as a combination of slots (``approvals.slots``), and severity-gated relaxations
(``approvals.relaxations``).

A request with slots is approved when every slot is filled by a distinct person other than
the requester (a person fills at most one slot: ``uq_approval_person``; a slot is filled
once: ``uq_approval_slot``). A click on Approve fills the first open slot the clicker
qualifies for: a member of the slot's ``from`` (users, user groups), or the person on call
now in its ``on_call`` schedule (``bot.oncall``; an unreadable pager leaves that slot open
and says why).

A relaxation (the first whose ``when`` holds at creation) lowers the approvals a request
needs; with slots, that many slots (any) must be filled. It is decided once, when the
request is created, and recorded in the audit log (``approval.relaxed``), which the
request's message reads to say so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.config.models import ApprovalSlot, Relaxation
from bot.durations import format_duration
from bot.oncall import OnCallUnknown, on_call
from bot.policy import Policy
from bot.services import Services
from bot.store.incident_tables import Incident, IncidentStatus, OpenIncidentService
from bot.store.models import Approval, TimelineEvent


@dataclass(frozen=True)
class SlotView:
    """One slot as the request's message shows it."""

    name: str
    members: tuple[str, ...]
    on_call: str | None
    filled_by: str = ""
    filled_name: str = ""
    on_call_now: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    problem: str = ""
    """Why an open on-call slot cannot be filled now (the pager cannot be read)."""


@dataclass(frozen=True)
class Pick:
    """The slot a click fills, or why none."""

    slot: str | None
    open: tuple[str, ...]
    problems: dict[str, str]


def _qualifies(services: Services, slot: ApprovalSlot, actor: Actor, includes) -> tuple[bool, str]:
    """(may fill, problem): members through the directory, on-call through the pager."""
    if slot.on_call is None:
        return includes(actor.id, tuple(slot.members)), ""
    try:
        return actor.id in on_call(services, slot.on_call).users, ""
    except OnCallUnknown as e:
        return False, str(e)


def filled(approvals: list[Approval]) -> dict[str, Approval]:
    return {a.slot: a for a in approvals if a.approve and a.slot}


def pick(services: Services, policy: Policy, actor: Actor, approvals: list[Approval], includes) -> Pick:
    """The first open slot ``actor`` qualifies for. ``includes(user, ids)``: the directory check."""
    taken = filled(approvals)
    open_ = [slot for slot in policy.slots if slot.name not in taken]
    problems: dict[str, str] = {}
    for slot in open_:
        ok, problem = _qualifies(services, slot, actor, includes)
        if ok:
            return Pick(slot.name, tuple(s.name for s in open_), problems)
        if problem:
            problems[slot.name] = problem
    return Pick(None, tuple(s.name for s in open_), problems)


def warm(services: Services, policy: Policy) -> None:
    """Read (or find cached) every on-call schedule of ``policy``'s slots; failures are left
    for the click to say."""
    for slot in policy.slots:
        if slot.on_call is not None:
            try:
                on_call(services, slot.on_call)
            except OnCallUnknown:
                pass


def qualifies_any(services: Services, policy: Policy, actor: Actor, includes) -> bool:
    """May ``actor`` decide at all (deny)? A member or the on-call of any slot."""
    return any(_qualifies(services, slot, actor, includes)[0] for slot in policy.slots)


def board(services: Services, policy: Policy, approvals: list[Approval], pending: bool) -> list[SlotView]:
    """Every slot, filled (by whom) or open (who could fill it; for on-call slots of a pending
    request, who is on call now or why that cannot be read)."""
    taken = filled(approvals)
    out = []
    for slot in policy.slots:
        view = SlotView(slot.name, tuple(slot.members), slot.on_call)
        a = taken.get(slot.name)
        if a is not None:
            view = SlotView(slot.name, tuple(slot.members), slot.on_call, a.approver, a.approver_name)
        elif slot.on_call is not None and pending:
            try:
                now = on_call(services, slot.on_call)
                view = SlotView(slot.name, (), slot.on_call, on_call_now=tuple(sorted(now.users)),
                                unknown=now.unknown)
            except OnCallUnknown as e:
                view = SlotView(slot.name, (), slot.on_call, problem=str(e))
        out.append(view)
    return out


# -- relaxations --------------------------------------------------------------------------

@dataclass(frozen=True)
class Relaxed:
    relaxation: Relaxation
    incident: Incident
    required: int
    why: str
    """In words: which incident, its severity, how long until its RTO runs out."""


def relaxation_for(services: Services, s: Session, policy: Policy, now: datetime) -> Relaxed | None:
    """The first relaxation of ``policy`` that holds now for its service, if any lowers the
    approvals needed."""
    if not policy.relaxations:
        return None
    claim = s.exec(select(OpenIncidentService).where(OpenIncidentService.service == policy.service)).first()
    inc = s.get(Incident, claim.incident_id) if claim is not None else None
    if inc is None or inc.status is IncidentStatus.RESOLVED:
        return None
    svc = services.config.service(policy.service)
    start = inc.detected_at or inc.opened_at
    if start.tzinfo is None:
        start = start.replace(tzinfo=now.tzinfo)
    left = start + svc.rto - now
    for r in policy.relaxations:
        if inc.severity not in r.when.severity:
            continue
        if r.when.rto_breach_within is not None and left > r.when.rto_breach_within:
            continue
        if r.required >= policy.required:
            return None
        rto = (f"its RTO of {format_duration(svc.rto)} runs out in {format_duration(left)}" if left.total_seconds() > 0
               else f"its RTO of {format_duration(svc.rto)} ran out {format_duration(-left)} ago")
        why = f"incident #{inc.id} is {inc.severity} and {rto}"
        return Relaxed(r, inc, r.required, why)
    return None


def relaxed_note(s: Session, request_id: int) -> dict | None:
    """What the request's timeline says about a relaxation applied to request ``request_id``
    (written with its audit entry, ``approval.relaxed``)."""
    entry = s.exec(select(TimelineEvent).where(TimelineEvent.request_id == request_id,
                                               TimelineEvent.kind == "approval.relaxed")
                   .order_by(col(TimelineEvent.id))).first()
    if entry is None:
        return None
    try:
        return json.loads(entry.data or "{}")
    except ValueError:
        return {}
