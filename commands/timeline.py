"""``/dr timeline``: post the timeline of this channel's incident so far."""
from __future__ import annotations

from bot.incident_view import channel_view
from bot.render import Reply
from commands.base import Invocation, UsageError

NAME = "timeline"


def run(inv: Invocation) -> Reply:
    context, _ = channel_view(inv.services, inv.actor.channel)
    if context is None:
        raise UsageError("no incident here: run it in an incident channel", NAME)
    return Reply("timeline", context, ephemeral=False)
