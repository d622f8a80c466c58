"""Automatic "no change since HH:MM" updates (``incidents.no_change_updates``).

While an incident is open and nothing was posted about it for the configured cadence (no
timeline event: no alert, command, note, step..., no status update, no status-page post and
no earlier "no change" update), its channel is told "no change since" the time of its last
real change; when the incident is already on the status page and its severity publishes
there automatically (``statuspage.publish: auto``), the page gets the same update (drbot's
own words, never text a person typed). Each such update is itself a timeline event
(``incident.no_change``), so the next one comes a full cadence later, and any real change
restarts the count. Run by the scheduler's minute job (``incident_reminders``).
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, func, select

from bot.events import NoChangeUpdate, StatuspagePublish
from bot.outbox.queue import enqueue
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident, IncidentStatus
from bot.store.models import TimelineEvent, aware

KIND = "incident.no_change"
NOT_CHANGES = (KIND, "statuspage.published")
"""Timeline events that are posts about the incident, not changes of it."""


def _latest(s: Session, incident_id: int, skip: tuple[str, ...]) -> datetime | None:
    stmt = select(func.max(TimelineEvent.at)).where(TimelineEvent.incident_id == incident_id)
    if skip:
        stmt = stmt.where(col(TimelineEvent.kind).not_in(skip))
    at = s.exec(stmt).one()
    return aware(at) if at is not None else None


def post_due(services: Services) -> list[int]:
    """Queue a "no change" update for every open incident quiet for the cadence; their IDs."""
    every = services.config.incidents.no_change_updates
    if every is None:
        return []
    now = services.clock()
    posted = []
    with session_scope(services.engine) as s:
        for inc in s.exec(select(Incident).where(col(Incident.status) != IncidentStatus.RESOLVED)
                          .order_by(col(Incident.id))).all():
            if not inc.channel_id:
                continue
            opened = aware(inc.opened_at)
            updated = aware(inc.last_update_at) if inc.last_update_at else None
            last_post = max(t for t in (_latest(s, inc.id, ()), opened, updated) if t is not None)
            if now - last_post < every:
                continue
            since = max(t for t in (_latest(s, inc.id, NOT_CHANGES), opened) if t is not None)
            s.add(TimelineEvent(at=now, incident_id=inc.id, kind=KIND, actor="drbot",
                                text=f"no change since {since.isoformat()}"))
            enqueue(s, NoChangeUpdate(incident_id=inc.id, since=since.isoformat(), at=now.isoformat()), now)
            _statuspage(services, s, inc, since, now)
            posted.append(inc.id)
    return posted


def _statuspage(services: Services, s: Session, inc: Incident, since: datetime, now: datetime) -> None:
    """The same update on the public page: only an incident already published there, and
    only where its severity publishes without a person's decision."""
    sp = services.config.statuspage
    if sp is None or not inc.statuspage_id or sp.publish.get(inc.severity, "preview") != "auto":
        return
    body = services.renderer.text(Reply("statuspage_no_change", {"inc": inc, "since": since})).strip()
    enqueue(s, StatuspagePublish(incident_id=inc.id, status=inc.status.value, body=body), now)
