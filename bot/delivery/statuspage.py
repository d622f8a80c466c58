"""Delivery to the public status page: open, update and resolve an incident's status-page
incident, and schedule the maintenance of an announced drill. Every HTTP request to the
page takes its turn through the shared pacing (``statuspage:PAGE``)."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from bot.audit import SYSTEM, record
from bot.events import DrillMaintenance, StatuspagePublish
from bot.incident_view import statuspage_body
from bot.incidents import IMPACT, services_of
from bot.outbox.kinds import Outcome
from bot.outbox.pacing import Limit, gate
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.drill_tables import DrillOccurrence
from bot.store.incident_tables import Incident


def _backend_and_pace(services: Services):
    sp = services.config.statuspage
    backend = services.backends[sp.source]
    pace = gate(services.engine, f"statuspage:{backend.options.page_id}", Limit(1.0 / sp.requests_per_second))
    return backend, pace


def deliver_publish(services: Services, ev: StatuspagePublish, _prepared, _item: int) -> Outcome:
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
        published = backend.resolve_incident(inc.statuspage_id, body=body, components=list(components), pace=pace)
    else:
        published = backend.update_incident(inc.statuspage_id, status=ev.status, body=body, components=components,
                                            pace=pace)

    def recorded(s: Session) -> None:
        row = s.get(Incident, inc.id)
        row.statuspage_id = row.statuspage_id or published.id
        row.last_update_at = services.clock()
        record(s, SYSTEM, "statuspage.published", target=inc.title, incident_id=inc.id, text=body,
               detail={"status": ev.status, "statuspage_id": row.statuspage_id, "components": components})

    return Outcome(result={"statuspage_id": published.id, "status": ev.status}, apply=recorded)


def deliver_maintenance(services: Services, ev: DrillMaintenance, _prepared, _item: int) -> Outcome:
    backend, pace = _backend_and_pace(services)
    with session_scope(services.engine) as s:
        occ = s.get(DrillOccurrence, ev.occurrence_id)
    svc = services.config.service(occ.service)
    schedule = svc.drill_schedule(occ.schedule) if svc else None
    mapping = getattr(backend.options, "components", {}) or {}
    components = [mapping[occ.service]] if occ.service in mapping else []
    body = services.renderer.text(Reply("maintenance_body", {"occ": occ, "schedule": schedule,
                                                             "service": occ.service})).strip()
    published = backend.create_maintenance(
        key=f"drbot-drill-{occ.id}", name=f"Planned disaster-recovery drill: {occ.service}", body=body,
        scheduled_for=occ.starts_at,
        scheduled_until=occ.starts_at + (schedule.duration if schedule else timedelta(hours=1)),
        components=components, pace=pace)

    def recorded(s: Session) -> None:
        record(s, SYSTEM, "statuspage.maintenance", target=occ.service, text=body,
               detail={"occurrence": occ.id, "statuspage_id": published.id})

    return Outcome(result={"statuspage_id": published.id}, apply=recorded)
