"""Events of region evacuations: the live board (one message in the evacuation request's
thread, updated in place) and the notes of its detail in that thread (start, each wave,
each service's end, the end)."""
from __future__ import annotations

from typing import ClassVar

from bot.events.changes import RequestEvent


class EvacuationBoard(RequestEvent):
    """Post the evacuation's board (per service: wave, state, current step, elapsed time,
    lag) in the request's thread, or update it to show the store now."""

    KIND: ClassVar[str] = "evacuation.board"

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.request_id}"


class EvacuationNote(RequestEvent):
    """One line of the evacuation's detail in its thread: ``what`` is 'started', 'wave',
    'service' (a service's run ended), 'interrupted', 'ended' or 'report' (a region drill's
    report, when it ended)."""

    KIND: ClassVar[str] = "evacuation.note"
    what: str
    wave: int = 0
    service: str = ""
    at: str = ""

    def key(self) -> str | None:
        return f"{self.KIND}:{self.request_id}:{self.what}:{self.wave}:{self.service}:{self.at}"
