"""``/dr requests``: open and recent change requests with their state."""
from __future__ import annotations

from bot.render import Reply
from bot.request_view import listing
from commands.base import Invocation, UsageError

NAME = "requests"
RECENT = 10


def run(inv: Invocation) -> Reply:
    if inv.args:
        raise UsageError(f"'{NAME}' takes no arguments", NAME)
    found = listing(inv.services, RECENT)
    return Reply("requests", found | {"now": inv.services.clock(), "command": inv.services.command})
