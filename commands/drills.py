"""``/dr drills [history [SERVICE]]``: the upcoming drills with their next times in the
reader's terms, or the past drills with their results."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from bot import drills
from bot.render import Reply
from bot.store import session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.models import RequestKind, Run
from commands.base import Invocation, UsageError, pick_service

NAME = "drills"
HORIZON = timedelta(days=62)


def run(inv: Invocation) -> Reply:
    words = list(inv.args)
    if words and words[0] == "history":
        service = pick_service(inv, words[1], NAME) if len(words) > 1 else None
        return _history(inv, service)
    if words:
        raise UsageError(f"unexpected words: {' '.join(words)} (`drills` or `drills history [SERVICE]`)", NAME)
    sv = inv.services
    now = sv.clock()
    upcoming = []
    with session_scope(sv.engine) as s:
        planned = s.exec(select(DrillOccurrence).where(DrillOccurrence.state == OccurrenceState.PLANNED)).all()
    taken = {(o.service, o.schedule, o.planned_for) for o in planned}
    for o in planned:
        upcoming.append({"service": o.service, "schedule": o.schedule, "at": o.starts_at, "occ": o})
    for svc in sv.config.services:
        for schedule in svc.drills:
            for at in drills.fire_times(schedule, now, now + HORIZON)[:3]:
                if (svc.name, schedule.name, at) not in taken:
                    upcoming.append({"service": svc.name, "schedule": schedule.name, "at": at, "occ": None,
                                     "scenario": schedule.scenario})
    upcoming.sort(key=lambda u: u["at"])
    return Reply("drills", {"upcoming": upcoming[:20], "now": now, "command": sv.command,
                            "tz": inv.actor.tz or sv.config.timezone})


def _history(inv: Invocation, service: str | None) -> Reply:
    with session_scope(inv.services.engine) as s:
        stmt = select(Run).where(Run.kind == RequestKind.DRILL).order_by(col(Run.started_at).desc()).limit(20)
        if service:
            stmt = stmt.where(Run.service == service)
        runs = s.exec(stmt).all()
    targets = {svc.name: svc for svc in inv.services.config.services}
    return Reply("drills_history", {"runs": runs, "targets": targets, "service": service,
                                    "now": inv.services.clock(), "command": inv.services.command})
