"""What a change request's message shows: its state, approvals, pre-flight, planned steps
and, once it runs, each step's latest attempt. Read in one session, rendered by the outbox
handlers (the message, the progress, the drill report) and by commands."""
from __future__ import annotations

import json
import logging
from typing import Any

from sqlmodel import Session, col, select

from bot.approval_slots import board, relaxed_note
from bot.drill_schedules import region_of, schedule_for
from bot.evacuation_policy import is_evacuation, policy_of
from bot.evacuation_view import evacuation_context
from bot.plans import Planned, steps_for
from bot.preflight import Preflight
from bot.render import Reply
from bot.services import Services
from bot.store import read_scope
from bot.store.drill_tables import DrillOccurrence
from bot.store.models import OPEN_STATES, Approval, ChangeRequest, RequestKind, RequestState, Run, RunStep

log = logging.getLogger(__name__)


def approvals_of(session: Session, request_id: int) -> list[Approval]:
    return list(session.exec(select(Approval).where(Approval.request_id == request_id).order_by(col(Approval.at))))


def step_lines(planned: list[Planned], rows: list[RunStep]) -> list[dict[str, Any]]:
    """One line per planned step with its latest attempt: state, duration, error, summary."""
    latest = {(r.position, r.rollback): r for r in rows}  # rows are ordered by attempt
    out = []
    for p in planned:
        row = latest.get((p.position, p.rollback))
        line = {"name": p.step.name, "action": p.step.action, "region": p.region, "state": "pending",
                "seconds": None, "error": "", "summary": "", "attempt": 1}
        if row is not None:
            line |= {"state": row.state.value, "error": row.error, "attempt": row.attempt,
                     "seconds": (row.ended_at - row.started_at).total_seconds() if row.ended_at else None,
                     "summary": _summary(row.output)}
        out.append(line)
    return out


def _summary(output: str) -> str:
    try:
        return json.loads(output or "{}").get("summary", "")
    except ValueError:
        return ""


def _planned(services: Services, s: Session, req: ChangeRequest) -> list[Planned]:
    try:
        return steps_for(services, s, req)
    except Exception:  # the message must still render; the cause must still be seen
        log.exception("could not plan the steps of request %s", req.id)
        return []


def context(services: Services, s: Session, req: ChangeRequest) -> dict[str, Any]:
    """The template context of the request's message, its progress and its report."""
    svc = services.config.service(req.service)
    run = s.exec(select(Run).where(Run.request_id == req.id)).first()
    steps = list(s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(
        col(RunStep.position), col(RunStep.attempt)))) if run else []
    planned = _planned(services, s, req)
    approvals, policy = approvals_of(s, req.id), policy_of(services.config, s, req)
    ctx = {"req": req, "approvals": approvals, "preflight": Preflight.from_json(req.preflight),
           "policy": policy, "svc": svc, "run": run, "steps": steps,
           "planned": planned, "lines": step_lines(planned, steps), "now": services.clock(),
           "command": services.command, "relaxed": relaxed_note(s, req.id), "region": region_of(req.service),
           "slots": board(services, policy, approvals, req.state is RequestState.PENDING) if policy.slots else []}
    if req.occurrence_id is not None:
        occ = s.get(DrillOccurrence, req.occurrence_id)
        ctx |= {"occ": occ, "schedule": schedule_for(services.config, occ.service, occ.schedule) if occ else None}
    return ctx


def template(req: ChangeRequest) -> str:
    if req.occurrence_id is not None and req.kind is RequestKind.DRILL:
        return "drill_announcement"
    return "change_request"


def message(services: Services, s: Session, request_id: int) -> Reply:
    req = s.get(ChangeRequest, request_id)
    if is_evacuation(req):  # a region evacuation (or its resume): one request for many services
        return Reply("evacuation_request", evacuation_context(services, s, req), ephemeral=False)
    return Reply(template(req), context(services, s, req), ephemeral=False)


def listing(services: Services, recent: int = 10) -> dict[str, list[ChangeRequest]]:
    """Open requests, newest first, and the ``recent`` newest closed ones."""
    with read_scope(services.engine) as s:
        return _listing(s, recent)


def _listing(s: Session, recent: int) -> dict[str, list[ChangeRequest]]:
    open_ = s.exec(select(ChangeRequest).where(col(ChangeRequest.state).in_(OPEN_STATES))
                   .order_by(col(ChangeRequest.id).desc())).all()
    closed = s.exec(select(ChangeRequest).where(col(ChangeRequest.state).not_in(OPEN_STATES))
                    .order_by(col(ChangeRequest.id).desc()).limit(recent)).all()
    return {"open": list(open_), "recent": list(closed)}
