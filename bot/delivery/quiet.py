"""Delivery of the notice that every alert of an incident has resolved, with its Resolve
button (``bot.alerts.quiet``). Rendered from the incident as it is at delivery: a notice
that has gone stale (the incident was resolved, or an alert fires again) is not posted."""
from __future__ import annotations

from datetime import datetime

from bot.alerts.quiet import firing
from bot.events import IncidentAlertsResolved
from bot.incident_view import incident_context
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident, IncidentStatus


def deliver_alerts_resolved(services: Services, ev: IncidentAlertsResolved, _prepared, _item: int) -> Outcome:
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
        if inc.status is IncidentStatus.RESOLVED:
            return Outcome(result={"posted": False, "why": "the incident is resolved"})
        if firing(s, inc.id):
            return Outcome(result={"posted": False, "why": "an alert fires again"})
        if not inc.channel_id:
            return Outcome(delivered=False, retry_after=2.0, error="the incident channel does not exist yet")
        ctx = incident_context(services, s, inc)
    reply = Reply("incident_alerts_resolved", ctx | {"alert_count": ev.alert_count,
                                                     "resolved_at": datetime.fromisoformat(ev.ended)}, ephemeral=False)
    ts = services.messenger.post(inc.channel_id, reply)
    return Outcome(result={"ts": ts})
