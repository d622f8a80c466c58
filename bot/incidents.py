"""Incidents: opened by alerts (per policy) or by hand, each with its own channel, a
timeline of everything that happens, and status-page updates that follow its status.
Every side effect goes through the outbox, in the transaction of the change causing it."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import record
from bot.events import ArchivePostmortem, IncidentChannel, IncidentResolved, IncidentReminder, StatuspagePreview
from bot.events import StatuspagePublish
from bot.outbox.queue import enqueue, parse
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident, IncidentStatus, OutboxItem, PreviewDecision

IMPACT = {"sev1": "major_outage", "sev2": "partial_outage", "sev3": "degraded_performance",
          "sev4": "degraded_performance"}
STATUSES = tuple(s.value for s in IncidentStatus)


class NoIncident(Exception):
    """There is no (open) incident where the person asked."""


def services_of(incident: Incident) -> list[str]:
    return json.loads(incident.services or "[]")


def open_incidents(session: Session) -> list[Incident]:
    return list(session.exec(select(Incident).where(Incident.status != IncidentStatus.RESOLVED)
                             .order_by(col(Incident.id))))


def for_channel(session: Session, channel: str | None) -> Incident | None:
    """The incident of this channel; or the only open incident when the channel has none."""
    if channel:
        found = session.exec(select(Incident).where(Incident.channel_id == channel)
                             .order_by(col(Incident.id).desc())).first()
        if found is not None:
            return found
    candidates = open_incidents(session)
    return candidates[0] if len(candidates) == 1 else None


def open_incident(services: Services, s: Session, actor: Actor, title: str, severity: str,
                  service_names: list[str], detected_at: datetime | None = None) -> Incident:
    now = services.clock()
    inc = Incident(title=title, severity=severity, services=json.dumps(service_names), opened_by=actor.id,
                   opened_at=now, detected_at=detected_at or now)
    s.add(inc)
    s.flush()
    record(s, actor, "incident.opened", target=",".join(service_names), incident_id=inc.id, text=title,
           detail={"severity": severity, "services": service_names})
    enqueue(s, IncidentChannel(incident_id=inc.id), now)
    publish_status(services, s, inc, first=True)
    return inc


def set_status(services: Services, s: Session, actor: Actor, inc: Incident, status: str, message: str) -> None:
    now = services.clock()
    previous = inc.status.value
    inc.status = IncidentStatus(status)
    if status in ("monitoring", "resolved") and inc.mitigated_at is None:
        inc.mitigated_at = now
    if status == "resolved":
        inc.resolved_at = now
    inc.last_update_at = now  # a status update quiets the reminder, status page or not
    record(s, actor, "incident.status", target=inc.title, incident_id=inc.id, text=message,
           detail={"from": previous, "to": status})
    publish_status(services, s, inc, message=message)
    if status == "resolved":
        enqueue(s, IncidentResolved(incident_id=inc.id), now)
        if services.config.archive is not None:
            enqueue(s, ArchivePostmortem(incident_id=inc.id), now)


def add_note(s: Session, actor: Actor, inc: Incident, text: str, kind: str = "incident.note",
             detail: dict | None = None) -> None:
    record(s, actor, kind, target=inc.title, incident_id=inc.id, text=text, detail=detail)


def publish_status(services: Services, s: Session, inc: Incident, message: str = "", first: bool = False) -> None:
    """Queue the status-page change for this incident's state, per the severity policy."""
    sp = services.config.statuspage
    if sp is None:
        return
    policy = sp.publish.get(inc.severity, "preview")  # unlisted: a person decides
    if policy == "skip":
        return
    if policy == "auto":
        enqueue(s, StatuspagePublish(incident_id=inc.id, status=inc.status.value, message=message), services.clock())
    else:
        enqueue(s, StatuspagePreview(incident_id=inc.id, status=inc.status.value, message=message), services.clock())


