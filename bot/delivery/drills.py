"""Delivery of drill posts: the first announcement is the drill request's own message
(with its buttons) and the root of the occurrence's thread; reminders, 'starting now' and
'missed' follow in that thread."""
from __future__ import annotations

from sqlmodel import Session

from bot.events import DrillMaintenance, DrillPost
from bot.outbox.kinds import Outcome
from bot.outbox.queue import enqueue
from bot.render import Reply
from bot.request_events import queue_message
from bot.request_view import message
from bot.services import Services
from bot.store.drill_tables import DrillOccurrence
from bot.store.models import ChangeRequest

TEMPLATES = {"announce": "drill_reminder", "started": "drill_started", "missed": "drill_missed"}


def prepare(services: Services, s: Session, ev: DrillPost) -> tuple[str, Reply, str]:
    occ = s.get(DrillOccurrence, ev.occurrence_id)
    req = s.get(ChangeRequest, occ.request_id)
    if ev.what == "announce" and not occ.thread_ts:
        return "root", message(services, s, occ.request_id), ""
    svc = services.config.service(occ.service)
    context = {"occ": occ, "req": req, "lead": ev.lead, "why": ev.why, "now": services.clock(),
               "schedule": svc.drill_schedule(occ.schedule) if svc else None, "command": services.command}
    return ev.what, Reply(TEMPLATES[ev.what], context, ephemeral=False), occ.thread_ts


def deliver(services: Services, ev: DrillPost, prepared: tuple[str, Reply, str], _item: int) -> Outcome:
    what, reply, thread_ts = prepared
    ts = services.messenger.post(ev.channel, reply, thread_ts=thread_ts or None)

    def rooted(s: Session) -> None:
        occ = s.get(DrillOccurrence, ev.occurrence_id)
        occ.thread_ts = ts
        s.get(ChangeRequest, occ.request_id).message_ts = ts
        svc = services.config.service(occ.service)
        schedule = svc.drill_schedule(occ.schedule) if svc else None
        if schedule and schedule.maintenance and services.config.statuspage is not None:
            enqueue(s, DrillMaintenance(occurrence_id=occ.id), services.clock())

    def refreshed(s: Session) -> None:  # the root message shows how long until the start
        occ = s.get(DrillOccurrence, ev.occurrence_id)
        queue_message(services, s, s.get(ChangeRequest, occ.request_id))

    return Outcome(result={"ts": ts}, apply={"root": rooted, "announce": refreshed}.get(what))
