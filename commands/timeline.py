"""``/dr timeline``: post the timeline of this channel's incident so far."""
from __future__ import annotations

from bot.incidents import for_channel
from bot.outbox_handlers import incident_context
from bot.render import Reply
from bot.store import session_scope
from commands.base import Invocation, UsageError

NAME = "timeline"


def run(inv: Invocation) -> Reply:
    with session_scope(inv.services.engine) as s:
        inc = for_channel(s, inv.actor.channel)
        if inc is None:
            raise UsageError("no incident here: run it in an incident channel", NAME)
        return Reply("timeline", incident_context(inv.services, s, inc), ephemeral=False)
