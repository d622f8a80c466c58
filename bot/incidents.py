"""Incidents: opened by alerts (per policy) or by hand, each with its own channel, a
timeline of everything that happens, and status-page updates that follow its status.
Every side effect goes through the outbox, in the transaction of the change causing it."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import SYSTEM, record
from bot.changes import Refused
from bot.events import ArchivePostmortem, IncidentChannel, IncidentResolved, IncidentReminder, StatuspagePreview
from bot.events import OpsUpdate, StatuspagePublish
from bot.oplog import op
from bot.outbox.queue import enqueue, parse
from bot.paging import queue_pages
from bot.permissions import require
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident, IncidentStatus, OpenIncidentService, OutboxItem, PreviewDecision

IMPACT = {"sev1": "major_outage", "sev2": "partial_outage", "sev3": "degraded_performance",
          "sev4": "degraded_performance"}
STATUSES = tuple(s.value for s in IncidentStatus)
MACHINE_OPENERS = frozenset({"alerts", SYSTEM.id})
"""Who opens incidents without a person typing the title: alert intake (bot.alerts.intake
ALERTS) and drbot itself. Anyone else typed it."""


class NoIncident(Exception):
    """There is no (open) incident where the person asked."""


def services_of(incident: Incident) -> list[str]:
    return json.loads(incident.services or "[]")


def open_incidents(session: Session) -> list[Incident]:
    return list(session.exec(select(Incident).where(Incident.status != IncidentStatus.RESOLVED)
                             .order_by(col(Incident.id))))


def for_channel(session: Session, channel: str | None) -> Incident | None:
    """The incident of this channel, or None: a DM or any other channel never stands for
    an incident (not even the only open one), so a change can never land on a guess."""
    if not channel:
        return None
    return session.exec(select(Incident).where(Incident.channel_id == channel)
                        .order_by(col(Incident.id).desc())).first()


def open_incident_of(s: Session, service: str) -> Incident | None:
    """The one open incident of ``service``. Its claim is read FOR SHARE (PostgreSQL): a
    resolution committing meanwhile is waited for (then there is none), and one that starts
    later waits for this transaction, so what joins the incident joins it while it is open."""
    claim = s.exec(select(OpenIncidentService).where(OpenIncidentService.service == service)
                   .with_for_update(read=True).execution_options(populate_existing=True)).first()
    inc = s.get(Incident, claim.incident_id) if claim is not None else None
    return inc if inc is not None and inc.status is not IncidentStatus.RESOLVED else None


class _Taken(Exception):
    def __init__(self, service: str):
        super().__init__(service)
        self.service = service


def open_or_join(services: Services, s: Session, actor: Actor, title: str, severity: str,
                 service_names: list[str], detected_at: datetime | None = None) -> tuple[Incident, bool]:
    """(the new incident, True), or (the open incident of one of ``service_names``, False).

    A service has one open incident: the new one claims each of its services (primary key
    of open_incident_service, INSERT ... ON CONFLICT DO NOTHING, in name order). If one is
    taken, even by an incident opening at this moment on another replica (PostgreSQL waits
    for that transaction; SQLite's writers take turns), nothing is opened and the holder is
    returned instead: the caller joins it."""
    names = list(dict.fromkeys(service_names))
    for _ in range(5):  # a holder found taken, then resolved before it could be read: again
        try:
            return _open(services, s, actor, title, severity, names, detected_at), True
        except _Taken as taken:
            held = open_incident_of(s, taken.service)
            if held is not None:
                return held, False
    raise RuntimeError(f"could not open or find the open incident of {', '.join(names)}")


def _open(services: Services, s: Session, actor: Actor, title: str, severity: str, names: list[str],
          detected_at: datetime | None) -> Incident:
    for name in names:
        if open_incident_of(s, name) is not None:
            raise _Taken(name)
    now = services.clock()
    with s.begin_nested():  # rolled back, incident and claims, when a claim is lost
        inc = Incident(title=title, severity=severity, services=json.dumps(names), opened_by=actor.id,
                       opened_at=now, detected_at=detected_at or now)
        s.add(inc)
        s.flush()
        dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
        table = OpenIncidentService.__table__
        claim = dialect.insert(table).on_conflict_do_nothing().returning(table.c.service)
        for name in sorted(names):
            if s.execute(claim.values(service=name, incident_id=inc.id)).first() is None:
                raise _Taken(name)
    record(s, actor, "incident.opened", target=",".join(names), incident_id=inc.id, text=title,
           detail={"severity": severity, "services": names})
    enqueue(s, IncidentChannel(incident_id=inc.id), now)
    queue_ops_update(services, s, inc, "opened", actor)
    publish_status(services, s, inc, first=True)
    queue_pages(services, s, inc, "opened")
    services.metrics.incidents.labels("opened").inc()
    op("incident.opened", incident_id=inc.id, service=",".join(names), severity=severity, user=actor.id)
    return inc


def set_status(services: Services, s: Session, actor: Actor, inc: Incident, status: str, message: str) -> None:
    now = services.clock()
    if status == "resolved":  # its services may open new incidents (released first: see open_incident_of)
        s.execute(delete(OpenIncidentService).where(OpenIncidentService.incident_id == inc.id))
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
    queue_ops_update(services, s, inc, "status", actor)
    services.metrics.incidents.labels(status).inc()
    op("incident.status", incident_id=inc.id, service=",".join(services_of(inc)), user=actor.id, outcome=status,
       previous=previous)
    if status == "resolved":
        enqueue(s, IncidentResolved(incident_id=inc.id), now)
        queue_pages(services, s, inc, "resolved")
        if services.config.archive is not None:
            enqueue(s, ArchivePostmortem(incident_id=inc.id), now)


def queue_ops_update(services: Services, s: Session, inc: Incident, what: str, actor: Actor) -> None:
    """Tell ``incidents.ops_channel`` (when set) what changed: opened, status, severity, commander."""
    channel = services.config.incidents.ops_channel
    if channel:
        now = services.clock()
        enqueue(s, OpsUpdate(incident_id=inc.id, channel=channel, what=what, by=actor.id, at=now.isoformat()), now)


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
    if policy == "auto" and _typed_text(s, inc, message):
        policy = sp.publish_typed_text.get(inc.severity, "preview")
    if policy == "auto":
        enqueue(s, StatuspagePublish(incident_id=inc.id, status=inc.status.value, message=message), services.clock())
    else:
        enqueue(s, StatuspagePreview(incident_id=inc.id, status=inc.status.value, message=message), services.clock())


def _typed_text(s: Session, inc: Incident, message: str) -> bool:
    """Would this update put text a person typed on the public page: a status message, or
    the title of an incident opened by hand that no one has published yet?"""
    if message.strip():
        return True
    if inc.opened_by in MACHINE_OPENERS or inc.statuspage_id:
        return False
    stream = StatuspagePublish(incident_id=inc.id, status=inc.status.value).stream()
    return s.exec(select(OutboxItem.id).where(OutboxItem.kind == StatuspagePublish.KIND,
                                              OutboxItem.stream == stream)).first() is None


def decide_preview(services: Services, actor: Actor, item_id: int, publish: bool, body: str | None = None):
    """Publish or skip a previewed status-page update (the preview's outbox item). One
    decision per preview, on any replica: the first Publish or Skip wins (its row's
    primary key), later clicks are told so. Only a holder of ``statuspage_publish`` decides."""
    require(services, actor, "statuspage_publish")
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


def add_message(services: Services, actor: Actor, channel: str | None, author: str, text: str, ts: str,
                link: str = "") -> Incident:
    """The message shortcut "Add to incident timeline": a message of the incident's channel
    (its text, who wrote it, its permalink) joins the timeline. NoIncident outside an open
    incident's channel."""
    with session_scope(services.engine) as s:
        inc = incident_in(s, channel)
        if inc.status is IncidentStatus.RESOLVED:
            raise NoIncident(channel)
        add_note(s, actor, inc, text, kind="incident.pinned",
                 detail={"author": author, "ts": ts, "link": link, "by": actor.id})
    return inc


def update_from_form(services: Services, actor: Actor, incident_id: int, status: str, message: str):
    """The 'post update' modal of the reminder: a status change with its message."""
    require(services, actor, "incident_update")
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
    """Declare an incident (``incident_open``). Its typed title reaches the status page only
    through a preview, unless ``statuspage.publish_typed_text`` says otherwise."""
    require(services, actor, "incident_open")
    with session_scope(services.engine) as s:
        inc, opened = open_or_join(services, s, actor, title, severity, names)
    if not opened:  # one open incident per service: the person is sent to it
        held = [n for n in names if n in services_of(inc)]
        raise Refused("incident_open", id=inc.id, title=inc.title, channel=inc.channel_id, services=held)
    if services.outbox is not None:
        services.outbox.poke()
    return inc


def incident_in(s: Session, channel: str | None) -> Incident:
    """The incident of this channel (open or resolved), or NoIncident."""
    inc = for_channel(s, channel)
    if inc is None:
        raise NoIncident(channel)
    return inc


def status_in_channel(services: Services, actor: Actor, channel: str | None, status: str, message: str) -> Incident:
    """Set the status of the channel's incident (the status page follows, per policy)."""
    require(services, actor, "incident_update")
    with session_scope(services.engine) as s:
        inc = incident_in(s, channel)
        if inc.status is IncidentStatus.RESOLVED:
            raise NoIncident(channel)
        set_status(services, s, actor, inc, status, message)
    if services.outbox is not None:
        services.outbox.poke()
    return inc


def note_in_channel(services: Services, actor: Actor, channel: str | None, text: str) -> Incident:
    with session_scope(services.engine) as s:
        inc = incident_in(s, channel)
        add_note(s, actor, inc, text)
    return inc
