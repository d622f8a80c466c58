"""``/dr cancel ID``: the requester withdraws a request not yet running (pending, or approved and waiting)."""
from __future__ import annotations

from bot import changes
from bot.render import Reply
from commands.base import Invocation, UsageError, parse_id

NAME = "cancel"


def request_id(inv: Invocation, topic: str) -> int:
    number = parse_id(inv.args[0].lstrip("#")) if len(inv.args) == 1 else None
    if number is None:
        raise UsageError("give the request number, e.g. 12 or #12", topic)
    return number


def run(inv: Invocation) -> Reply:
    decision = changes.decide(inv.services, inv.actor, request_id(inv, NAME), "cancel")
    return decision.reply or Reply("request_cancelled", {"id": decision.request_id})
