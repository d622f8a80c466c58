"""Store normalised alerts, a batch at a time: deduplicate by fingerprint, group per service
into its open incident, open incidents per policy, suggest a failover when distinct signal
classes fire for one service. Unknown services are kept and reported.

The cost of a batch does not grow with what is stored already: one fingerprint lookup for
the batch (read FOR UPDATE), new alerts inserted with ``INSERT ... ON CONFLICT
(fingerprint) DO NOTHING`` carrying their incident, changed alerts updated in one
executemany; per incident touched, one timeline event (and audit entry) for the batch, one
coalesced digest, one "all resolved?" and one failover-suggestion check, each an indexed
lookup (``ix_alert_incident_status_signal``), never a read of every alert of the incident.

Exactly once on every replica: a fingerprint inserted at this moment by another
transaction is waited for (PostgreSQL) and then applied as the existing row it is; a
service's open incident is claimed through a primary key (bot.incidents.open_or_join), so
alerts arriving together for one service open one incident and the others join it."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects import sqlite
from sqlmodel import Session, col, select

from bot.alerts import drill_noise
from bot.alerts.normalise import NormalisedAlert
from bot.alerts.quiet import INTAKE as ALERTS, tell_if_all_resolved
from bot.audit import record
from bot.events import FailoverSuggestion, IncidentAlerts, UnknownAlert
from bot.incidents import open_incident_of, open_or_join, services_of
from bot.outbox.queue import enqueue
from bot.services import Services
from bot.store import session_scope
from bot.store.db import again_if_aborted
from bot.store.incident_tables import Alert, Incident, IncidentStatus

CHUNK = 500
"""Fingerprints per lookup or insert statement (SQLite's bound-parameter limit)."""
SHOWN = 5
"""Summaries kept in the text of a batch's timeline event (the rest are counted)."""
FIXED_SIGNALS = ("health", "lag", "synthetic", "slo")
_PG_TYPES = {"times_seen": "integer", "incident_id": "integer", "inbox_id": "integer", "starts_at": "timestamptz", "ends_at": "timestamptz",
             "received_at": "timestamptz", "last_seen_at": "timestamptz"}
"""The type of each alert column not text, for the PostgreSQL bulk insert."""


@dataclass
class IngestResult:
    new: int = 0
    duplicates: int = 0
    changed: int = 0
    unknown_services: list[str] = field(default_factory=list)
    drill_noise: list[str] = field(default_factory=list)
    """Fingerprints of alerts taken as drill noise (``alerts.drill_noise_window``)."""
    incidents_opened: list[int] = field(default_factory=list)
    incidents_touched: set[int] = field(default_factory=set)
    queued: bool = False
    """Whether something new waits in the outbox (not only a pending digest updated)."""

    def as_dict(self) -> dict:
        return {"new": self.new, "duplicates": self.duplicates, "changed": self.changed,
                "unknown_services": sorted(set(self.unknown_services)),
                "incidents_opened": self.incidents_opened, "incidents": sorted(self.incidents_touched)}


@dataclass
class _Seen:
    """One fingerprint of the batch: its occurrences, in order, against its stored row."""

    occurrences: list[NormalisedAlert]
    sequence: list[int | None]
    """The inbox id of each occurrence (None: not from the inbox)."""
    row: Alert | None = None
    events: list[NormalisedAlert] = field(default_factory=list)
    """Occurrences that are news: the first of a new alert, or a change of status."""
    repeats: int = 0
    incident_id: int | None = None
    """The open incident its news joins (None: none, e.g. a warning that opens nothing)."""

    @property
    def last(self) -> NormalisedAlert:
        return self.occurrences[-1]

    @property
    def newest(self) -> int | None:
        """The newest notification applied to the alert once this batch is stored."""
        known = [n for n in (self.row.inbox_id if self.row is not None else None, *self.sequence) if n is not None]
        return max(known, default=None)

    def weigh(self) -> None:
        """News and repeats: an occurrence of the status the alert has, or from a notification
        older than the newest applied (another replica took the newer one first), is a repeat."""
        status = self.row.status if self.row is not None else None
        applied = self.row.inbox_id if self.row is not None else None
        self.events, self.repeats = [], 0
        for a, n in zip(self.occurrences, self.sequence):
            if a.status == status or (n is not None and applied is not None and n < applied):
                self.repeats += 1
                continue
            self.events.append(a)
            status = a.status


def ingest(services: Services, alerts: list[NormalisedAlert]) -> IngestResult:
    """Store ``alerts`` in one transaction of their own (Slack alert channels, tests); run
    again if the database aborts it (two batches touching the same alerts or services in a
    different order)."""
    def once() -> IngestResult:
        with session_scope(services.engine) as s:
            return store(services, s, alerts)
    return again_if_aborted(f"alert batch of {len(alerts)}", once)


def store(services: Services, s: Session, alerts: list[NormalisedAlert],
          sequence: list[int | None] | None = None) -> IngestResult:
    """Store a batch in the caller's transaction (``bot.alerts.drain`` or ``ingest``);
    ``sequence``: the inbox id each alert came in (in ascending order), if from the inbox."""
    result = IngestResult()
    seen: dict[str, _Seen] = {}
    for a, n in zip(alerts, sequence or [None] * len(alerts)):
        one = seen.setdefault(a.fingerprint, _Seen([], []))
        one.occurrences.append(a)
        one.sequence.append(n)
    pending = sorted(seen)
    for _ in range(3):  # again only for fingerprints another replica inserted meanwhile
        pending = _apply(services, s, {fp: seen[fp] for fp in pending}, result)
        if not pending:
            break
    else:
        raise RuntimeError(f"alerts {pending[:3]} kept being inserted by another transaction")
    # the incidents touched, read at once (the resolved check below finds them in the session)
    touched = list(s.exec(select(Incident).where(col(Incident.id).in_(sorted(result.incidents_touched)))
                          .order_by(col(Incident.id)))) if result.incidents_touched else []
    for inc in touched:
        # one alert digest per incident, coalesced: a pending digest covers later alerts too
        result.queued |= enqueue(s, IncidentAlerts(incident_id=inc.id), services.clock())
        result.queued |= _maybe_suggest_failover(services, s, inc)
    result.queued |= bool(tell_if_all_resolved(services, s, [inc.id for inc in touched]))  # a person resolves
    result.queued |= bool(result.incidents_opened or result.unknown_services)
    return result


def _apply(services: Services, s: Session, batch: dict[str, _Seen], result: IngestResult) -> list[str]:
    """Store ``batch``; returns the fingerprints found inserted by another transaction."""
    now = services.clock()
    rows = _lookup(s, list(batch))
    for fp, one in batch.items():
        one.row = rows.get(fp)
        one.weigh()
    _assign_incidents(services, s, batch, result)
    fresh = {fp: one for fp, one in batch.items() if one.row is None}
    inserted = _insert(s, fresh, now)
    lost = [fp for fp in fresh if fp not in inserted]
    for fp in lost:
        del fresh[fp]
    _update(s, [one for one in batch.values() if one.row is not None], now)
    kept = {fp: one for fp, one in batch.items() if fp not in lost}
    _count(kept.values(), result)
    _record(services, s, kept.values(), result, now)
    return lost


def _lookup(s: Session, fingerprints: list[str]) -> dict[str, Alert]:
    """The stored rows of ``fingerprints``, locked until the commit (PostgreSQL), in order."""
    found: dict[str, Alert] = {}
    for i in range(0, len(fingerprints), CHUNK):
        part = fingerprints[i:i + CHUNK]
        stmt = select(Alert).where(col(Alert.fingerprint).in_(part)).order_by(col(Alert.fingerprint))
        for row in s.exec(stmt.with_for_update().execution_options(populate_existing=True)):
            found[row.fingerprint] = row
    return found


def _assign_incidents(services: Services, s: Session, batch: dict[str, _Seen], result: IngestResult) -> None:
    """The incident of each alert with news: its own while open, else its service's open
    one, else one opened for it (a firing alert that opens per policy), once per service."""
    kept = {r.incident_id for r in (one.row for one in batch.values()) if r is not None and r.incident_id}
    # read at once and held here: open_incident_of below then finds them in the session
    held = s.exec(select(Incident).where(col(Incident.id).in_(sorted(kept)))).all() if kept else []
    open_ids = {inc.id for inc in held if inc.status is not IncidentStatus.RESOLVED}
    by_service: dict[str, int | None] = {}
    drills: dict[str, object] = {}
    for fp in sorted(batch):
        one = batch[fp]
        a = one.last
        one.incident_id = None
        if not one.events or a.service is None:
            continue
        if one.row is not None and one.row.incident_id in open_ids:
            one.incident_id = one.row.incident_id
            continue
        if a.service not in by_service:
            inc = open_incident_of(s, a.service)
            by_service[a.service] = inc.id if inc is not None else None
        if by_service[a.service] is None:
            if a.service not in drills:
                drills[a.service] = drill_noise.drill_of(services, s, a.service, services.clock())
            drill = drills[a.service]
            if drill is not None:  # expected while the service is drilled: no incident, on the drill's timeline
                drill_noise.mark(s, drill, one.events)
                result.drill_noise.append(a.fingerprint)
                continue
            opener = next((e for e in one.events if e.status == "firing" and _opens(services, e)), None)
            if opener is not None:
                by_service[a.service] = _open_for(services, s, opener, result)
        if by_service[a.service] is not None:
            one.incident_id = by_service[a.service]
            open_ids.add(one.incident_id)


def _open_for(services: Services, s: Session, a: NormalisedAlert, result: IngestResult) -> int:
    severity = services.config.incidents.severity_for.get(a.severity, "sev3")
    inc, opened = open_or_join(services, s, ALERTS, f"{a.service}: {a.summary}"[:200], severity, [a.service],
                               detected_at=a.starts_at or services.clock())
    if opened:
        result.incidents_opened.append(inc.id)
    return inc.id


def _opens(services: Services, a: NormalisedAlert) -> bool:
    rank = {"info": 0, "warning": 1, "critical": 2}
    return any((rule.service in (None, a.service)) and rank[a.severity] >= rank[rule.severity]
               for rule in services.config.incidents.open_on)


def _insert(s: Session, fresh: dict[str, _Seen], now: datetime) -> set[str]:
    """Insert the new alerts with their incident; returns the fingerprints inserted (the
    others were inserted by another transaction meanwhile)."""
    if not fresh:
        return set()
    values = [_values(one, now) for one in fresh.values()]
    if s.get_bind().dialect.name != "postgresql":
        # SQLite: this transaction has held the one write lock since its lookup (BEGIN
        # IMMEDIATE), so nobody else can have inserted them; one executemany
        s.execute(sqlite.insert(Alert.__table__).on_conflict_do_nothing(index_elements=["fingerprint"]), values)
        return set(fresh)
    # PostgreSQL: one statement, the rows as one JSON parameter, whatever their number
    columns = ", ".join(values[0])
    fields = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in values[0])
    stmt = text(f"INSERT INTO {Alert.__tablename__} ({columns}) SELECT {columns} FROM json_to_recordset("
                f"CAST(:rows AS json)) AS r({fields}) ON CONFLICT (fingerprint) DO NOTHING RETURNING fingerprint")
    return set(s.execute(stmt, {"rows": json.dumps(values, default=datetime.isoformat)}).scalars())


