"""Delivery of an incident's posts: its channel (created, responders invited, readiness
pinned), the alert digest (one message updated in place), the failover suggestion, the
status-page preview, the reminder, the timeline and postmortem at resolve, and alerts of
unknown services."""
from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from bot.audit import SYSTEM, record
from bot.events import (
    CommanderMissing, FailoverSuggestion, IncidentAlerts, IncidentChannel, IncidentReminder, IncidentResolved,
    IncidentSummary, OpsUpdate, StatuspageLinked, StatuspagePreview, UnknownAlert,
)
from bot.incident_view import incident_context, statuspage_body
from bot.incidents import services_of
from bot.messenger import DeliveryFailed
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Alert, Incident
from bot.store.models import aware

RECENT = 20
TOPIC_LIMIT = 250
"""Slack refuses a longer channel topic (conversations.setTopic: too_long)."""
"""Alerts listed in the digest, the newest (the others are counted)."""


def channel_of(inc: Incident) -> str:
    """The incident's channel: a post there waits (retried shortly) until the channel exists
    (it is created by an earlier item of the incident's stream)."""
    if not inc.channel_id:
        raise DeliveryFailed("the incident channel does not exist yet", transient=True, retry_after=2.0)
    return inc.channel_id


def _incident(services: Services, incident_id: int, in_channel: bool = True) -> tuple[Incident, dict]:
    """The incident and its context. ``in_channel``: a post in its channel, which is created
    by an item earlier in the same stream; until then the delivery is retried shortly."""
    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
        if in_channel:
            channel_of(inc)
        return inc, incident_context(services, s, inc)


def deliver_channel(services: Services, ev: IncidentChannel, _prepared, _item: int) -> Outcome:
    m = services.messenger
    cfg = services.config.incidents
    inc, ctx = _incident(services, ev.incident_id, in_channel=False)
    if not inc.channel_id:
        name = cfg.channel_name.format(date=inc.opened_at.strftime("%Y-%m-%d"), id=inc.id,
                                       service="-".join(services_of(inc))[:40] or "incident")
        inc.channel_id, inc.channel_name = m.create_channel(_channel_name(name), private=cfg.private_channels)
        with session_scope(services.engine) as s:  # at once: a retry must not create another
            row = s.get(Incident, inc.id)
            row.channel_id, row.channel_name = inc.channel_id, inc.channel_name
    m.invite(inc.channel_id, [u for u in cfg.responders if u.startswith(("U", "W"))])
    ts = m.post(inc.channel_id, _summary(services, inc, ctx))
    m.pin(inc.channel_id, ts)
    m.set_topic(inc.channel_id, _topic(services, ctx))

    def recorded(s: Session) -> None:
        s.get(Incident, inc.id).summary_ts = ts  # updated in place when the severity or a role changes
        record(s, SYSTEM, "incident.channel", target=inc.channel_name, incident_id=inc.id,
               detail={"channel": inc.channel_id})

    return Outcome(result={"channel": inc.channel_id, "name": inc.channel_name}, apply=recorded)


def _digest(services: Services, incident_id: int) -> tuple[Incident, dict]:
    """The digest's context: its alerts counted by the database and the ``RECENT`` newest
    read, whatever the number of alerts (not the incident's whole timeline and alerts)."""
    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
        channel_of(inc)
        counts = dict(s.exec(select(Alert.status, func.count()).where(Alert.incident_id == incident_id)
                             .group_by(Alert.status)).all())
        recent = s.exec(select(Alert).where(Alert.incident_id == incident_id)
                        .order_by(col(Alert.id).desc()).limit(RECENT)).all()
    return inc, {"inc": inc, "alerts": list(reversed(recent)), "firing_count": counts.get("firing", 0),
                 "alert_count": sum(counts.values()), "now": services.clock()}


def deliver_alerts(services: Services, ev: IncidentAlerts, _prepared, _item: int) -> Outcome:
    inc, ctx = _digest(services, ev.incident_id)
    reply = Reply("alerts_digest", ctx, ephemeral=False)
    if inc.alerts_ts:
        services.messenger.update(inc.channel_id, inc.alerts_ts, reply)
        return Outcome()
    ts = services.messenger.post(inc.channel_id, reply)

    def saved(s: Session) -> None:
        s.get(Incident, inc.id).alerts_ts = ts

    return Outcome(result={"ts": ts}, apply=saved)


