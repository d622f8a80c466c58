"""The approval policy of a region evacuation (and of its resume, rollback and return).

``evacuation.approvals``, when set, over the global policy. Otherwise the strictest policy
among the services it moves, so that one evacuation can never be approved more easily
than its services one by one:

- required approvals: the largest any of them needs;
- approvers: only those named (user or user group) by every service (the intersection;
  empty means nobody may approve: set ``evacuation.approvals``);
- requesters: when several services restrict who may ask, only those named by all of them;
- expiry: the shortest;
- break-glass: only when every service allows it, for the groups named by all of them.
"""
from __future__ import annotations

from sqlmodel import Session, select

from bot.config import Config
from bot.config.models import BreakGlass
from bot.policy import Policy, policy_for
from bot.plans import CALENDAR_KINDS
from bot.store.drill_tables import DrillOccurrence
from bot.store.evacuation_tables import REGION_PREFIX, EvacuationMember
from bot.store.models import ChangeRequest


def is_evacuation(req: ChangeRequest) -> bool:
    """An evacuation's own request, or the resume, rollback or return of one (not a child,
    nor the skip or postponement of a region drill on the calendar)."""
    return req.service.startswith(REGION_PREFIX) and req.kind not in CALENDAR_KINDS


def evacuation_policy(config: Config, services: list[str], region: str) -> Policy:
    name = f"{REGION_PREFIX}{region}"
    over = config.evacuation.approvals
    if over is not None:
        base = config.approvals

        def pick(field):
            value = getattr(over, field, None)
            return getattr(base, field) if value is None else value

        return Policy(service=name, required=pick("required_approvals"), approvers=tuple(pick("approvers")),
                      requesters=tuple(pick("requesters")), expires=pick("expires"),
                      break_glass=pick("break_glass"), allow_parallel=False)
    policies = [policy_for(config, s) for s in services if config.service(s) is not None]
    if not policies:  # nothing to move: the global policy (the request is refused anyway)
        a = config.approvals
        return Policy(service=name, required=a.required_approvals, approvers=tuple(a.approvers),
                      requesters=tuple(a.requesters), expires=a.expires, break_glass=a.break_glass,
                      allow_parallel=False)
    approvers = _common([p.approvers for p in policies])
    restricted = [p.requesters for p in policies if p.requesters]
    requesters = _common(restricted) if restricted else ()
    if restricted and not requesters:
        requesters = ("nobody",)  # they restrict to disjoint people: no one may ask for all at once
    glass_all = all(p.break_glass.enabled for p in policies)
    glass = BreakGlass(enabled=glass_all, group=list(_common([tuple(p.break_glass.group) for p in policies]))
                       if glass_all else [])
    return Policy(service=name, required=max(p.required for p in policies), approvers=approvers,
                  requesters=requesters, expires=min(p.expires for p in policies), break_glass=glass,
                  allow_parallel=False)


def _common(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The IDs every list names, in the first list's order."""
    first, rest = lists[0], [set(x) for x in lists[1:]]
    return tuple(i for i in first if all(i in r for r in rest))


def root_of(s: Session, req: ChangeRequest) -> ChangeRequest:
    """The evacuation request ``req`` belongs to (itself, or the one it resumes or rolls back)."""
    while req.parent_id is not None and is_evacuation(req):
        parent = s.get(ChangeRequest, req.parent_id)
        if parent is None or not is_evacuation(parent):
            break
        req = parent
    return req


def members_of(s: Session, evacuation_id: int) -> list[EvacuationMember]:
    return list(s.exec(select(EvacuationMember).where(EvacuationMember.evacuation_id == evacuation_id)
                       .order_by(EvacuationMember.position)))


def policy_of(config: Config, s: Session, req: ChangeRequest) -> Policy:
    """The policy that decides ``req``: its service's, or for an evacuation (and its
    follow-ups), the evacuation's over the services it moves; for the skip or postponement
    of a region drill, that drill's."""
    if req.kind in CALENDAR_KINDS and req.service.startswith(REGION_PREFIX):
        return occurrence_policy(config, s, req.occurrence_id)
    if not is_evacuation(req):
        return policy_for(config, req.service)
    root = root_of(s, req)
    return evacuation_policy(config, [m.service for m in members_of(s, root.id)], req.from_region)


def occurrence_policy(config: Config, s: Session, occurrence_id: int) -> Policy:
    """The policy of a drill on the calendar (its request's): what a change of the calendar
    (skip, postpone) of that drill is decided by, a service's or a region's."""
    occ = s.get(DrillOccurrence, occurrence_id)
    drill = s.get(ChangeRequest, occ.request_id) if occ is not None and occ.request_id is not None else None
    if drill is None:
        raise KeyError(f"drill occurrence {occurrence_id}")
    return policy_of(config, s, drill)