def decide_preview(services: Services, actor: Actor, item_id: int, publish: bool, body: str | None = None):
    """Publish or skip a previewed status-page update (the preview's outbox item). One
    decision per preview, on any replica: the first Publish or Skip wins (its row's
    primary key), later clicks are told so."""
    with session_scope(services.engine) as s:
        item = s.get(OutboxItem, item_id)
        if item is None or item.kind != StatuspagePreview.KIND:
            return Reply("refused", {"code": "unknown_action", "p": {"action": f"preview {item_id}"}})
        preview = parse(item)
        inc = s.get(Incident, preview.incident_id)
        decision = "approved" if publish else "skipped"
        try:
            with s.begin_nested():
                s.add(PreviewDecision(item_id=item_id, decision=decision, decided_by=actor.id, at=services.clock()))
        except IntegrityError:
            decided = s.get(PreviewDecision, item_id)
            return Reply("refused", {"code": "preview_decided", "p": {"item": item_id, "how": decided.decision}})
        if publish:
            # edited by the incident commander before publishing: published as written
            enqueue(s, StatuspagePublish(incident_id=inc.id, status=preview.status,
                                         message=body if body is not None else preview.message, body=body,
                                         preview=item_id), services.clock())
        record(s, actor, f"statuspage.{decision}", target=inc.title, incident_id=inc.id,
               detail={"status": preview.status, "preview": item_id})
    if services.outbox is not None:
        services.outbox.poke()
    return None


def pin_message(services: Services, channel: str, author: str, text: str, ts: str, by: Actor) -> bool:
    """A message someone reacted to with the pin reaction joins the incident's timeline."""
    with session_scope(services.engine) as s:
        inc = s.exec(select(Incident).where(Incident.channel_id == channel)).first()
        if inc is None:
            return False
        add_note(s, by, inc, text, kind="incident.pinned", detail={"author": author, "ts": ts})
    return True


def update_from_form(services: Services, actor: Actor, incident_id: int, status: str, message: str):
    """The 'post update' modal of the reminder: a status change with its message."""
    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
        if inc is None or inc.status is IncidentStatus.RESOLVED:
            return Reply("refused", {"code": "not_in_state", "p": {"id": incident_id, "state": "resolved",
                                                                   "wanted": "open"}})
        set_status(services, s, actor, inc, status, message)
    if services.outbox is not None:
        services.outbox.poke()
    return None


def remind_due(services: Services) -> list[int]:
    """Open incidents with no status update for the configured interval get one reminder
    per interval in their channel, with a button that opens the update form."""
    now = services.clock()
    every = services.config.incidents.reminder
    reminded = []
    with session_scope(services.engine) as s:
        for inc in open_incidents(s):
            last = max(t for t in (inc.last_update_at, inc.opened_at, inc.reminded_at) if t is not None)
            if inc.channel_id and now - last >= every:
                inc.reminded_at = now
                quiet = (now - (inc.last_update_at or inc.opened_at)).total_seconds()
                enqueue(s, IncidentReminder(incident_id=inc.id, quiet_for=quiet, at=now.isoformat()), now)
                reminded.append(inc.id)
    return reminded


# -- by hand, from a channel --------------------------------------------------------------

def open_by_hand(services: Services, actor: Actor, title: str, severity: str, names: list[str]) -> Incident:
    with session_scope(services.engine) as s:
        inc = open_incident(services, s, actor, title, severity, names)
    if services.outbox is not None:
        services.outbox.poke()
    return inc


def _in_channel(s: Session, channel: str | None) -> Incident:
    inc = for_channel(s, channel)
    if inc is None:
        raise NoIncident(channel)
    return inc


def status_in_channel(services: Services, actor: Actor, channel: str | None, status: str, message: str) -> Incident:
    """Set the status of the channel's incident (the status page follows, per policy)."""
    with session_scope(services.engine) as s:
        inc = _in_channel(s, channel)
        if inc.status is IncidentStatus.RESOLVED:
            raise NoIncident(channel)
        set_status(services, s, actor, inc, status, message)
    if services.outbox is not None:
        services.outbox.poke()
    return inc


def note_in_channel(services: Services, actor: Actor, channel: str | None, text: str) -> Incident:
    with session_scope(services.engine) as s:
        inc = _in_channel(s, channel)
        add_note(s, actor, inc, text)
    return inc
