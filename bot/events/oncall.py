"""Events of on-call-aware approvals and incident communications: a relaxation announced in
the incident channel, the automatic "no change" update."""
from __future__ import annotations

from typing import ClassVar

from bot.events.incidents import IncidentEvent


class ApprovalRelaxed(IncidentEvent):
    """Loudly, in the incident channel: a change request needs fewer approvals than usual."""

    KIND: ClassVar[str] = "approval.relaxed"
    request_id: int

    def key(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


class NoChangeUpdate(IncidentEvent):
    """"No change since HH:MM" in the incident channel (and the status page, when linked)."""

    KIND: ClassVar[str] = "incident.no_change"
    since: str
    at: str

    def key(self) -> str | None:
        return f"{self.KIND}:{self.incident_id}:{self.at}"
