"""Incidents: opened by alerts (per policy) or by hand, each with its own channel, a
timeline of everything that happens, and status-page updates that follow its status.
Every side effect goes through the outbox, in the transaction of the change causing it."""
from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import record
from bot.outbox import enqueue
from bot.services import Services
from bot.store.incident_tables import Incident, IncidentStatus
from bot.store.models import TimelineEvent

IMPACT = {"sev1": "major_outage", "sev2": "partial_outage", "sev3": "degraded_performance",
          "sev4": "degraded_performance"}
STATUSES = tuple(s.value for s in IncidentStatus)


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
    enqueue(s, "slack.incident_channel", f"slack:incident:{inc.id}", f"incident:{inc.id}:channel",
            {"incident_id": inc.id})
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
        enqueue(s, "slack.resolved", f"slack:incident:{inc.id}", f"incident:{inc.id}:resolved",
                {"incident_id": inc.id})
        if services.config.archive is not None:
            enqueue(s, "archive.postmortem", f"archive:incident:{inc.id}", f"incident:{inc.id}:archive",
                    {"incident_id": inc.id})


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
    key = f"incident:{inc.id}:statuspage:{inc.status.value}:{uuid.uuid4().hex[:12]}"
    payload = {"incident_id": inc.id, "status": inc.status.value, "message": message, "create": first}
    kind = "statuspage.publish" if policy == "auto" else "slack.statuspage_preview"
    stream = f"statuspage:incident:{inc.id}" if policy == "auto" else f"slack:incident:{inc.id}"
    enqueue(s, kind, stream, key, payload)


def decide_preview(services: Services, actor: Actor, item_id: int, publish: bool, body: str | None = None):
    """Publish or skip a previewed status-page update (the preview's outbox item)."""
    from bot.render import Reply
    from bot.store import session_scope
    from bot.store.incident_tables import OutboxItem

    with session_scope(services.engine) as s:
        item = s.get(OutboxItem, item_id)
        if item is None or item.kind != "slack.statuspage_preview":
            return Reply("refused", {"code": "unknown_action", "p": {"action": f"preview {item_id}"}})
        payload = json.loads(item.payload)
        if body is not None:  # edited by the incident commander before publishing: published as written
            payload["message"] = payload["body"] = body
        inc = s.get(Incident, payload["incident_id"])
        # one decision per preview: the first Publish or Skip wins, later clicks are told so
        decided = s.exec(select(TimelineEvent).where(
            TimelineEvent.incident_id == inc.id, col(TimelineEvent.kind).in_(["statuspage.approved",
                                                                             "statuspage.skipped"]),
            col(TimelineEvent.data).contains(f'"preview": {item_id}'))).first()
        if decided is not None:
            return Reply("refused", {"code": "preview_decided", "p": {"item": item_id, "how": decided.kind[11:]}})
        if publish:
            enqueue(s, "statuspage.publish", f"statuspage:incident:{inc.id}", f"publish-of-{item_id}", payload)
            record(s, actor, "statuspage.approved", target=inc.title, incident_id=inc.id,
                   detail={"status": payload["status"], "preview": item_id})
        else:
            record(s, actor, "statuspage.skipped", target=inc.title, incident_id=inc.id,
                   detail={"status": payload["status"], "preview": item_id})
    if services.outbox is not None:
        services.outbox.poke()
    return None


def pin_message(services: Services, channel: str, author: str, text: str, ts: str, by: Actor) -> bool:
    """A message someone reacted to with the pin reaction joins the incident's timeline."""
    from bot.store import session_scope

    with session_scope(services.engine) as s:
        inc = s.exec(select(Incident).where(Incident.channel_id == channel)).first()
        if inc is None:
            return False
        add_note(s, by, inc, text, kind="incident.pinned", detail={"author": author, "ts": ts})
    return True


def update_from_form(services: Services, actor: Actor, incident_id: int, status: str, message: str):
    """The 'post update' modal of the reminder: a status change with its message."""
    from bot.store import session_scope

    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
        if inc is None or inc.status is IncidentStatus.RESOLVED:
            from bot.render import Reply
            return Reply("refused", {"code": "not_in_state", "p": {"id": incident_id, "state": "resolved",
                                                                   "wanted": "open"}})
        set_status(services, s, actor, inc, status, message)
    if services.outbox is not None:
        services.outbox.poke()
    return None


def remind_due(services: Services) -> list[int]:
    """Open incidents with no status update for the configured interval get one reminder
    per interval in their channel, with a button that opens the update form."""
    from bot.store import session_scope

    now = services.clock()
    every = services.config.incidents.reminder
    reminded = []
    with session_scope(services.engine) as s:
        for inc in open_incidents(s):
            last = max(t for t in (inc.last_update_at, inc.opened_at, inc.reminded_at) if t is not None)
            if inc.channel_id and now - last >= every:
                inc.reminded_at = now
                enqueue(s, "slack.reminder", f"slack:incident:{inc.id}", f"incident:{inc.id}:remind:{now.isoformat()}",
                        {"incident_id": inc.id, "quiet_for": (now - (inc.last_update_at or inc.opened_at)).total_seconds()})
                reminded.append(inc.id)
    return reminded
