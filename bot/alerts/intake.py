"""Store normalised alerts: deduplicate by fingerprint, group per service into its open
incident within the window, open incidents per policy, suggest a failover when distinct
signal classes fire for one service. Unknown services are kept and reported.

Exactly once on every replica: an alert row is inserted with INSERT ... ON CONFLICT
(fingerprint) DO NOTHING and then read FOR UPDATE, so the same notification arriving many
times at once (an Alertmanager HA pair) is one row whose repeats are all counted; a
service's open incident is claimed through a primary key (bot.incidents.open_or_join), so
alerts arriving together for one service open one incident and the others join it."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from bot.actor import Actor
from bot.alerts.normalise import NormalisedAlert
from bot.alerts.quiet import tell_if_all_resolved
from bot.audit import record
from bot.incidents import open_incident_of, open_or_join, services_of
from bot.events import FailoverSuggestion, IncidentAlerts, UnknownAlert
from bot.outbox.queue import enqueue
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Alert, Incident, IncidentStatus

ALERTS = Actor(id="alerts", name="alert intake", origin="http")
log = logging.getLogger(__name__)
RETRIED = frozenset({"40P01", "40001"})
"""PostgreSQL deadlock and serialization failure: two batches that touch the same alerts or
services in a different order; one is rolled back by the database and runs again."""


@dataclass
class IngestResult:
    new: int = 0
    duplicates: int = 0
    changed: int = 0
    unknown_services: list[str] = field(default_factory=list)
    incidents_opened: list[int] = field(default_factory=list)
    incidents_touched: set[int] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"new": self.new, "duplicates": self.duplicates, "changed": self.changed,
                "unknown_services": sorted(set(self.unknown_services)),
                "incidents_opened": self.incidents_opened, "incidents": sorted(self.incidents_touched)}


def ingest(services: Services, alerts: list[NormalisedAlert]) -> IngestResult:
    for attempt in range(1, 4):
        try:
            return _ingest(services, alerts)
        except DBAPIError as e:
            if attempt == 3 or getattr(e.orig, "sqlstate", None) not in RETRIED:
                raise
            log.warning("alert batch of %d rolled back by the database (%s), attempt %d of 3",
                        len(alerts), e.orig.sqlstate, attempt)
    raise AssertionError("unreachable")


def _ingest(services: Services, alerts: list[NormalisedAlert]) -> IngestResult:
    result = IngestResult()
    with session_scope(services.engine) as s:
        for a in alerts:
            _one(services, s, a, result)
        for incident_id in result.incidents_touched:
            # one alert digest per incident, coalesced: a pending digest covers later alerts too
            enqueue(s, IncidentAlerts(incident_id=incident_id), services.clock())
            _maybe_suggest_failover(services, s, incident_id)
        tell_if_all_resolved(services, s, result.incidents_touched)  # never resolves: a person does
    return result


def _one(services: Services, s: Session, a: NormalisedAlert, result: IngestResult) -> None:
    now = services.clock()
    row, new = _upsert(s, a, now)
    if not new and row.status == a.status:
        row.times_seen += 1
        row.last_seen_at = now
        result.duplicates += 1
        return
    if new:
        result.new += 1
    else:
        row.status, row.ends_at, row.last_seen_at = a.status, a.ends_at or now, now
        row.summary = a.summary or row.summary
        result.changed += 1
    if a.service is None:
        result.unknown_services.append(a.service_hint or "(none)")
        record(s, ALERTS, "alert.unknown_service", target=a.service_hint, text=a.summary,
               detail={"fingerprint": a.fingerprint, "source": a.source})
        channel = services.config.slack.channels.incidents
        if channel:
            enqueue(s, UnknownAlert(channel=channel, fingerprint=a.fingerprint, summary=a.summary,
                                    hint=a.service_hint, source=a.source, status=a.status), now)
        return
    incident = row.incident_id and s.get(Incident, row.incident_id)
    if not incident or incident.status is IncidentStatus.RESOLVED:
        incident = _incident_for(services, s, a, now, result)
    if incident is None:
        return
    row.incident_id = incident.id
    s.flush()
    record(s, ALERTS, f"alert.{a.status}", target=a.service, incident_id=incident.id, service=a.service,
           text=a.summary, detail={"fingerprint": a.fingerprint, "source": a.source, "severity": a.severity,
                                   "signal": a.signal, "region": a.region})
    result.incidents_touched.add(incident.id)


def _upsert(s: Session, a: NormalisedAlert, now: datetime) -> tuple[Alert, bool]:
    """(the alert row of this fingerprint, locked until the commit; whether it is new).
    A row inserted at this moment by another replica is waited for (PostgreSQL) and then
    found, never a duplicate-key error."""
    fresh = Alert(fingerprint=a.fingerprint, source=a.source, service=a.service, service_hint=a.service_hint,
                  region=a.region, severity=a.severity, signal=a.signal, status=a.status, summary=a.summary,
                  labels=json.dumps(a.labels), links=json.dumps(list(a.links)), starts_at=a.starts_at or now,
                  ends_at=a.ends_at, received_at=now, last_seen_at=now)
    values = {c.name: getattr(fresh, c.name) for c in Alert.__table__.columns if c.name != "id"}
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    table = Alert.__table__
    inserted = s.execute(dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=["fingerprint"])
                         .returning(table.c.id)).first() is not None
    row = s.exec(select(Alert).where(Alert.fingerprint == a.fingerprint).with_for_update()
                 .execution_options(populate_existing=True)).one()
    return row, inserted


def _incident_for(services: Services, s: Session, a: NormalisedAlert, now: datetime,
                  result: IngestResult) -> Incident | None:
    """The open incident of the service (alerts group into it), or a new one if policy says
    so; an incident opened for the service at this moment by another replica is joined."""
    inc = open_incident_of(s, a.service)
    if inc is not None:
        return inc
    if a.status != "firing" or not _opens(services, a):
        return None
    severity = services.config.incidents.severity_for.get(a.severity, "sev3")
    inc, opened = open_or_join(services, s, ALERTS, f"{a.service}: {a.summary}"[:200], severity, [a.service],
                               detected_at=a.starts_at or now)
    if opened:
        result.incidents_opened.append(inc.id)
    return inc


def _opens(services: Services, a: NormalisedAlert) -> bool:
    rank = {"info": 0, "warning": 1, "critical": 2}
    return any((rule.service in (None, a.service)) and rank[a.severity] >= rank[rule.severity]
               for rule in services.config.incidents.open_on)


def _maybe_suggest_failover(services: Services, s: Session, incident_id: int) -> None:
    inc = s.get(Incident, incident_id)
    if inc.failover_suggested:
        return
    need = services.config.incidents.suggest_failover_signals
    firing = s.exec(select(Alert).where(Alert.incident_id == incident_id, Alert.status == "firing")).all()
    for service in services_of(inc):
        signals = sorted({a.signal for a in firing if a.service == service and a.signal != "other"})
        if len(signals) >= need:
            inc.failover_suggested = True
            record(s, ALERTS, "failover.suggested", target=service, incident_id=inc.id, service=service,
                   detail={"signals": signals})
            enqueue(s, FailoverSuggestion(incident_id=inc.id, service=service, signals=signals), services.clock())
            return

