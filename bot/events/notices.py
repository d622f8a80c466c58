"""Events of the readiness watch, the digest, paging and the failback assistant."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from bot.events.base import Event, slack_pace


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




# -- paging -------------------------------------------------------------------------------

class PageSend(Event):
    """Trigger or resolve a page at a pager source (``bot.paging``). One stream per page and
    route, so its resolve never overtakes its trigger; paced per pager source. ``route``
    names where it goes without a secret (``service:orders``, ``target:dba``)."""

    KIND: ClassVar[str] = "page.send"
    source: str
    route: str
    action: Literal["trigger", "resolve"]
    dedup_key: str
    incident_id: int | None = None
    service: str | None = None
    target: str | None = None
    severity: str
    summary: str
    why: Literal["opened", "severity", "resolved", "manual"]
    by: str = ""
    channel: str | None = None
    """Where a page without an incident was asked for: its failure is told there."""
    at: str

    @staticmethod
    def streams_of(dedup_key: str) -> str:
        """The prefix of the streams of every route of one page."""
        return f"page:{dedup_key}:"

    def stream(self) -> str:
        return f"{self.streams_of(self.dedup_key)}{self.source}:{self.route}"

    def pace(self) -> str | None:
        return f"pager:{self.source}"

    def coalesce(self) -> str | None:
        """A newer trigger of the page replaces one not sent yet (the pager gets the newest)."""
        return f"{self.stream()}:trigger" if self.action == "trigger" else None

    def key(self) -> str | None:
        once = self.why in ("opened", "resolved")  # a severity change or a /dr page may page again
        return f"{self.stream()}:{self.action}:{self.why}" + ("" if once else f":{self.severity}:{self.at}")


class PageNotice(Event):
    """A pager's news posted where people look: acknowledged or resolved at the pager, or a
    page drbot gave up on. ``ref``: what it answers (the webhook's event, the outbox item)."""

    KIND: ClassVar[str] = "page.notice"
    what: Literal["acknowledged", "resolved", "failed"]
    incident_id: int | None = None
    channel: str | None = None
    pager: str
    by: str = ""
    to: str = ""
    error: str = ""
    ref: str

    def stream(self) -> str:
        return f"slack:incident:{self.incident_id}" if self.incident_id is not None else f"slack:page:{self.channel}"

    def pace(self) -> str | None:
        return f"slack:incident:{self.incident_id}" if self.incident_id is not None else slack_pace(self.channel or "")

    def key(self) -> str | None:
        return f"page-notice:{self.what}:{self.ref}"


class FailbackSuggestion(Event):
    """The home region of a service failed over away from it has held healthy, with lag under
    the threshold, for ``watch.failback.after``: suggest planning the failback (once per
    failover: ``moved`` is the move away). In the open incident's channel when
    ``incident_id`` is set, else in ``channel``. ``suggestion`` is the rendered context."""

    KIND: ClassVar[str] = "failback.suggestion"
    service: str
    moved: str
    incident_id: int | None = None
    channel: str = ""
    suggestion: dict[str, Any]

    def stream(self) -> str:
        return f"slack:incident:{self.incident_id}" if self.incident_id is not None else f"slack:failback:{self.service}"

    def pace(self) -> str | None:
        return f"slack:incident:{self.incident_id}" if self.incident_id is not None else slack_pace(self.channel)

    def key(self) -> str | None:
        return f"failback:{self.service}:{self.moved}"
