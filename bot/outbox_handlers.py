"""How each kind of outbox item is delivered. Handlers re-read the current state at
delivery time, so a late delivery shows what is true then, not what was true when queued."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from bot.audit import SYSTEM, record
from bot.digest import KIND as DIGEST, DigestHandler
from bot.incidents import IMPACT, services_of
from bot.outbox import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Alert, Incident, OutboxItem
from bot.store.models import ChangeRequest, Run, TimelineEvent
from bot.watch import KIND as READINESS_CHANGE, ReadinessChangeHandler
from integrations.base import IntegrationError


def _failed(e: IntegrationError) -> Outcome:
    retry_after = getattr(e, "retry_after", None)
    return Outcome(delivered=False, retry_after=retry_after, error=str(e), dead=not e.transient)


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


def incident_context(services: Services, s: Session, inc: Incident) -> dict[str, Any]:
    return {"inc": inc, "services": services_of(inc), "timeline": timeline_of(s, inc),
            "runs": failover_runs(s, inc), "alerts": list(s.exec(select(Alert).where(Alert.incident_id == inc.id)
                                                                 .order_by(col(Alert.id)))),
            "now": services.clock(), "command": services.command,
            "targets": {n: services.config.service(n) for n in services_of(inc)}}


class StatuspageHandler:
    """Open, update and resolve the status-page incident; paced per page."""

    def __init__(self, services: Services):
        self.services = services
        sp = services.config.statuspage
        self.backend = services.backends[sp.source] if sp else None
        self.rate = sp.requests_per_second if sp else 1.0
        # Paced per HTTP request, not per item: creating an incident looks its key up first
        # (up to three requests). A new process cannot know when the last one called the
        # page, so the first request also waits one interval.
        self._pace_lock = threading.Lock()
        self._last_request = time.monotonic()
        if self.backend is not None and hasattr(self.backend, "before_request"):
            self.backend.before_request = self._before_request

    def _before_request(self) -> None:
        with self._pace_lock:
            wait = self._last_request + self.interval() - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()

    def pace_key(self, payload: dict) -> str | None:
        return None  # every request is paced in _before_request

    def interval(self) -> float:
        return 1.0 / self.rate

    def deliver(self, services: Services, item: OutboxItem, payload: dict) -> Outcome:
        with session_scope(services.engine) as s:
            inc = s.get(Incident, payload["incident_id"])
            ctx = incident_context(services, s, inc)
        status = payload["status"]
        mapping = getattr(self.backend.options, "components", {}) or {}
        component = "operational" if status == "resolved" else IMPACT.get(inc.severity, "partial_outage")
        components = {mapping[n]: component for n in services_of(inc) if n in mapping}
        ctx |= {"status": status, "message": payload.get("message", "")}
        # an edited text (decide_preview) already holds the run sentences of the preview it was edited from
        body = payload.get("body") or services.renderer.text(Reply("statuspage_body", ctx)).strip()
        try:
            if not inc.statuspage_id:
                published = self.backend.create_incident(key=f"drbot-incident-{inc.id}", name=inc.title,
                                                          status=status, body=body, components=components)
            elif status == "resolved":
                published = self.backend.resolve_incident(inc.statuspage_id, body=body, components=list(components))
            else:
                published = self.backend.update_incident(inc.statuspage_id, status=status, body=body,
                                                         components=components)
        except IntegrationError as e:
            return _failed(e)
        with session_scope(services.engine) as s:
            row = s.get(Incident, inc.id)
            row.statuspage_id = row.statuspage_id or published.id
            row.last_update_at = services.clock()
            record(s, SYSTEM, "statuspage.published", target=inc.title, incident_id=inc.id, text=body,
                   detail={"status": status, "statuspage_id": row.statuspage_id, "components": components})
        return Outcome(result={"statuspage_id": published.id, "status": status})


class MaintenanceHandler(StatuspageHandler):
    """A scheduled maintenance on the status page for an announced drill's window."""

    def deliver(self, services: Services, item: OutboxItem, payload: dict) -> Outcome:
        from bot.drills import schedule_of
        from bot.store.drill_tables import DrillOccurrence

        with session_scope(services.engine) as s:
            occ = s.get(DrillOccurrence, payload["occurrence_id"])
        schedule = schedule_of(services, occ)
        mapping = getattr(self.backend.options, "components", {}) or {}
        components = [mapping[occ.service]] if occ.service in mapping else []
        ctx = {"occ": occ, "schedule": schedule, "service": occ.service}
        body = services.renderer.text(Reply("maintenance_body", ctx)).strip()
        try:
            published = self.backend.create_maintenance(
                key=f"drbot-drill-{occ.id}", name=f"Planned disaster-recovery drill: {occ.service}", body=body,
                scheduled_for=occ.starts_at, scheduled_until=occ.starts_at + (schedule.duration if schedule else
                                                                              timedelta(hours=1)),
                components=components)
        except IntegrationError as e:
            return _failed(e)
        with session_scope(services.engine) as s:
            record(s, SYSTEM, "statuspage.maintenance", target=occ.service, text=body,
                   detail={"occurrence": occ.id, "statuspage_id": published.id})
        return Outcome(result={"statuspage_id": published.id})