def _values(one: _Seen, now: datetime) -> dict:
    a, first = one.last, one.occurrences[0]
    return {"fingerprint": a.fingerprint, "source": a.source, "service": a.service, "service_hint": a.service_hint,
            "region": a.region, "severity": a.severity, "signal": a.signal, "status": a.status,
            "summary": a.summary, "labels": json.dumps(a.labels), "links": json.dumps(list(a.links)),
            "starts_at": first.starts_at or now, "ends_at": _ended(a, now),
            "received_at": now, "last_seen_at": now, "times_seen": 1 + one.repeats, "incident_id": one.incident_id,
            "inbox_id": one.newest}


def _ended(a: NormalisedAlert, now: datetime) -> datetime | None:
    return a.ends_at or now if a.status == "resolved" else None


def _update(s: Session, stored: list[_Seen], now: datetime) -> None:
    """Changed alerts and repeats, each kind in one executemany."""
    table = Alert.__table__
    changed = [{"_id": one.row.id, "_status": one.last.status, "_ends": _ended(one.last, now), "_seen": now,
                "_summary": one.last.summary or one.row.summary, "_repeats": one.repeats,
                "_incident": one.incident_id or one.row.incident_id, "_inbox": one.newest}
               for one in stored if one.events]
    repeated = [{"_id": one.row.id, "_repeats": one.repeats, "_seen": now, "_inbox": one.newest}
                for one in stored if not one.events and one.repeats]
    if changed:
        s.execute(update(table).where(table.c.id == bindparam("_id")).values(
            status=bindparam("_status"), ends_at=bindparam("_ends"), last_seen_at=bindparam("_seen"),
            summary=bindparam("_summary"), times_seen=table.c.times_seen + bindparam("_repeats"),
            incident_id=bindparam("_incident"), inbox_id=bindparam("_inbox"))
            .execution_options(synchronize_session=False), changed)
    if repeated:
        s.execute(update(table).where(table.c.id == bindparam("_id")).values(
            times_seen=table.c.times_seen + bindparam("_repeats"), last_seen_at=bindparam("_seen"),
            inbox_id=bindparam("_inbox")).execution_options(synchronize_session=False), repeated)


