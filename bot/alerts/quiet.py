"""An incident whose alerts have all resolved: its channel is told and offered a Resolve
button. drbot never resolves an incident by itself: an alert that stopped firing is not a
recovery that someone has checked.

Alert intake calls ``tell_if_all_resolved`` at the end of each batch, in its transaction,
with the incidents whose alerts changed; the notice (``IncidentAlertsResolved``) is queued
once per time the last firing alert resolves (alerts that fire and resolve again make a
new one). The Resolve button calls ``resolve``: it needs ``incident_update``, like every
status change, and refuses while an alert of the incident fires again.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import record
from bot.changes import Refused
from bot.events import IncidentAlertsResolved
from bot.incidents import set_status
from bot.outbox.queue import enqueue
from bot.permissions import require
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Alert, Incident, IncidentStatus

INTAKE = Actor(id="alerts", name="alert intake", origin="http")


def firing(s: Session, incident_id: int) -> list[Alert]:
    return list(s.exec(select(Alert).where(Alert.incident_id == incident_id, Alert.status == "firing")
                       .order_by(col(Alert.id))))


def tell_if_all_resolved(services: Services, s: Session, incident_ids: Iterable[int]) -> list[int]:
    """Queue the notice for each open incident of ``incident_ids`` whose alerts have all
    resolved now; returns those incidents."""
    now = services.clock()
    told = []
    for incident_id in sorted(incident_ids):
        inc = s.get(Incident, incident_id)
        if inc is None or inc.status is IncidentStatus.RESOLVED:
            continue
        still = select(Alert.id).where(Alert.incident_id == incident_id, Alert.status == "firing").limit(1)
        if s.exec(still).first() is not None:
            continue  # the common case in a storm: one indexed lookup, not every alert of the incident
        alerts = list(s.exec(select(Alert).where(Alert.incident_id == incident_id)))
        if not alerts:
            continue
        ended = max(a.ends_at or a.last_seen_at for a in alerts).isoformat()
        if enqueue(s, IncidentAlertsResolved(incident_id=inc.id, at=now.isoformat(), ended=ended,
                                             alert_count=len(alerts)), now):
            record(s, INTAKE, "incident.alerts_resolved", target=inc.title, incident_id=inc.id,
                   detail={"alerts": len(alerts), "ended": ended})
            told.append(inc.id)
    return told


def resolve(services: Services, actor: Actor, incident_id: int) -> None:
    """The Resolve button of the notice: the incident is resolved by ``actor`` (the status
    page follows, per policy), unless it is resolved already or an alert fires again
    (raises Refused). One click wins, whoever else clicks at the same time."""
    require(services, actor, "incident_update")
    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
        if inc is None or inc.status is IncidentStatus.RESOLVED:
            raise Refused("incident_not_open", id=incident_id)
        again = firing(s, incident_id)
        if again:
            raise Refused("alerts_firing_again", id=incident_id, alerts=[a.summary for a in again])
        # the row is taken for this transaction; a concurrent click finds it resolved
        won = s.execute(update(Incident).where(Incident.id == incident_id, Incident.status != IncidentStatus.RESOLVED)
                        .values(last_update_at=services.clock()).execution_options(synchronize_session=False))
        if won.rowcount != 1:
            raise Refused("incident_not_open", id=incident_id)
        s.refresh(inc)
        set_status(services, s, actor, inc, "resolved", "")
    if services.outbox is not None:
        services.outbox.poke()
    return None
