"""Scheduled drills: occurrences from each service's cron schedules (and each region's:
``bot.region_drills``), announced ahead of
time (default 24h and 1h before, and at the start) in one thread, approved ahead of time
by two people, started by the scheduler at their time only if approved, marked missed
otherwise. ``tick`` is idempotent: every step is a conditional update or a unique insert,
so a second tick, a restart or a leader change never announces or starts anything twice.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot import changes, region_drills
from bot.actor import Actor
from bot.audit import record
from bot.drill_calendar import SCHEDULER
from bot.drill_posts import poke, post
from bot.config import ServiceConfig
from bot.config.schedules import CalendarSchedule
from bot.drill_schedules import channel_for, fire_times, grace_of, lead_times, region_of, schedule_for
from bot.permissions import require
from bot.policy import policy_for
from bot.preflight import run_preflight
from bot.request_events import queue_message
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.evacuation_tables import REGION_PREFIX
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.store.transitions import move_request

log = logging.getLogger(__name__)


def schedule_of(services: Services, occ: DrillOccurrence) -> CalendarSchedule | None:
    return schedule_for(services.config, occ.service, occ.schedule)


# -- planning ---------------------------------------------------------------------------

def plan_occurrences(services: Services, now: datetime) -> list[int]:
    """Create the occurrences (and their change requests) due for a first announcement."""
    created = []
    for svc in services.config.services:
        for schedule in svc.drills:
            horizon = now + timedelta(seconds=lead_times(schedule)[0])
            for at in fire_times(schedule, now - schedule.grace, horizon):
                occ_id = create_occurrence(services, svc, schedule.name, at, schedule.scenario)
                if occ_id is not None:
                    created.append(occ_id)
    return created


def create_occurrence(services: Services, svc: ServiceConfig, schedule: str, at: datetime, scenario: str,
                      requester: Actor = SCHEDULER, reason: str = "") -> int | None:
    """One occurrence and its drill request, collecting approvals until ``at``. None when
    it exists already (the unique key makes planning idempotent). A person (not the
    scheduler) needs ``drill_calendar``."""
    if requester is not SCHEDULER:
        require(services, requester, "drill_calendar")
    steps = svc.runbooks.steps("drill", scenario)
    active, standby = services.status.regions()[svc.name]
    pre = run_preflight(services, svc, active, standby, steps)
    policy = policy_for(services.config, svc.name)
    now = services.clock()
    try:
        with session_scope(services.engine) as s:
            occ = DrillOccurrence(service=svc.name, schedule=schedule, planned_for=at, starts_at=at,
                                  channel=channel_for(services.config, svc.name, svc.drill_schedule(schedule)))
            s.add(occ)
            s.flush()
            req = ChangeRequest(kind=RequestKind.DRILL, service=svc.name, from_region=active, to_region=standby,
                                scenario=scenario, reason=reason or f"scheduled drill {schedule}",
                                requester=requester.id, requester_name=requester.name,
                                required_approvals=max(policy.required, 2 if requester is SCHEDULER else 1),
                                created_at=now, expires_at=at, not_before=at, occurrence_id=occ.id,
                                preflight=pre.to_json(), channel=occ.channel, origin="scheduler")
            s.add(req)
            s.flush()
            occ.request_id = req.id
            record(s, requester, "drill.planned", target=svc.name, request_id=req.id, service=svc.name,
                   detail={"schedule": schedule, "starts_at": at.isoformat(), "occurrence": occ.id})
            return occ.id
    except IntegrityError:
        return None



# -- the tick ---------------------------------------------------------------------------

def tick(services: Services) -> dict[str, list[int]]:
    """Plan, announce, start or miss whatever is due now. Safe to run at any rate."""
    now = services.clock()
    planned = plan_occurrences(services, now) + region_drills.plan(services, now)
    done: dict[str, list[int]] = {"planned": planned, "announced": [], "started": [], "missed": []}
    with session_scope(services.engine) as s:
        open_ = s.exec(select(DrillOccurrence).where(DrillOccurrence.state == OccurrenceState.PLANNED)
                       .order_by(col(DrillOccurrence.starts_at))).all()
    for occ in open_:
        if now >= occ.starts_at:
            outcome = _start_or_miss(services, occ, now)
            done[outcome].append(occ.id)
        elif _announce(services, occ, now):
            done["announced"].append(occ.id)
    return done


def _due_leads(services: Services, occ: DrillOccurrence, now: datetime) -> list[int]:
    seen = {int(x) for x in occ.announced.split(",") if x}
    leads = [lead for lead in lead_times(schedule_of(services, occ)) if lead and lead not in seen]
    return [lead for lead in leads if now >= occ.starts_at - timedelta(seconds=lead)]


def _announce(services: Services, occ: DrillOccurrence, now: datetime) -> bool:
    """Conditionally record the due announcement: only the tick that changes the row posts."""
    due = _due_leads(services, occ, now)
    if not due:
        return False
    seen = sorted({int(x) for x in occ.announced.split(",") if x} | set(due), reverse=True)
    with session_scope(services.engine) as s:
        stmt = (update(DrillOccurrence).where(DrillOccurrence.id == occ.id,
                                              DrillOccurrence.announced == occ.announced,
                                              DrillOccurrence.state == OccurrenceState.PLANNED)
                .values(announced=",".join(map(str, seen))))
        if s.execute(stmt).rowcount != 1:
            return False
        post(services, s, occ, "announce", lead=min(due))  # after a pause: one post, the nearest lead
    poke(services)
    return True


def _start_or_miss(services: Services, occ: DrillOccurrence, now: datetime) -> str:
    grace = grace_of(schedule_of(services, occ))
    with session_scope(services.engine) as s:
        req = s.get(ChangeRequest, occ.request_id)
        late = now > occ.starts_at + grace
        start = req.state is RequestState.APPROVED and not late
        state = OccurrenceState.STARTED if start else OccurrenceState.MISSED
        why = "" if start else ("drbot was not running at its time" if late and req.state is RequestState.APPROVED
                                else f"not approved before its start ({req.state.value})")
        moved = s.execute(update(DrillOccurrence).where(DrillOccurrence.id == occ.id,
                                                        DrillOccurrence.state == OccurrenceState.PLANNED)
                          .values(state=state, note=why)).rowcount == 1
        if not moved:
            return "started" if start else "missed"
        if not start:
            move_request(s, req.id, [RequestState.PENDING, RequestState.APPROVED], RequestState.EXPIRED,
                         closed_at=now, state_reason=f"drill missed: {why}")
            record(s, SCHEDULER, "drill.missed", target=occ.service, request_id=req.id, service=occ.service,
                   detail={"occurrence": occ.id, "why": why, "starts_at": occ.starts_at.isoformat()})
        post(services, s, occ, "started" if start else "missed", why=why)
        if not start:
            s.refresh(req)
            queue_message(services, s, req)
    poke(services)
    if start and services.runner is not None:
        # 'starting now' is queued first in the occurrence's stream, so it is posted before the run's
        services.runner.poke(occ.request_id)
    return "started" if start else "missed"


# -- changing the calendar (approved like any change) -----------------------------------

def next_open(services: Services, service: str, schedule: str | None = None) -> DrillOccurrence | None:
    with session_scope(services.engine) as s:
        stmt = select(DrillOccurrence).where(DrillOccurrence.service == service,
                                             DrillOccurrence.state == OccurrenceState.PLANNED)
        if schedule:
            stmt = stmt.where(DrillOccurrence.schedule == schedule)
        return s.exec(stmt.order_by(col(DrillOccurrence.starts_at))).first()


def request_calendar_change(services: Services, actor: Actor, occurrence_id: int, skip: bool, reason: str,
                            postpone_to: datetime | None = None) -> ChangeRequest:
    """Ask to skip or postpone a planned drill (``drill_calendar``); runs after approval
    like any change."""
    require(services, actor, "drill_calendar")
    with session_scope(services.engine) as s:
        occ = s.get(DrillOccurrence, occurrence_id)
    if occ is None or occ.state is not OccurrenceState.PLANNED:
        raise changes.Refused("not_in_state", id=occurrence_id, state=occ.state.value if occ else "unknown",
                              wanted="planned")
    kind = RequestKind.DRILL_SKIP if skip else RequestKind.DRILL_POSTPONE
    channel_actor = Actor(id=actor.id, name=actor.name, origin=actor.origin, channel=actor.channel or occ.channel)
    return changes.create(services, channel_actor, kind, occ.service, "", "", [], reason,
                          occurrence_id=occ.id, postpone_to=postpone_to)


# -- reading the calendar -----------------------------------------------------------------

UPCOMING_HORIZON = timedelta(days=62)


def upcoming(services: Services, limit: int = 20) -> list[dict]:
    """Planned occurrences and the next fire times of every schedule not planned yet."""
    now = services.clock()
    with session_scope(services.engine) as s:
        planned = s.exec(select(DrillOccurrence).where(DrillOccurrence.state == OccurrenceState.PLANNED)).all()
    taken = {(o.service, o.schedule, o.planned_for) for o in planned}
    out = [{"service": o.service, "region": region_of(o.service), "schedule": o.schedule, "at": o.starts_at,
            "occ": o} for o in planned]
    schedules = [(svc.name, schedule) for svc in services.config.services for schedule in svc.drills]
    schedules += [(f"{REGION_PREFIX}{d.region}", d) for d in services.config.evacuation.drills]
    for service, schedule in schedules:
        for at in fire_times(schedule, now, now + UPCOMING_HORIZON)[:3]:
            if (service, schedule.name, at) not in taken:
                out.append({"service": service, "region": region_of(service), "schedule": schedule.name, "at": at,
                            "occ": None, "scenario": getattr(schedule, "scenario", "")})
    out.sort(key=lambda u: u["at"])
    return out[:limit]


def history(services: Services, service: str | None, limit: int = 20) -> tuple[list[Run], dict[int, str]]:
    """The newest drill runs, of one service or all, and the restore tests among them (run
    id -> the backup its scenario restores: ``bot.restore_drill``)."""
    with read_scope(services.engine) as s:
        stmt = (select(Run, ChangeRequest.scenario).join(ChangeRequest, ChangeRequest.id == Run.request_id)
                .where(Run.kind == RequestKind.DRILL).order_by(col(Run.started_at).desc()).limit(limit))
        if service:
            stmt = stmt.where(Run.service == service)
        found = list(s.exec(stmt))
    restores: dict[int, str] = {}
    for run, scenario in found:
        svc = services.config.service(run.service)
        if svc is not None and (backup := svc.restore_scenarios().get(scenario)) is not None:
            restores[run.id] = backup
    return [run for run, _ in found], restores
