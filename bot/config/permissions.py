"""Who may do what beyond reading (``permissions:``). Each role is a list of Slack user IDs
(U..., W...) and user-group IDs (S...), like ``approvals.approvers``; the word
``everyone`` opens a role to anyone in the workspace. A role left out is held by the
approvers of the approval policy (``approvals.approvers``), never by anyone; ``[]``
means nobody."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from bot.config.models_base import SLACK_ID, Strict

EVERYONE = "everyone"


def _member(value: str) -> str:
    if value != EVERYONE and not SLACK_ID.match(value):
        raise ValueError(f"{value!r} is not a Slack user or user-group ID (use U0123ABCD for a person, "
                         f"S0123ABCD for a user group, or the word {EVERYONE} for anyone in the workspace)")
    return value


Member = Annotated[str, AfterValidator(_member)]


class Permissions(Strict):
    incident_open: list[Member] | None = None
    """``/dr incident open``: declare an incident (its channel, its status-page incident)."""
    incident_update: list[Member] | None = None
    """``/dr incident status``, the reminder's Post update form: change an incident's status."""
    statuspage_publish: list[Member] | None = None
    """Publish, Edit and Skip on a status-page preview."""
    outbox_retry: list[Member] | None = None
    """``/dr outbox retry ID``: deliver again what gave up."""
    drill_calendar: list[Member] | None = None
    """``/dr drill schedule|postpone|skip``, the Postpone and Skip buttons of a drill."""