def _summary(services: Services, inc: Incident, ctx: dict, updated: bool = False) -> Reply:
    """The pinned summary: severity, roles (with Claim buttons) and the services' readiness."""
    report = services.status.report()
    wanted = set(services_of(inc))
    report.assessments[:] = [a for a in report.assessments if a.service in wanted]
    return Reply("incident_opened", ctx | {"report": report, "updated": updated}, ephemeral=False)


def _topic(services: Services, ctx: dict) -> str:
    return services.renderer.text(Reply("incident_topic", ctx)).strip()[:TOPIC_LIMIT]


def deliver_summary(services: Services, ev: IncidentSummary, _prepared, _item: int) -> Outcome:
    """After a severity or role change: the pinned summary updated in place, the topic set."""
    inc, ctx = _incident(services, ev.incident_id)
    if inc.summary_ts:  # incidents opened before summaries were kept have only their topic updated
        services.messenger.update(inc.channel_id, inc.summary_ts, _summary(services, inc, ctx, updated=True))
    topic = _topic(services, ctx)
    services.messenger.set_topic(inc.channel_id, topic)
    return Outcome(result={"topic": topic})


def deliver_ops(services: Services, ev: OpsUpdate, _prepared, _item: int) -> Outcome:
    """The ops channel hears of the incident: its state now, readiness, RTO and RPO so far."""
    inc, ctx = _incident(services, ev.incident_id, in_channel=False)
    summary = _summary(services, inc, ctx)
    since = (services.clock() - aware(inc.detected_at or inc.opened_at)).total_seconds()
    ts = services.messenger.post(ev.channel, Reply("ops_update", summary.context | {
        "what": ev.what, "by": ev.by, "elapsed_s": since}, ephemeral=False))
    return Outcome(result={"ts": ts})


def deliver_statuspage_link(services: Services, ev: StatuspageLinked, _prepared, _item: int) -> Outcome:
    return _post_in_channel(services, ev.incident_id, "statuspage_linked", {"link": ev.link})


def deliver_commander_missing(services: Services, ev: CommanderMissing, _prepared, _item: int) -> Outcome:
    return _post_in_channel(services, ev.incident_id, "commander_missing", ev.model_dump())


def _post_in_channel(services: Services, incident_id: int, template: str, extra: dict) -> Outcome:
    inc, ctx = _incident(services, incident_id)
    ts = services.messenger.post(inc.channel_id, Reply(template, ctx | extra, ephemeral=False))
    return Outcome(result={"ts": ts})


def deliver_suggestion(services: Services, ev: FailoverSuggestion, _prepared, _item: int) -> Outcome:
    return _post_in_channel(services, ev.incident_id, "failover_suggestion", ev.model_dump())


def deliver_reminder(services: Services, ev: IncidentReminder, _prepared, _item: int) -> Outcome:
    return _post_in_channel(services, ev.incident_id, "incident_reminder", ev.model_dump())


def deliver_preview(services: Services, ev: StatuspagePreview, _prepared, item_id: int) -> Outcome:
    """The preview's buttons name this item: Publish or Skip decides it (bot.incidents)."""
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
        channel_of(inc)
        ctx = incident_context(services, s, inc)
        body = statuspage_body(services, s, inc, ev.status, ev.message)
    ts = services.messenger.post(inc.channel_id, Reply("statuspage_preview", ctx | {
        "item": item_id, "status": ev.status, "body": body}, ephemeral=False))
    return Outcome(result={"ts": ts})


def deliver_resolved(services: Services, ev: IncidentResolved, _prepared, _item: int) -> Outcome:
    m = services.messenger
    inc, ctx = _incident(services, ev.incident_id)
    timeline = Reply("timeline", ctx, ephemeral=False)
    m.post(inc.channel_id, timeline)
    announcements = services.config.slack.channels.announcements
    if announcements:
        m.post(announcements, timeline)
    draft = services.renderer.text(Reply("postmortem", ctx))
    filename = f"postmortem-incident-{inc.id}.md"
    file_id = m.upload(inc.channel_id, filename, draft, f"Postmortem draft: {inc.title}")
    return Outcome(result={"postmortem": filename, "file": file_id})


def deliver_unknown(services: Services, ev: UnknownAlert, _prepared, _item: int) -> Outcome:
    ts = services.messenger.post(ev.channel, Reply("unknown_alert", ev.model_dump(), ephemeral=False))
    return Outcome(result={"ts": ts})


def _channel_name(name: str) -> str:
    """Slack channel names: lower case, no spaces, at most 80 characters."""
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
    return clean.strip("-")[:80] or "incident"
