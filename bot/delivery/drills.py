"""Delivery of drill posts: the first announcement is the drill request's own message
(with its buttons) and the root of the occurrence's thread; reminders, 'starting now' and
'missed' follow in that thread. A region drill that could not be asked for is a post of
its own."""
from __future__ import annotations

from sqlmodel import Session

from bot.drill_schedules import region_of, schedule_for
from bot.evacuation_policy import members_of
from bot.events import DrillMaintenance, DrillPost
from bot.outbox.kinds import Outcome
from bot.outbox.queue import enqueue
from bot.render import Reply
from bot.request_events import queue_message
from bot.request_view import message
from bot.services import Services
from bot.store.drill_tables import DrillOccurrence
from bot.store.models import ChangeRequest

TEMPLATES = {"announce": "drill_reminder", "started": "drill_started", "missed": "drill_missed",
             "refused": "drill_refused"}


def prepare(services: Services, s: Session, ev: DrillPost) -> tuple[str, Reply, str]:
    occ = s.get(DrillOccurrence, ev.occurrence_id)
    if ev.what == "refused":  # never asked for: no request, no thread; a post of its own
        return ev.what, Reply(TEMPLATES[ev.what], {"occ": occ, "why": ev.why, "region": region_of(occ.service),
                                                   "command": services.command}, ephemeral=False), ""
    req = s.get(ChangeRequest, occ.request_id)
    if ev.what == "announce" and not occ.thread_ts:
        return "root", message(services, s, occ.request_id), ""
    context = {"occ": occ, "req": req, "lead": ev.lead, "why": ev.why, "now": services.clock(),
               "schedule": schedule_for(services.config, occ.service, occ.schedule), "command": services.command,
               "region": region_of(occ.service)} | _moving(s, req)
    return ev.what, Reply(TEMPLATES[ev.what], context, ephemeral=False), occ.thread_ts


def _moving(s: Session, req: ChangeRequest) -> dict[str, int]:
    """A region drill's size, from its members: the services it moves and in how many waves."""
    moving = [m for m in members_of(s, req.id) if m.state != "refused"]
    return {"moving": len(moving), "waves": len({m.wave for m in moving})}


def deliver(services: Services, ev: DrillPost, prepared: tuple[str, Reply, str], _item: int) -> Outcome:
    what, reply, thread_ts = prepared
    ts = services.messenger.post(ev.channel, reply, thread_ts=thread_ts or None)

    def rooted(s: Session) -> None:
        occ = s.get(DrillOccurrence, ev.occurrence_id)
        occ.thread_ts = ts
        s.get(ChangeRequest, occ.request_id).message_ts = ts
        schedule = schedule_for(services.config, occ.service, occ.schedule)
        # a region drill never touches the status page: its schedule has no maintenance
        if getattr(schedule, "maintenance", False) and services.config.statuspage is not None:
            enqueue(s, DrillMaintenance(occurrence_id=occ.id), services.clock())

    def refreshed(s: Session) -> None:  # the root message shows how long until the start
        occ = s.get(DrillOccurrence, ev.occurrence_id)
        queue_message(services, s, s.get(ChangeRequest, occ.request_id))

    return Outcome(result={"ts": ts}, apply={"root": rooted, "announce": refreshed}.get(what))