def _count(batch, result: IngestResult) -> None:
    for one in batch:
        result.duplicates += one.repeats
        result.new += one.row is None
        result.changed += len(one.events) - (one.row is None)


def _record(services: Services, s: Session, batch, result: IngestResult, now: datetime) -> None:
    """Per incident, one timeline event of what its alerts did in this batch; per alert of
    an unknown service with news, one audit entry and one post."""
    per_incident: dict[int, list[NormalisedAlert]] = {}
    for one in batch:
        a = one.last
        if not one.events:
            continue
        if a.service is None:
            result.unknown_services.append(a.service_hint or "(none)")
            record(s, ALERTS, "alert.unknown_service", target=a.service_hint, text=a.summary,
                   detail={"fingerprint": a.fingerprint, "source": a.source})
            channel = services.config.slack.channels.incidents
            if channel:
                enqueue(s, UnknownAlert(channel=channel, fingerprint=a.fingerprint, summary=a.summary,
                                        hint=a.service_hint, source=a.source, status=a.status), now)
        elif one.incident_id is not None:
            per_incident.setdefault(one.incident_id, []).extend(one.events)
    for incident_id, events in sorted(per_incident.items()):
        _timeline(s, incident_id, events)
        result.incidents_touched.add(incident_id)


def _timeline(s: Session, incident_id: int, events: list[NormalisedAlert]) -> None:
    """``alert.firing`` / ``alert.resolved`` (``alert.changed`` when both): one alert's own
    fields, or, for several, their counts and the first ``SHOWN`` distinct summaries."""
    statuses = Counter(a.status for a in events)
    kind = f"alert.{events[0].status}" if len(statuses) == 1 else "alert.changed"
    services = sorted({a.service for a in events})
    service = services[0] if len(services) == 1 else ""
    if len(events) == 1:
        a = events[0]
        record(s, ALERTS, kind, target=a.service, incident_id=incident_id, service=a.service, text=a.summary,
               detail={"fingerprint": a.fingerprint, "source": a.source, "severity": a.severity,
                       "signal": a.signal, "region": a.region})
        return
    summaries = list(dict.fromkeys(a.summary for a in events))
    detail = {"alerts": len(events), "firing": statuses["firing"], "resolved": statuses["resolved"],
              "more": max(len(summaries) - SHOWN, 0), "fingerprints": [a.fingerprint for a in events][:50]}
    for name in ("source", "severity", "signal", "region"):
        detail[name] = ", ".join(sorted({getattr(a, name) for a in events if getattr(a, name)}))
    record(s, ALERTS, kind, target=",".join(services), incident_id=incident_id, service=service,
           text="; ".join(summaries[:SHOWN]), detail=detail)


def _signals(services: Services) -> list[str]:
    return sorted(set(FIXED_SIGNALS) | set(services.config.alerts.signals) - {"other"})


def _maybe_suggest_failover(services: Services, s: Session, inc: Incident) -> bool:
    """One indexed lookup per service and signal class: does one of its alerts fire?
    Whether a suggestion was queued."""
    if inc.failover_suggested:
        return False
    need = services.config.incidents.suggest_failover_signals
    for service in services_of(inc):
        signals = [sig for sig in _signals(services) if s.exec(select(Alert.id).where(
            Alert.incident_id == inc.id, Alert.status == "firing", Alert.signal == sig,
            Alert.service == service).limit(1)).first() is not None]
        if len(signals) >= need:
            inc.failover_suggested = True
            record(s, ALERTS, "failover.suggested", target=service, incident_id=inc.id, service=service,
                   detail={"signals": signals})
            return enqueue(s, FailoverSuggestion(incident_id=inc.id, service=service, signals=signals),
                           services.clock())
    return False
