"""Events of change requests, runs and scheduled drills (their posts, their status-page maintenances)."""
from __future__ import annotations

from typing import ClassVar

from bot.events.base import Event, slack_pace


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
