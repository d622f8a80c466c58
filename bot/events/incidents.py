"""Events of incidents: their channel, posts, status page, archive, follow-ups, ops channel and alert batches."""
from __future__ import annotations

from typing import Any, ClassVar

from bot.events.base import Event, slack_pace


# -- incidents ----------------------------------------------------------------------------

class IncidentEvent(Event):
    """Posts about one incident, in its channel, in order."""

    incident_id: int

    def stream(self) -> str:
        return f"slack:incident:{self.incident_id}"

    def pace(self) -> str | None:
        return f"slack:incident:{self.incident_id}"


class IncidentChannel(IncidentEvent):
    KIND: ClassVar[str] = "incident.channel"

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:channel"


class IncidentAlerts(IncidentEvent):
    """The alert digest of the incident, one message updated in place."""

    KIND: ClassVar[str] = "incident.alerts"

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.incident_id}"


class FailoverSuggestion(IncidentEvent):
    KIND: ClassVar[str] = "incident.failover_suggestion"
    service: str
    signals: list[str]

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:suggest"


class StatuspagePreview(IncidentEvent):
    """A status-page update waiting for a person's Publish, Edit or Skip."""

    KIND: ClassVar[str] = "incident.statuspage_preview"
    status: str
    message: str = ""


class IncidentReminder(IncidentEvent):
    KIND: ClassVar[str] = "incident.reminder"
    quiet_for: float
    at: str

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:remind:{self.at}"


class IncidentSummary(IncidentEvent):
    """The pinned summary (severity, roles, readiness) updated in place and the channel's
    topic, after a severity or role change: rendered from the incident's state at delivery."""

    KIND: ClassVar[str] = "incident.summary"

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.incident_id}"


class CommanderMissing(IncidentEvent):
    """The incident has had no commander for ``incidents.commander_within``: said once."""

    KIND: ClassVar[str] = "incident.commander_missing"
    after: float
    """Seconds since the incident opened, when it was called out."""

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:commander_missing"


class IncidentResolved(IncidentEvent):
    """The timeline in the channel (and announcements) and the postmortem draft."""

    KIND: ClassVar[str] = "incident.resolved"

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:resolved"


class UnknownAlert(Event):
    KIND: ClassVar[str] = "alert.unknown_service"
    channel: str
    fingerprint: str
    summary: str
    hint: str | None = None
    source: str
    status: str

    def stream(self) -> str:
        return "slack:unknown"

    def pace(self) -> str | None:
        return slack_pace(self.channel)

    def key(self) -> str | None:
        return f"unknown:{self.fingerprint}:{self.status}"


class StatuspagePublish(Event):
    """Open, update or resolve the status-page incident. ``body``: text a person edited,
    published as written; else the body is rendered at delivery."""

    KIND: ClassVar[str] = "statuspage.publish"
    incident_id: int
    status: str
    message: str = ""
    body: str | None = None
    preview: int | None = None
    """The preview item this publishes, when a person decided it."""

    def stream(self) -> str:
        return f"statuspage:incident:{self.incident_id}"

    def key(self) -> str | None:
        return f"publish-of-{self.preview}" if self.preview is not None else None


class ArchivePostmortem(Event):
    KIND: ClassVar[str] = "archive.postmortem"
    incident_id: int

    def stream(self) -> str:
        return f"archive:incident:{self.incident_id}"

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:archive"


class OpsUpdate(Event):
    """What the ops channel hears of an incident: opened, a status, a severity or a new
    commander, rendered with the incident's state at delivery."""

    KIND: ClassVar[str] = "incident.ops_update"
    incident_id: int
    channel: str
    what: str
    """'opened', 'status', 'severity' or 'commander'."""
    by: str = ""
    at: str

    def stream(self) -> str:
        return f"slack:ops:{self.channel}"

    def pace(self) -> str | None:
        return slack_pace(self.channel)

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:ops:{self.what}:{self.at}"


class StatuspageLinked(IncidentEvent):
    """The public status-page incident exists: its link, posted once in the incident channel."""

    KIND: ClassVar[str] = "incident.statuspage_linked"
    link: str

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:statuspage_link"


class FollowupIssue(Event):
    """A follow-up made an issue in the tracker (Jira), linked back to the incident."""

    KIND: ClassVar[str] = "followup.issue"
    followup_id: int

    def stream(self) -> str:
        return f"tracker:followup:{self.followup_id}"

    def pace(self) -> str | None:
        return "tracker"

    def key(self) -> str | None:
        return f"followup:{self.followup_id}:issue"


class ReviewReminder(IncidentEvent):
    """The postmortem review is due (``incidents.review_within`` after resolve): said once."""

    KIND: ClassVar[str] = "incident.review_reminder"
    open_followups: int

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:review"


class FollowupsOverdue(IncidentEvent):
    """Overdue follow-ups of one incident, their owners mentioned; again after
    ``incidents.followups.remind_overdue_every``."""

    KIND: ClassVar[str] = "incident.followups_overdue"
    followup_ids: list[int]
    at: str

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:overdue:{self.at}"


class IncidentAlertsResolved(IncidentEvent):
    """Every alert of the incident has resolved: its channel is told and offered a Resolve
    button (the incident stays open until a person resolves it). ``at``: when drbot saw the
    last one resolve (alerts that fire and resolve again make a new notice); ``ended``: when
    the last one ended, as its source said."""

    KIND: ClassVar[str] = "incident.alerts_resolved"
    at: str
    ended: str
    alert_count: int

    def key(self) -> str | None:
        return f"incident:{self.incident_id}:alerts_resolved:{self.at}"


# -- alert storms ---------------------------------------------------------------------------

class AlertBatch(Event):
    """One part of a large alert notification, ingested by the worker in its own
    transaction (``bot.alerts.batches``); the parts of all notifications share one stream,
    so they are ingested in the order they arrived."""

    KIND: ClassVar[str] = "alerts.ingest"
    STREAM: ClassVar[str] = "alerts:ingest"
    batch: str
    part: int
    parts: int
    alerts: list[dict[str, Any]]

    def stream(self) -> str:
        return self.STREAM

    def key(self) -> str | None:
        return f"alerts:{self.batch}:{self.part}"
