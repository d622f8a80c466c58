"""Delivery to the public status page: open, update and resolve an incident's status-page
incident; schedule the maintenance of an announced drill, move it when the drill is
postponed and cancel it when the drill is skipped. Every HTTP request to the page takes its
turn through the shared pacing (``statuspage:PAGE``).

Every change is safe to repeat: creations are found again by their drbot key, and every
update carries its outbox item as a marker (``drbot-outbox-ID``), so an update whose answer
was lost (a timeout after the page applied it, a process that stopped) is not applied again
when the item is retried (``integrations.statuspage``)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from bot.audit import SYSTEM, record
from bot.config.schedules import DrillSchedule
from bot.events import (
    DrillMaintenance, DrillMaintenanceCancelled, DrillMaintenanceMoved, StatuspageLinked, StatuspagePublish,
)
from bot.incident_view import statuspage_body
from bot.incidents import IMPACT, services_of
from bot.outbox.kinds import Outcome
from bot.outbox.pacing import Limit, gate
from bot.outbox.queue import enqueue
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.incident_tables import Incident
from integrations.statuspage import PublishedIncident


def marker(item_id: int) -> str:
    """The idempotency marker of the update an outbox item makes."""
    return f"drbot-outbox-{item_id}"


def _backend_and_pace(services: Services):
    sp = services.config.statuspage
    backend = services.backends[sp.source]
    pace = gate(services.engine, f"statuspage:{backend.options.page_id}", Limit(1.0 / sp.requests_per_second))
    return backend, pace


def deliver_publish(services: Services, ev: StatuspagePublish, _prepared, item_id: int) -> Outcome:
    backend, pace = _backend_and_pace(services)
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
        # an edited text is published as written (it holds the run sentences of its preview)
        body = ev.body or statuspage_body(services, s, inc, ev.status, ev.message)
    mapping = getattr(backend.options, "components", {}) or {}
    component = "operational" if ev.status == "resolved" else IMPACT.get(inc.severity, "partial_outage")
    components = {mapping[n]: component for n in services_of(inc) if n in mapping}
    if not inc.statuspage_id:
        published = backend.create_incident(key=f"drbot-incident-{inc.id}", name=inc.title, status=ev.status,
                                            body=body, components=components, pace=pace)
    elif ev.status == "resolved":
        published = backend.resolve_incident(inc.statuspage_id, body=body, components=list(components), pace=pace,
                                             marker=marker(item_id))
    else:
        published = backend.update_incident(inc.statuspage_id, status=ev.status, body=body, components=components,
                                            pace=pace, marker=marker(item_id))

    def recorded(s: Session) -> None:
        row = s.get(Incident, inc.id)
        if not row.statuspage_id and published.shortlink:  # the public incident exists: say where, once
            enqueue(s, StatuspageLinked(incident_id=inc.id, link=published.shortlink), services.clock())
        row.statuspage_id = row.statuspage_id or published.id
        row.last_update_at = services.clock()
        record(s, SYSTEM, "statuspage.published", target=inc.title, incident_id=inc.id, text=body,
               detail={"status": ev.status, "statuspage_id": row.statuspage_id, "components": components})

    return Outcome(result={"statuspage_id": published.id, "status": ev.status}, apply=recorded)


def _occurrence(services: Services, occurrence_id: int) -> tuple[DrillOccurrence, DrillSchedule | None]:
    with session_scope(services.engine) as s:
        occ = s.get(DrillOccurrence, occurrence_id)
    svc = services.config.service(occ.service)
    return occ, (svc.drill_schedule(occ.schedule) if svc else None)


def _window(occ: DrillOccurrence, schedule: DrillSchedule | None) -> tuple[datetime, datetime]:
    return occ.starts_at, occ.starts_at + (schedule.duration if schedule else timedelta(hours=1))


def _body(services: Services, template: str, occ: DrillOccurrence, schedule: DrillSchedule | None) -> str:
    start, end = _window(occ, schedule)
    return services.renderer.text(Reply(template, {"occ": occ, "schedule": schedule, "service": occ.service,
                                                   "start": start, "end": end})).strip()


def _maintenance_key(occurrence_id: int) -> str:
    return f"drbot-drill-{occurrence_id}"


def deliver_maintenance(services: Services, ev: DrillMaintenance, _prepared, _item: int) -> Outcome:
    backend, pace = _backend_and_pace(services)
    occ, schedule = _occurrence(services, ev.occurrence_id)
    if occ.state is OccurrenceState.SKIPPED:  # skipped before its maintenance was published: none
        return Outcome(result={"statuspage_id": None, "why": "the drill was skipped"})
    mapping = getattr(backend.options, "components", {}) or {}
    components = [mapping[occ.service]] if occ.service in mapping else []
    body = _body(services, "maintenance_body", occ, schedule)
    start, end = _window(occ, schedule)
    published = backend.create_maintenance(
        key=_maintenance_key(occ.id), name=f"Planned disaster-recovery drill: {occ.service}", body=body,
        scheduled_for=start, scheduled_until=end, components=components, pace=pace)

    def recorded(s: Session) -> None:
        record(s, SYSTEM, "statuspage.maintenance", target=occ.service, text=body,
               detail={"occurrence": occ.id, "statuspage_id": published.id})

    return Outcome(result={"statuspage_id": published.id}, apply=recorded)


def _same_time(published: str | None, at: datetime) -> bool:
    try:
        return published is not None and datetime.fromisoformat(published) == at
    except ValueError:
        return False


def _untouched(what: str, why: str, found: PublishedIncident | None) -> Outcome:
    return Outcome(result={what: False, "why": why, "statuspage_id": found.id if found else None})


def deliver_maintenance_moved(services: Services, ev: DrillMaintenanceMoved, _prepared, item_id: int) -> Outcome:
    """A postponed drill: its maintenance moves to the occurrence's window as it is now."""
    backend, pace = _backend_and_pace(services)
    occ, schedule = _occurrence(services, ev.occurrence_id)
    found = backend.find_incident(_maintenance_key(occ.id), pace=pace)
    if found is None:  # never published: it is created with the new window when it is
        return _untouched("moved", "no maintenance on the page", None)
    start, end = _window(occ, schedule)
    if found.update != marker(item_id):  # else this item moved it already; its answer was lost
        if found.status != "scheduled":
            return _untouched("moved", f"the maintenance is {found.status}", found)
        if _same_time(found.scheduled_for, start) and _same_time(found.scheduled_until, end):
            return _untouched("moved", "the maintenance is already at that time", found)
    body = _body(services, "maintenance_moved", occ, schedule)
    published = backend.reschedule_maintenance(found.id, start, end, body, pace=pace, marker=marker(item_id),
                                               current=found)

    def recorded(s: Session) -> None:
        record(s, SYSTEM, "statuspage.maintenance_moved", target=occ.service, text=body,
               detail={"occurrence": occ.id, "statuspage_id": published.id, "from": found.scheduled_for,
                       "to": start.isoformat()})

    return Outcome(result={"moved": True, "statuspage_id": published.id, "to": start.isoformat()}, apply=recorded)


def deliver_maintenance_cancelled(services: Services, ev: DrillMaintenanceCancelled, _prepared,
                                  item_id: int) -> Outcome:
    """A skipped drill: its maintenance is cancelled (completed, saying so)."""
    backend, pace = _backend_and_pace(services)
    occ, schedule = _occurrence(services, ev.occurrence_id)
    found = backend.find_incident(_maintenance_key(occ.id), pace=pace)
    if found is None:
        return _untouched("cancelled", "no maintenance on the page", None)
    if found.status == "completed" and found.update != marker(item_id):
        return _untouched("cancelled", "the maintenance is completed", found)
    body = _body(services, "maintenance_cancelled", occ, schedule)
    published = backend.cancel_maintenance(found.id, body, pace=pace, marker=marker(item_id), current=found)

    def recorded(s: Session) -> None:
        record(s, SYSTEM, "statuspage.maintenance_cancelled", target=occ.service, text=body,
               detail={"occurrence": occ.id, "statuspage_id": published.id})

    return Outcome(result={"cancelled": True, "statuspage_id": published.id}, apply=recorded)
