"""A region evacuation in the evidence pack (``bot.evidence``): one record for the
evacuation (its request, approvals and timeline like any request), with its services'
runs as children: per service its wave, what became of it and the request of its own run
(each child is a record of its own, with its steps and measurements); the evacuation's
start, end and critical path. A child's record names the evacuation it was part of.

Times are handed back as datetimes; ``bot.evidence`` writes them (it owns the format)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.store.evacuation_tables import DRILL_SCENARIO, Evacuation, EvacuationMember
from bot.store.models import ChangeRequest, RequestKind, Run, aware

EVACUATION_KINDS = (RequestKind.EVACUATE, RequestKind.RETURN)
"""Request kinds that are an evacuation of their own (a rollback of one is a ROLLBACK)."""


def evacuation_of(s: Session, req: ChangeRequest) -> dict[str, Any] | None:
    """The evacuation part of ``req``'s record (None: not an evacuation or its rollback)."""
    ev = s.get(Evacuation, req.id)
    if ev is None:
        return None
    members = list(s.exec(select(EvacuationMember).where(EvacuationMember.evacuation_id == req.id)
                          .order_by(col(EvacuationMember.position))))
    ids = [m.child_id for m in members if m.child_id is not None]
    children = {c.id: c for c in s.exec(select(ChangeRequest).where(col(ChangeRequest.id).in_(ids)))} if ids else {}
    runs = {r.request_id: r for r in s.exec(select(Run).where(col(Run.request_id).in_(ids)))} if ids else {}
    services = []
    for m in members:
        child, run = children.get(m.child_id), runs.get(m.child_id)
        seconds = (aware(run.ended_at) - aware(run.started_at)).total_seconds() if run and run.ended_at else None
        services.append({
            "service": m.service, "wave": m.wave, "state": m.state, "note": m.note,
            "from_region": m.from_region, "to_region": m.to_region, "request_id": m.child_id,
            "kind": child.kind.value if child else None, "run_state": run.state.value if run else None,
            "run_seconds": seconds, "measured_rto_s": run.measured_rto_s if run else None,
            "measured_rpo_s": run.measured_rpo_s if run else None, "passed": run.passed if run else None,
            "sandbox": run.sandbox if run else None, "verified_at": run.verified_at if run else None})
    critical = []
    for wave in sorted({x["wave"] for x in services}):
        timed = [x for x in services if x["wave"] == wave and x["run_seconds"] is not None]
        if timed:
            slowest = max(timed, key=lambda x: x["run_seconds"])
            critical.append({"wave": wave, "service": slowest["service"], "seconds": slowest["run_seconds"]})
    started, ended = ev.started_at, ev.ended_at
    return {
        "region": ev.region, "direction": ev.direction, "drill": req.scenario == DRILL_SCENARIO,
        "parallelism": ev.parallelism, "on_failure": ev.on_failure, "aborted_by": ev.aborted_by or None,
        "started_at": started, "ended_at": ended,
        "total_s": (aware(ended) - aware(started)).total_seconds() if started and ended else None,
        "waves": len({x["wave"] for x in services if x["state"] != "refused"}),
        "services": services, "critical_path": critical,
        "critical_s": sum(x["seconds"] for x in critical) if critical else None,
    }


def part_of(s: Session, req: ChangeRequest) -> dict[str, Any] | None:
    """The evacuation a service's request was part of: its id and the service's wave."""
    if req.parent_id is None:
        return None
    m = s.exec(select(EvacuationMember).where(EvacuationMember.child_id == req.id)).first()
    return None if m is None else {"id": m.evacuation_id, "wave": m.wave}


def times(part: dict[str, Any], iso) -> dict[str, Any]:
    """``part`` with its datetimes written by ``iso``."""
    def one(v):
        return iso(v) if isinstance(v, datetime) else v
    return {k: ([{kk: one(vv) for kk, vv in x.items()} for x in v] if k == "services" else one(v))
            for k, v in part.items()}
