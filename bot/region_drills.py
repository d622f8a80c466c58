"""Region drills on the drill calendar: the schedules of ``evacuation.drills`` and
``/dr drill schedule evacuate REGION WHEN``. Each is a drill occurrence of the service
``region:REGION`` holding a region drill request (``bot.evacuation.create``, direction
'drill'); from then on the calendar treats it as any drill (``bot.drills.tick``: the
announcements, the start only if approved, else missed; Postpone and Skip through
``bot.drill_calendar``), and the evacuation coordinator runs it once it is started.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot import evacuation
from bot.actor import Actor
from bot.audit import record
from bot.changes import Refused
from bot.config.schedules import RegionDrillSchedule
from bot.drill_calendar import SCHEDULER
from bot.drill_schedules import channel_for, fire_times, lead_times, schedule_for
from bot.drill_posts import poke, post
from bot.oplog import op
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.evacuation_tables import REGION_PREFIX
from bot.store.models import ChangeRequest


def plan(services: Services, now: datetime) -> list[int]:
    """Create the region occurrences (and their requests) due for a first announcement."""
    created = []
    for schedule in services.config.evacuation.drills:
        horizon = now + timedelta(seconds=lead_times(schedule)[0])
        for at in fire_times(schedule, now - schedule.grace, horizon):
            occ_id = _plan_one(services, schedule, at)
            if occ_id is not None:
                created.append(occ_id)
    return created


def _plan_one(services: Services, schedule: RegionDrillSchedule, at: datetime) -> int | None:
    service = f"{REGION_PREFIX}{schedule.region}"
    with read_scope(services.engine) as s:  # cheap first: planning reads every service's pre-flight
        if s.exec(select(DrillOccurrence.id).where(DrillOccurrence.service == service,
                                                   DrillOccurrence.schedule == schedule.name,
                                                   DrillOccurrence.planned_for == at)).first() is not None:
            return None
    try:
        req = create(services, schedule.region, schedule.name, at)
    except Refused as r:
        _refused(services, schedule, at, r)
        return None
    return req.occurrence_id if req is not None else None


def create(services: Services, region: str, schedule: str, at: datetime, requester: Actor = SCHEDULER,
           reason: str = "") -> ChangeRequest | None:
    """One region occurrence and its region drill request, collecting approvals until
    ``at``, announced in the schedule's channel, else ``slack.channels.announcements``, else
    (by hand) where it was asked for. None when it exists already; Refused as
    ``evacuation.create`` refuses (a person needs ``drill_calendar``)."""
    service = f"{REGION_PREFIX}{region}"
    channel = channel_for(services.config, service, schedule_for(services.config, service, schedule))
    occ = DrillOccurrence(service=service, schedule=schedule, planned_for=at, starts_at=at,
                          channel=channel or requester.channel or "")  # by hand: where it was asked for
    try:
        return evacuation.create(services, requester, region, reason or f"scheduled region drill {schedule}",
                                 direction="drill", not_before=at, occurrence=occ)
    except IntegrityError:  # planned already (another tick, replica or click): the unique key kept one
        return None


def _refused(services: Services, schedule: RegionDrillSchedule, at: datetime, refusal: Refused) -> None:
    """The drill cannot be asked for (nothing in the region may be drilled, an evacuation of
    it is open): recorded once as missed, with why, logged, and said in the schedule's
    channel (a drill that silently does not happen is a gap in the DR record); the next
    tick does not ask again."""
    why = services.renderer.text(refusal.reply()).strip()
    service = f"{REGION_PREFIX}{schedule.region}"
    try:
        with session_scope(services.engine) as s:
            occ = DrillOccurrence(service=service, schedule=schedule.name, planned_for=at, starts_at=at,
                                  channel=channel_for(services.config, service, schedule),
                                  state=OccurrenceState.MISSED, note=f"not planned: {why}")
            s.add(occ)
            s.flush()
            record(s, SCHEDULER, "drill.refused", target=service, service=service, text=why,
                   detail={"schedule": schedule.name, "starts_at": at.isoformat(), "occurrence": occ.id,
                           "code": refusal.code})
            post(services, s, occ, "refused", why=why)
    except IntegrityError:
        return  # another replica recorded it
    op("drill.refused", level=logging.WARNING, service=service, schedule=schedule.name, starts_at=at.isoformat(),
       code=refusal.code)
    poke(services)