class SlackHandler:
    """Posts of incidents: the channel, alert digest, suggestion, timeline, postmortem."""

    def __init__(self, services: Services):
        self.services = services

    def pace_key(self, payload: dict) -> str | None:
        return f"slack:{payload.get('incident_id', 'other')}"

    def interval(self) -> float:
        return 1.0  # one message per channel per second

    def deliver(self, services: Services, item: OutboxItem, payload: dict) -> Outcome:
        m = services.messenger
        if item.kind == "slack.unknown_alert":
            channel = services.config.slack.channels.incidents
            if channel:
                m.post(channel, Reply("unknown_alert", payload, ephemeral=False))
            return Outcome(result={"posted": bool(channel)})
        with session_scope(services.engine) as s:
            inc = s.get(Incident, payload["incident_id"])
            ctx = incident_context(services, s, inc)
        if item.kind == "slack.incident_channel":
            return self._channel(services, inc, ctx)
        if not inc.channel_id:
            return Outcome(delivered=False, retry_after=2.0, error="the incident channel does not exist yet")
        if item.kind == "slack.alerts":
            reply = Reply("alerts_digest", ctx, ephemeral=False)
            if inc.alerts_ts:
                m.update(inc.channel_id, inc.alerts_ts, reply)
            else:
                ts = m.post(inc.channel_id, reply)
                with session_scope(services.engine) as s:
                    s.get(Incident, inc.id).alerts_ts = ts
        elif item.kind == "slack.reminder":
            m.post(inc.channel_id, Reply("incident_reminder", ctx | payload, ephemeral=False))
        elif item.kind == "slack.failover_suggestion":
            m.post(inc.channel_id, Reply("failover_suggestion", ctx | payload, ephemeral=False))
        elif item.kind == "slack.statuspage_preview":
            status = payload["status"]
            body = services.renderer.text(Reply("statuspage_body", ctx | {"status": status,
                                                                         "message": payload.get("message", "")}))
            m.post(inc.channel_id, Reply("statuspage_preview", ctx | {"item": item.id, "status": status,
                                                                     "body": body.strip()}, ephemeral=False))
        elif item.kind == "slack.resolved":
            return self._resolved(services, inc, ctx)
        return Outcome()

    def _channel(self, services: Services, inc: Incident, ctx: dict) -> Outcome:
        m = services.messenger
        cfg = services.config.incidents
        if not inc.channel_id:
            name = cfg.channel_name.format(date=inc.opened_at.strftime("%Y-%m-%d"), id=inc.id,
                                           service="-".join(services_of(inc))[:40] or "incident")
            inc.channel_id, inc.channel_name = m.create_channel(_channel_name(name))
            with session_scope(services.engine) as s:  # at once: a retry must not create another
                row = s.get(Incident, inc.id)
                row.channel_id, row.channel_name = inc.channel_id, inc.channel_name
        m.invite(inc.channel_id, [u for u in cfg.responders if u.startswith(("U", "W"))])
        report = services.status.report()
        wanted = set(services_of(inc))
        report.assessments[:] = [a for a in report.assessments if a.service in wanted]
        ts = m.post(inc.channel_id, Reply("incident_opened", ctx | {"report": report}, ephemeral=False))
        m.pin(inc.channel_id, ts)
        with session_scope(services.engine) as s:
            record(s, SYSTEM, "incident.channel", target=inc.channel_name, incident_id=inc.id,
                   detail={"channel": inc.channel_id})
        return Outcome(result={"channel": inc.channel_id, "name": inc.channel_name})

    def _resolved(self, services: Services, inc: Incident, ctx: dict) -> Outcome:
        m = services.messenger
        timeline = Reply("timeline", ctx, ephemeral=False)
        m.post(inc.channel_id, timeline)
        announcements = services.config.slack.channels.announcements
        if announcements:
            m.post(announcements, timeline)
        draft = services.renderer.text(Reply("postmortem", ctx))
        filename = f"postmortem-incident-{inc.id}.md"
        file_id = m.upload(inc.channel_id, filename, draft, f"Postmortem draft: {inc.title}")
        return Outcome(result={"postmortem": filename, "file": file_id})


class ArchiveHandler:
    """Stores the postmortem draft in the archive (S3); a separate item, so a slow archive
    never makes the Slack posts repeat."""

    def pace_key(self, payload: dict) -> str | None:
        return None

    def interval(self) -> float:
        return 0.0

    def deliver(self, services: Services, item: OutboxItem, payload: dict) -> Outcome:
        with session_scope(services.engine) as s:
            inc = s.get(Incident, payload["incident_id"])
            draft = services.renderer.text(Reply("postmortem", incident_context(services, s, inc)))
        try:
            obj = services.backends[services.config.archive.source].store(
                f"incidents/{inc.id}/postmortem-incident-{inc.id}.md", draft, content_type="text/markdown",
                metadata={"incident": str(inc.id)})
        except IntegrationError as e:
            return _failed(e)
        with session_scope(services.engine) as s:
            record(s, SYSTEM, "postmortem.archived", target=inc.title, incident_id=inc.id, text=obj.uri)
        return Outcome(result={"archived": obj.uri})


def _channel_name(name: str) -> str:
    """Slack channel names: lower case, no spaces, at most 80 characters."""
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
    return clean.strip("-")[:80] or "incident"


def handlers(services: Services) -> dict[str, Any]:
    slack = SlackHandler(services)
    out: dict[str, Any] = {k: slack for k in ("slack.incident_channel", "slack.alerts", "slack.failover_suggestion",
                                              "slack.statuspage_preview", "slack.resolved", "slack.unknown_alert",
                                              "slack.reminder")}
    out[READINESS_CHANGE] = ReadinessChangeHandler()  # "slack.readiness_change" (bot/watch.py)
    out[DIGEST] = DigestHandler()  # "slack.digest" (bot/digest.py)
    if services.config.statuspage is not None:
        out["statuspage.publish"] = StatuspageHandler(services)
        out["statuspage.maintenance"] = MaintenanceHandler(services)
    if services.config.archive is not None:
        out["archive.postmortem"] = ArchiveHandler()
    from bot.drills import POST, DrillPostHandler

    out[POST] = DrillPostHandler()
    return out

