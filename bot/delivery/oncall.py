"""Delivery of the on-call and communications posts in an incident's channel: a relaxed
approval policy (loud), and the automatic "no change since HH:MM" update."""
from __future__ import annotations

from datetime import datetime

from bot.approval_slots import relaxed_note
from bot.delivery.incidents import channel_of
from bot.events import ApprovalRelaxed, NoChangeUpdate
from bot.incident_view import incident_context
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident
from bot.store.models import ChangeRequest


def deliver_relaxed(services: Services, ev: ApprovalRelaxed, _prepared, _item: int) -> Outcome:
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
        channel = channel_of(inc)
        req = s.get(ChangeRequest, ev.request_id)
        ctx = {"inc": inc, "req": req, "relaxed": relaxed_note(s, ev.request_id) or {}}
    ts = services.messenger.post(channel, Reply("approval_relaxed", ctx, ephemeral=False))
    return Outcome(result={"ts": ts})


def deliver_no_change(services: Services, ev: NoChangeUpdate, _prepared, _item: int) -> Outcome:
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
        channel = channel_of(inc)
        ctx = incident_context(services, s, inc) | {"since": datetime.fromisoformat(ev.since)}
    ts = services.messenger.post(channel, Reply("incident_no_change", ctx, ephemeral=False))
    return Outcome(result={"ts": ts})
