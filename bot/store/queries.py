"""Read-side queries the core needs, kept in one place."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bot.readiness import DrillInfo
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import EXCLUSIVE_KINDS, EXCLUSIVE_STATES, ChangeRequest, RequestKind, RequestState, Run, ServiceState

_FINISHED = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK, RequestState.ABORTED)


def current_regions(session: Session) -> dict[str, tuple[str, str]]:
    """Service -> (active, standby) for services whose regions drbot has changed."""
    return {s.service: (s.active_region, s.standby_region) for s in session.exec(select(ServiceState))}


def regions_now(session: Session, services: list) -> dict[str, tuple[str, str]]:
    """Service -> (active, standby) now: drbot's record, else as deployed (``services``: configs)."""
    moved = current_regions(session)
    return {svc.name: moved.get(svc.name, (svc.active, svc.standby)) for svc in services}


def latest_drills(session: Session, services: list[str] | None = None) -> dict[str, DrillInfo]:
    """Service -> its most recent finished drill. A check (a drill scenario of ``check``
    steps only, ``bot.drill_proof``) is no drill: it neither refreshes nor fails it."""
    stmt = (select(Run).where(Run.kind == RequestKind.DRILL, col(Run.state).in_(_FINISHED),
                              col(Run.ended_at).is_not(None), Run.proof != "check")
            .order_by(col(Run.ended_at).desc()))
    if services is not None:
        stmt = stmt.where(col(Run.service).in_(services))
    out: dict[str, DrillInfo] = {}
    for run in session.exec(stmt):
        if run.service not in out:
            out[run.service] = DrillInfo(ended_at=run.ended_at, passed=bool(run.passed),
                                         rto_s=run.measured_rto_s, rpo_s=run.measured_rpo_s,
                                         request_id=run.request_id, sandbox=run.sandbox,
                                         unproven=run.proof == "not_moved" and run.state is RequestState.SUCCEEDED)
    return out


def latest_missed_drills(session: Session, services: list[str] | None = None) -> dict[str, datetime]:
    """Service -> start time of its most recent scheduled drill that was missed."""
    stmt = (select(DrillOccurrence).where(DrillOccurrence.state == OccurrenceState.MISSED)
            .order_by(col(DrillOccurrence.starts_at).desc()))
    if services is not None:
        stmt = stmt.where(col(DrillOccurrence.service).in_(services))
    out: dict = {}
    for occ in session.exec(stmt):
        out.setdefault(occ.service, occ.starts_at)
    return out


def open_changes(session: Session, services: list[str]) -> dict[str, ChangeRequest]:
    """Service -> its oldest open failover, failback, drill, rollback or resume (pending,
    approved, running or interrupted): what a new change of that service waits behind."""
    stmt = (select(ChangeRequest).where(col(ChangeRequest.service).in_(services),
                                        col(ChangeRequest.state).in_(EXCLUSIVE_STATES),
                                        col(ChangeRequest.kind).in_(EXCLUSIVE_KINDS + (RequestKind.ROLLBACK,
                                                                                       RequestKind.RESUME)))
            .order_by(col(ChangeRequest.id)))
    out: dict[str, ChangeRequest] = {}
    for req in session.exec(stmt):
        out.setdefault(req.service, req)
    return out


def measured_rtos(session: Session, services: list[str], last: int = 5) -> dict[str, list[float]]:
    """Service -> measured RTOs (seconds) of its newest passed drills and successful
    failovers, newest first, at most ``last`` each: what a move of it took before."""
    stmt = (select(Run.service, Run.measured_rto_s).where(
        col(Run.service).in_(services), col(Run.measured_rto_s).is_not(None),
        ((Run.kind == RequestKind.DRILL) & (Run.passed == True))  # noqa: E712
        | ((Run.kind == RequestKind.FAILOVER) & (Run.state == RequestState.SUCCEEDED)))
        .order_by(col(Run.ended_at).desc()))
    out: dict[str, list[float]] = {}
    for service, rto in session.exec(stmt):
        seen = out.setdefault(service, [])
        if len(seen) < last:
            seen.append(rto)
    return out
