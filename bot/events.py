"""Typed outbox events: what the core asks to happen outside the process.

Each event is a small frozen pydantic model, validated when it is queued and again when it
is delivered. It says, from its own fields:

- ``stream()``: items of one stream are delivered one after the other in queue order (a
  request's message before the progress posted in its thread);
- ``pace()``: the destination whose rate limit it shares (``slack:C123``,
  ``statuspage:page``), paced for all replicas through the database (``bot.outbox.pacing``);
- ``coalesce()``: a newer event with the same key replaces an undelivered older one (the
  handlers render the state at delivery time, so one delivery shows the newest state);
- ``key()``: an idempotency key, when queuing the same thing twice must be a no-op.

The handler of each kind is declared in ``bot.delivery.registry``.
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    KIND: ClassVar[str] = ""

    def stream(self) -> str:
        raise NotImplementedError

    def pace(self) -> str | None:
        return None

    def coalesce(self) -> str | None:
        return None

    def key(self) -> str | None:
        return None


def slack_pace(channel: str) -> str:
    return f"slack:{channel}"


# -- change requests and runs -------------------------------------------------------------

class RequestEvent(Event):
    """Everything about one change request goes to its channel, in its topic's order.
    ``topic``: ``request:ID``, or ``drill:OCCURRENCE`` for a scheduled drill (its
    announcements and its run share one thread)."""

    request_id: int
    channel: str
    topic: str

    def stream(self) -> str:
        return self.topic

    def pace(self) -> str | None:
        return slack_pace(self.channel)


class RequestMessage(RequestEvent):
    """Post the request's message (with its buttons), or update it to show its state now."""

    KIND: ClassVar[str] = "request.message"

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


class RunProgress(RequestEvent):
    """Post the run's live progress in the request's thread, or update it."""

    KIND: ClassVar[str] = "run.progress"

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


class DrillReport(RequestEvent):
    """The drill report in the request's thread, once the drill's run has ended."""

    KIND: ClassVar[str] = "drill.report"

    def key(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


class RunInterrupted(RequestEvent):
    """A run left running by a process that stopped: announced in its thread."""

    KIND: ClassVar[str] = "run.interrupted"
    run_id: int
    at: str

    def key(self) -> str | None:
        return f"{self.KIND}:{self.run_id}:{self.at}"


class BreakGlassNotice(RequestEvent):
    """The loud notice that a change runs without approvals."""

    KIND: ClassVar[str] = "request.break_glass"

    def key(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


class RequestWithdrawn(Event):
    """A direct message to the requester: the request's message could not be posted, so
    the request was withdrawn."""

    KIND: ClassVar[str] = "request.withdrawn"
    request_id: int
    user: str
    channel: str
    error: str

    def stream(self) -> str:
        return f"dm:{self.user}"

    def pace(self) -> str | None:
        return slack_pace(self.user)

    def key(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


# -- scheduled drills ---------------------------------------------------------------------

class DrillPost(Event):
    """An announcement (the root is the drill request's message), 'starting now' or
    'missed', in the occurrence's thread."""

    KIND: ClassVar[str] = "drill.post"
    occurrence_id: int
    channel: str
    what: str
    lead: int = 0
    why: str = ""
    starts_at: str

    def stream(self) -> str:
        return f"drill:{self.occurrence_id}"

    def pace(self) -> str | None:
        return slack_pace(self.channel)

    def key(self) -> str | None:
        return f"drill:{self.occurrence_id}:{self.what}:{self.lead if self.what == 'announce' else ''}:{self.starts_at}"


class DrillMaintenance(Event):
    """The status page's scheduled maintenance for an announced drill's window."""

    KIND: ClassVar[str] = "statuspage.maintenance"
    occurrence_id: int

    def stream(self) -> str:
        return f"statuspage:drill:{self.occurrence_id}"

    def key(self) -> str | None:
        return f"drill:{self.occurrence_id}:maintenance"


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


# -- the watch and the digest -------------------------------------------------------------

class ReadinessChange(Event):
    """A change of a service's watched verdict; ``change`` is the rendered context."""

    KIND: ClassVar[str] = "readiness.change"
    channel: str
    service: str
    at: str
    to: str
    change: dict[str, Any]

    def stream(self) -> str:
        return f"slack:readiness:{self.service}"

    def pace(self) -> str | None:
        return slack_pace(self.channel)

    def key(self) -> str | None:
        return f"readiness:{self.service}:{self.at}:{self.to}"


class WeeklyDigest(Event):
    KIND: ClassVar[str] = "digest.weekly"
    channel: str
    run_time: str
    digest: dict[str, Any]

    def stream(self) -> str:
        return "slack:digest"

    def pace(self) -> str | None:
        return slack_pace(self.channel)

    def key(self) -> str | None:
        return f"digest:{self.run_time}"


# -- the drill calendar on the status page, and an incident whose alerts have resolved ------

class DrillMaintenanceMoved(Event):
    """A postponed drill: its scheduled maintenance moves to the occurrence's new window
    (read at delivery). Behind the maintenance's creation in its stream."""

    KIND: ClassVar[str] = "statuspage.maintenance_moved"
    occurrence_id: int
    starts_at: str

    def stream(self) -> str:
        return f"statuspage:drill:{self.occurrence_id}"

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.occurrence_id}"

    def key(self) -> str | None:
        return f"drill:{self.occurrence_id}:maintenance:moved:{self.starts_at}"


class DrillMaintenanceCancelled(Event):
    """A skipped drill: its scheduled maintenance is cancelled."""

    KIND: ClassVar[str] = "statuspage.maintenance_cancelled"
    occurrence_id: int

    def stream(self) -> str:
        return f"statuspage:drill:{self.occurrence_id}"

    def key(self) -> str | None:
        return f"drill:{self.occurrence_id}:maintenance:cancelled"


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


EVENTS: tuple[type[Event], ...] = (
    RequestMessage, RunProgress, DrillReport, RunInterrupted, BreakGlassNotice, RequestWithdrawn, DrillPost,
    DrillMaintenance, IncidentChannel, IncidentAlerts, FailoverSuggestion, StatuspagePreview, IncidentReminder,
    IncidentResolved, UnknownAlert, StatuspagePublish, ArchivePostmortem, ReadinessChange, WeeklyDigest,
    DrillMaintenanceMoved, DrillMaintenanceCancelled, IncidentAlertsResolved,
    AlertBatch,
)
BY_KIND: dict[str, type[Event]] = {e.KIND: e for e in EVENTS}
