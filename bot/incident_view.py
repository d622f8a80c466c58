"""What an incident shows: its timeline (its own events and those of its services' change
requests while it was open), its runs, its alerts. Read in the caller's session."""
from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from bot.incident_command import roles_of
from bot.incident_followups import for_incident
from bot.incidents import for_channel, open_incidents, services_of
from bot.outbox.queue import parse
from bot.render import Reply
from bot.services import Services
from bot.store import read_scope
from bot.store.incident_tables import Alert, Incident, OutboxItem
from bot.store.models import ChangeRequest, Run, TimelineEvent
from bot.store.queries import regions_now


def timeline_of(s: Session, inc: Incident) -> list[TimelineEvent]:
    """The incident's own events and those of change requests of its services made
    while it was open (approvals, steps, runs)."""
    requests = select(ChangeRequest.id).where(col(ChangeRequest.service).in_(services_of(inc)),
                                             ChangeRequest.created_at >= inc.opened_at)
    if inc.resolved_at:
        requests = requests.where(ChangeRequest.created_at <= inc.resolved_at)
    return list(s.exec(select(TimelineEvent).where(
        (TimelineEvent.incident_id == inc.id) | col(TimelineEvent.request_id).in_(requests))
        .order_by(col(TimelineEvent.at), col(TimelineEvent.id))))


def failover_runs(s: Session, inc: Incident) -> list[Run]:
    """Runs of the incident's services between its opening and its end: the evidence."""
    stmt = select(Run).where(col(Run.service).in_(services_of(inc)), Run.started_at >= inc.opened_at)
    if inc.resolved_at:
        stmt = stmt.where(Run.started_at <= inc.resolved_at)
    return list(s.exec(stmt.order_by(col(Run.started_at))))


def regions_of(services: Services, s: Session, inc: Incident) -> dict[str, tuple[str, str]]:
    """Service -> (active, standby) now, as drbot recorded them, for the incident's services."""
    return regions_now(s, [svc for n in services_of(inc) if (svc := services.config.service(n)) is not None])


def moves_of(s: Session, runs: list[Run]) -> dict[int, tuple[str, str]]:
    """Request id -> (from, to) region of each run's request."""
    ids = [r.request_id for r in runs]
    return {r.id: (r.from_region, r.to_region)
            for r in s.exec(select(ChangeRequest).where(col(ChangeRequest.id).in_(ids)))} if ids else {}


def incident_context(services: Services, s: Session, inc: Incident) -> dict[str, Any]:
    runs = failover_runs(s, inc)
    return {"inc": inc, "services": services_of(inc), "timeline": timeline_of(s, inc),
            "runs": runs, "moves": moves_of(s, runs), "regions": regions_of(services, s, inc),
            "alerts": list(s.exec(select(Alert).where(Alert.incident_id == inc.id).order_by(col(Alert.id)))),
            "now": services.clock(), "command": services.command,
            "targets": {n: services.config.service(n) for n in services_of(inc)},
            "roles": roles_of(s, inc.id), "role_names": services.config.incidents.roles,
            "followups": for_incident(s, inc.id)}


def statuspage_body(services: Services, s: Session, inc: Incident, status: str, message: str) -> str:
    """The text a status-page update of ``inc`` publishes, rendered from its state now."""
    ctx = incident_context(services, s, inc) | {"status": status, "message": message}
    return services.renderer.text(Reply("statuspage_body", ctx)).strip()


def channel_view(services: Services, channel: str | None) -> tuple[dict | None, list[Incident]]:
    """The context of the channel's incident, or (None, the open incidents) when it has none."""
    with read_scope(services.engine) as s:
        inc = for_channel(s, channel)
        if inc is None:
            return None, open_incidents(s)
        return incident_context(services, s, inc), []


def context_of(services: Services, incident_id: int) -> dict:
    with read_scope(services.engine) as s:
        return incident_context(services, s, s.get(Incident, incident_id))


def preview_body(services: Services, item_id: int) -> str:
    """The text a status-page preview would publish now (the Edit form starts from it)."""
    with read_scope(services.engine) as s:
        item = s.get(OutboxItem, item_id)
        if item is None:
            return ""
        preview = parse(item)
        return statuspage_body(services, s, s.get(Incident, preview.incident_id), preview.status, preview.message)
