"""The event of a manual runbook step: its checklist item in the run's thread."""
from __future__ import annotations

from typing import ClassVar

from bot.events.changes import RequestEvent


class ManualStepMessage(RequestEvent):
    """Post a manual step (its instructions, Done and Failed) in the request's thread, or
    update it in place to show the answer. Behind the request's message in its topic."""

    KIND: ClassVar[str] = "manual_step.message"
    run_step_id: int

    def coalesce(self) -> str | None:
        return f"{self.KIND}:{self.run_step_id}"
